"""``python -m trbert``: the demo, the accuracy-cost curve (``tradeoff``), the token view (``show``),
the data helpers (``demo-data``, ``split-hyperpartisan``, ``rank``) and ``prepare <dataset>``.

Each command's flags are a dataclass of its module (listed in ``COMMANDS``); ``tradeoff`` and
``show`` hand the rest of the command line to the entry script's parser of their ``--family``, once.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

from .errors import InputError, exit_code
from .releases import CONVERTERS, prepare_release
from .tools import prepare
from .tools.demo import SIZES, DemoOptions, run_demo
from .tools.prepare import DemoDataOptions, RankOptions, SplitOptions
from .tools.show import ShowOptions
from .tools.show import main as show
from .tools.tradeoff import TradeoffOptions
from .tools.tradeoff import main as tradeoff
from .train.cli import add_fields
from .train.pipeline import setup_logging

logger = logging.getLogger("trbert")


def _demo(o: DemoOptions, rest) -> None:
    sys.stdout.write(run_demo(o.output_dir) + "\n")


def _demo_data(o: DemoDataOptions, rest) -> None:
    rotten = o.dataset == "rotten_tomatoes"
    prepare.write_splits(
        prepare.rotten_tomatoes_splits(SIZES) if rotten else prepare.convention_splits(), Path(o.output_dir)
    )


def _split(o: SplitOptions, rest) -> None:
    if bool(o.articles) != bool(o.ground_truth):
        raise InputError("--articles and --ground_truth go together")
    if o.articles:
        articles = prepare.read_xml_hyperpartisan(Path(o.articles), Path(o.ground_truth))
    else:
        articles = prepare.read_flat_hyperpartisan(Path(o.input))
    prepare.write_splits(prepare.split_hyperpartisan(articles, o.seed, o.original_split), Path(o.output_dir))


def _rank(o: RankOptions, rest) -> None:
    logger.info("wrote %s", prepare.write_rank_targets(o.model_dir, o.score_path or None, o.output_path or None))


# name: (its flags, what it does, its action); tradeoff and show take an entry script's flags after theirs
COMMANDS = {
    "demo": (DemoOptions, "run the whole pipeline on Rotten Tomatoes with MiniLM and print the results", _demo),
    "demo-data": (DemoDataOptions, "write the demo's splits (or --dataset convention) as jsonl", _demo_data),
    "split-hyperpartisan": (SplitOptions, "Hyperpartisan -> train/dev/test jsonl (seed 42)", _split),
    "rank": (RankOptions, "token_ranks.npy from token_scores.npy for --train_init", _rank),
    "tradeoff": (TradeoffOptions, "accuracy-cost curve of TR-BERT against training-free baselines", tradeoff),
    "show": (ShowOptions, "an HTML page of the tokens a trained TR-BERT model keeps on a split", show),
}
PASS_THROUGH = ("tradeoff", "show")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trbert", description="TR-BERT helpers", allow_abbrev=False)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (options, help_text, _) in COMMANDS.items():
        # no abbreviations: `tradeoff --seed` must not be read as its own --seeds (the rest goes to the entry script)
        add_fields(sub.add_parser(name, help=help_text, description=help_text, allow_abbrev=False), options)
    prepare_parser = sub.add_parser(
        "prepare", help="convert a public dataset release into the files the entry scripts read"
    )
    datasets = prepare_parser.add_subparsers(dest="dataset", required=True)
    for converter in CONVERTERS:
        release = datasets.add_parser(converter.name, help=converter.help, description=converter.help)
        release.add_argument("--source", required=True, help="the downloaded release: its folder or its archive")
        release.add_argument("--output_dir", required=True, help="the folder the command writes")
        converter.add_arguments(release)
    return parser


def _dispatch(args, rest: list[str]) -> None:
    if args.command == "prepare":
        options = {k: v for k, v in vars(args).items() if k not in ("command", "dataset", "source", "output_dir")}
        prepare_release(args.dataset, args.source, args.output_dir, **options)
        return
    options, _, action = COMMANDS[args.command]
    action(options(**{f.name: getattr(args, f.name) for f in dataclasses.fields(options)}), rest)


def main(argv=None) -> int:
    setup_logging()
    parser = _parser()
    args, rest = parser.parse_known_args(argv)
    if rest and args.command not in PASS_THROUGH:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return exit_code("trbert", lambda: _dispatch(args, rest))


if __name__ == "__main__":
    sys.exit(main())
