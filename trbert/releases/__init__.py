"""Public dataset releases -> the split files the entry scripts read (``trbert prepare <dataset>``).

One short module per dataset reads the release as it is downloaded (its folder or its archive)
and writes the converted files; :func:`prepare_release` builds them in a temporary folder beside
``--output_dir``, logs the counts per split and label, records them in ``prepared.json`` and
renames the folder into place only when everything succeeded. A malformed or incomplete release
raises :class:`~trbert.errors.InputError` naming the file at fault, and nothing is written.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..store.outputs import write_json
from . import asis, hotpotqa, imdb, newsgroups, triviaqa, yelp
from .common import Release, staged_output

logger = logging.getLogger(__name__)
SCRATCH = ".release"  # archive members are extracted here, inside the temporary output folder


@dataclass(frozen=True)
class Converter:
    name: str
    help: str  # the release, its publisher and what the output feeds
    convert: Callable[..., dict]  # (release, output folder, **options) -> counts per output file
    add_arguments: Callable = lambda parser: None


def _mrqa_arguments(parser) -> None:
    parser.add_argument("--name", default="NewsQA", help="MRQA dataset name, e.g. NewsQA, NaturalQuestionsShort")


def _squad_arguments(parser) -> None:
    parser.add_argument("--version", choices=("2.0", "1.1"), default="2.0", help="SQuAD release version")


CONVERTERS = (
    Converter("imdb", "aclImdb_v1.tar.gz (Maas et al., Stanford) -> IMDB jsonl", imdb.convert, imdb.add_arguments),
    Converter(
        "yelp_f", "yelp_review_full_csv.tar.gz (Zhang et al. 2015) -> Yelp.F csv", yelp.convert, yelp.add_arguments
    ),
    Converter(
        "20news",
        "20news-bydate.tar.gz (J. Rennie's bydate version) -> 20News jsonl",
        newsgroups.convert,
        newsgroups.add_arguments,
    ),
    Converter(
        "triviaqa",
        "triviaqa-rc.tar.gz (UW TriviaQA reading comprehension) -> train.json, dev.json",
        triviaqa.convert,
        triviaqa.add_arguments,
    ),
    Converter(
        "hotpotqa",
        "HotpotQA JSON releases (hotpotqa.github.io) -> hotpot_train_graph.json, rerank_dev_tok.json",
        hotpotqa.convert,
        hotpotqa.add_arguments,
    ),
    Converter("wikihop", "qangaroo_v1.1.zip (QAngaroo WikiHop) -> train.json, dev.json, checked", asis.wikihop),
    Converter("race", "RACE.tar.gz (CMU RACE) -> the same tree, checked", asis.race),
    Converter("squad", "SQuAD train/dev JSON (Stanford) -> the same files, checked", asis.squad, _squad_arguments),
    Converter("mrqa", "MRQA 2019 train/dev jsonl.gz -> train.jsonl, dev.jsonl", asis.mrqa, _mrqa_arguments),
)
DATASETS = {c.name: c for c in CONVERTERS}


def prepare_release(dataset: str, source, output_dir, **options) -> dict:
    """Convert the release of ``dataset`` at ``source`` into ``output_dir``; returns the counts
    ``{output file: {label or quantity: count}}`` (also logged and written to ``prepared.json``)."""
    if dataset not in DATASETS:
        raise InputError(f"unknown dataset {dataset!r}; known: {', '.join(DATASETS)}")
    with staged_output(Path(output_dir)) as staging:
        release = Release(Path(source), staging / SCRATCH)
        try:
            counts = DATASETS[dataset].convert(release, staging, **options)
        except InputError as e:
            raise InputError(release.describe(str(e))) from None
        shutil.rmtree(staging / SCRATCH, ignore_errors=True)
        for name, count in counts.items():
            logger.info("%s %s: %s", dataset, name, ", ".join(f"{k}: {v}" for k, v in count.items()))
        options = {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()}
        record = {"dataset": dataset, "source": str(source), "options": options, "counts": counts}
        write_json(staging / "prepared.json", record)
    logger.info("%s: wrote %s", dataset, output_dir)
    return counts


__all__ = ["CONVERTERS", "DATASETS", "Converter", "prepare_release"]
