"""The original's name of ``run_hotpotqa.py``: the same script, flags and help."""

import sys

from trbert.train.pipeline import main

if __name__ == "__main__":
    sys.exit(main(family="hotpot", prog="run_hotpot.py"))
