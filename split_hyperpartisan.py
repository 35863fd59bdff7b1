"""Split Hyperpartisan (by-article) into train/dev/test jsonl with seed 42 (the original's split script).

    python split_hyperpartisan.py                                   # hyperpartisan/original_data.txt
    python split_hyperpartisan.py --articles articles-training-byarticle-20181122.xml \
        --ground_truth ground-truth-training-byarticle-20181122.xml --output_dir hyperpartisan
"""

import sys

from trbert.__main__ import main

if __name__ == "__main__":
    sys.exit(main(["split-hyperpartisan", *sys.argv[1:]]))
