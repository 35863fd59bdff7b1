"""Rank targets for the selector warm start (``--train_init``) from a model's token scores.

    python trans_imdb_rank.py --model_dir imdb_models/bert     # reads token_scores.npy, writes token_ranks.npy

Works for any task and backbone (the original hard-coded IMDB paths: docs/differences.md F4).
"""

import sys

from trbert.__main__ import main

if __name__ == "__main__":
    sys.exit(main(["rank", *sys.argv[1:]]))
