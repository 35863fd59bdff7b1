"""``trbert`` command: the demo and the data-preparation helpers.

trbert demo [--output_dir demo_out]          # whole pipeline on the built-in demo task, prints the table
trbert demo-data --output_dir DIR            # Rotten Tomatoes snippets -> IMDB-format jsonl splits
trbert split-hyperpartisan [...]             # = split_hyperpartisan.py
trbert rank --model_dir DIR                  # = trans_imdb_rank.py
trbert prepare <dataset> --source PATH --output_dir DIR   # a public release -> the split files (trbert/releases)
trbert tradeoff --model_dir M --output_dir O [--alphas ...] <entry-script flags>   # accuracy-cost curve
trbert show --model_dir M --output PAGE.html [--examples N] <entry-script flags>   # which tokens were kept
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .errors import InputError, exit_code
from .train.pipeline import setup_logging

logger = logging.getLogger("trbert")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trbert", description="TR-BERT helpers")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the whole pipeline on Rotten Tomatoes with MiniLM and print the results")
    demo.add_argument("--output_dir", default="demo_out")
    data = sub.add_parser(
        "demo-data", help="write the demo's Rotten Tomatoes splits (or --dataset convention) as jsonl"
    )
    data.add_argument("--output_dir", required=True)
    data.add_argument(
        "--dataset", default="rotten_tomatoes", choices=("rotten_tomatoes", "convention"),
        help="convention: 2012 party-convention speeches in 200-word passages, labelled by party (longer texts)",
    )  # fmt: skip
    split = sub.add_parser("split-hyperpartisan", help="Hyperpartisan -> train/dev/test jsonl (seed 42)")
    split.add_argument(
        "--input", default="hyperpartisan/original_data.txt", help="flattened '<id> <label> <text>' file"
    )
    split.add_argument("--articles", help="public by-article articles XML (instead of --input)")
    split.add_argument("--ground_truth", help="public by-article ground-truth XML")
    split.add_argument("--output_dir", default="hyperpartisan")
    split.add_argument("--seed", type=int, default=42)
    split.add_argument(
        "--original_split",
        action="store_true",
        help="size class-1 dev/test from the class-0 count, as the original",
    )
    rank = sub.add_parser("rank", help="token_ranks.npy from token_scores.npy for --train_init")
    rank.add_argument("--model_dir", required=True, help="fine-tuned model directory holding token_scores.npy")
    rank.add_argument("--score_path", help="token scores elsewhere")
    rank.add_argument("--output_path", help="where to write (default: next to the scores)")
    _prepare_parser(sub)
    from .tools import show, tradeoff

    tradeoff.parser(sub)
    show.parser(sub)
    return parser


def _prepare_parser(sub) -> None:
    from .releases import CONVERTERS

    prepare = sub.add_parser("prepare", help="convert a public dataset release into the files the entry scripts read")
    datasets = prepare.add_subparsers(dest="dataset", required=True)
    for converter in CONVERTERS:
        parser = datasets.add_parser(converter.name, help=converter.help, description=converter.help)
        parser.add_argument("--source", required=True, help="the downloaded release: its folder or its archive")
        parser.add_argument("--output_dir", required=True, help="new folder for the converted files")
        converter.add_arguments(parser)


PASS_THROUGH = ("tradeoff", "show")  # commands that hand the rest of the command line to an entry script's parser


def _dispatch(args, rest: list[str]) -> None:
    from .tools import prepare

    if args.command == "tradeoff":
        from .tools.tradeoff import main as tradeoff

        tradeoff(args, rest)
    elif args.command == "show":
        from .tools.show import main as show

        show(args, rest)
    elif args.command == "prepare":
        from .releases import prepare_release

        options = {k: v for k, v in vars(args).items() if k not in ("command", "dataset", "source", "output_dir")}
        prepare_release(args.dataset, args.source, args.output_dir, **options)
    elif args.command == "demo":
        from .tools.demo import run_demo

        sys.stdout.write(run_demo(args.output_dir) + "\n")
    elif args.command == "demo-data":
        from .tools.demo import SIZES

        splits = (
            prepare.rotten_tomatoes_splits(SIZES) if args.dataset == "rotten_tomatoes" else prepare.convention_splits()
        )
        prepare.write_splits(splits, Path(args.output_dir))
    elif args.command == "split-hyperpartisan":
        if bool(args.articles) != bool(args.ground_truth):
            raise InputError("--articles and --ground_truth go together")
        if args.articles:
            articles = prepare.read_xml_hyperpartisan(Path(args.articles), Path(args.ground_truth))
        else:
            articles = prepare.read_flat_hyperpartisan(Path(args.input))
        prepare.write_splits(
            prepare.split_hyperpartisan(articles, args.seed, args.original_split), Path(args.output_dir)
        )
    elif args.command == "rank":
        logger.info("wrote %s", prepare.write_rank_targets(args.model_dir, args.score_path, args.output_path))


def main(argv=None) -> int:
    setup_logging()
    parser = _parser()
    args, rest = parser.parse_known_args(argv)
    if rest and args.command not in PASS_THROUGH:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return exit_code("trbert", lambda: _dispatch(args, rest))


if __name__ == "__main__":
    sys.exit(main())
