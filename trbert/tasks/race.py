"""RACE (``run_race_classify.py``): reading comprehension with four options per question.

The reader of the release (``<data_dir>/<split>/{middle,high}/*.txt``, each ``{"article",
"questions", "options", "answers"}``) and the task's two layouts, both of ``[CLS] passage [SEP]
question option [SEP]`` rows and scored by accuracy over questions:

- binary rows (the original README's ``run_race_classify.py``): each option's row is a binary
  example of the classification model (label 1: the right option); the answer is the option with
  the largest class-1 logit among the question's four;
- ``--shared_selection`` (the original's ``run_mcrace.py`` model): one row of four options per
  question sharing one selection (:class:`trbert.core.heads.SharedChoiceMixin`), cross-entropy over them.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import inert, option
from .base import Family, Predictions, pad_rows, register
from .classification import ClassificationTask
from .files import load_json, require

OPTIONS = 4


@dataclass
class RaceQuestion:
    article: str
    question: str
    options: list[str]
    answer: int
    where: str


def read_race(folder: Path) -> list[RaceQuestion]:
    files = sorted(folder.glob("middle/*.txt")) + sorted(folder.glob("high/*.txt"))
    require(bool(files), str(folder), "no RACE files (<split>/middle/*.txt, <split>/high/*.txt)")
    questions = []
    for path in files:
        item = load_json(path)
        require(isinstance(item, dict) and isinstance(item.get("article"), str), str(path), 'no string "article"')
        article = item["article"]
        parts = [item.get(k) for k in ("questions", "options", "answers")]
        require(all(isinstance(p, list) for p in parts), str(path), '"questions", "options", "answers" must be lists')
        require(len({len(p) for p in parts}) == 1, str(path), "as many options and answers as questions expected")
        for k, (question, options, answer) in enumerate(zip(*parts, strict=True)):
            where = f"{path}: question {k}"
            require(isinstance(options, list) and len(options) == OPTIONS, where, f"expected {OPTIONS} options")
            require(answer in ("A", "B", "C", "D"), where, f"answer {answer!r} is not one of A, B, C, D")
            require(article.strip() != "", where, "empty passage")
            questions.append(RaceQuestion(article, str(question), list(map(str, options)), "ABCD".index(answer), where))
    return questions


@dataclass(frozen=True)
class RaceTask(ClassificationTask):
    """Four binary rows per question (``head="classification"``) or one row of four options (``head="choice"``)."""

    name: str = "race"
    num_labels: int = 2
    extension: str = "txt"
    reader: object = None
    max_qa_length: int = 128

    @property
    def settings(self) -> dict:
        return {"max_qa_length": self.max_qa_length, "layout": self.head}

    def path(self, data_dir: str, split: str) -> Path:
        folder = Path(data_dir) / split
        require(folder.is_dir(), str(folder), f"RACE split folder not found (<data_dir>/{split}/middle, .../high)")
        return folder

    def read(self, data_dir: str, split: str) -> list[RaceQuestion]:
        return read_race(self.path(data_dir, split))

    def featurize(self, questions: Sequence[RaceQuestion], tokenizer, max_length, split, first, counts: Counter):
        """``[CLS] passage [SEP] question option [SEP]``: the passage cut to the same length for the
        four options, question + option cut to ``--max_qa_length`` word pieces. One row per option."""
        ids, types, ends = [], [], []
        for q in questions:
            article = tokenizer.tokenize(q.article)
            question = tokenizer.tokenize(q.question)
            pairs = [(question + tokenizer.tokenize(o))[: self.max_qa_length] for o in q.options]
            room = max(max_length - 3 - max(len(p) for p in pairs), 0)
            first = [tokenizer.cls_token, *article[:room], tokenizer.sep_token]
            for pair in pairs:
                ids.append(tokenizer.convert_tokens_to_ids(first + pair + [tokenizer.sep_token]))
                types.append([0] * len(first) + [1] * (len(pair) + 1))
            # as the original, the whole question counts even where --max_qa_length cut it (then [SEP] too)
            ends.append(len(first) + len(question))
        arrays = {
            "input_ids": pad_rows(ids, max_length, tokenizer.pad_token_id or 0),
            "token_type_ids": pad_rows(types, max_length, 0, np.int8),
            "lengths": np.array([len(row) for row in ids], dtype=np.int32),
            "labels": np.array([int(c == q.answer) for q in questions for c in range(OPTIONS)], dtype=np.int64),
        }
        if self.head == "choice":  # one row per question: [N, 4, T], the answer index, the selectable prefix
            arrays = {k: v.reshape(len(questions), OPTIONS, *v.shape[1:]) for k, v in arrays.items()}
            arrays["labels"] = arrays["labels"].argmax(1)
            arrays["question_end"] = np.array(ends, dtype=np.int64)
        return arrays

    def predict(self, logits: np.ndarray, features: dict, examples) -> Predictions:
        """The chosen option of every question."""
        options = logits if self.head == "choice" else logits[:, 1].reshape(-1, OPTIONS)
        return Predictions(options.argmax(1).tolist())

    def score(self, predictions: Predictions, examples: Sequence[RaceQuestion]) -> dict:
        gold = np.array([q.answer for q in examples])
        return {"acc": float((np.asarray(predictions.answers) == gold).mean()), "questions": len(gold)}


@dataclass
class RaceConfig:
    """``run_race_classify.py``'s own flags."""

    max_qa_length: int = option(128, "question + option word pieces kept", fixed=True)
    shared_selection: bool = option(
        False, "NEW: run_mcrace.py's model: one selection per question shared by its options", fixed=True
    )
    train_both_self: bool = inert()
    train_jiaoti: bool = inert()
    train_pred: bool = inert()
    do_calc: bool = inert()


def _build(config: RaceConfig, name: str, seed: int) -> RaceTask:
    layout = dict(head="choice", num_labels=1) if config.shared_selection else {}  # else binary rows
    return RaceTask(max_qa_length=config.max_qa_length, **layout)


def _resolve(stage: str, train, reduction, config: RaceConfig):
    """The original's defaults that depend on the stage or on the layout, binary rows
    (``run_race_classify.py``) or ``--shared_selection`` (``run_mcrace.py``), for the flags left
    unset (docs/differences.md K10)."""
    shared = config.shared_selection
    if train.learning_rate is None:
        train = dataclasses.replace(train, learning_rate=5e-5 if shared else 2e-5)
    if train.warmup_steps is None:
        train = dataclasses.replace(train, warmup_steps=0 if stage == "finetune" and not shared else -1)
    if reduction.guide_rate is None:
        reduction = dataclasses.replace(reduction, guide_rate=0.2 if shared else 0.5)
    return train, reduction


FAMILY = register(Family(
    "race", RaceConfig, _build,
    defaults=dict(task_name="race", learning_rate=None, warmup_steps=None, guide_rate=None), resolve=_resolve,
    min_length=lambda config: config.max_qa_length + 4,  # [CLS] passage [SEP] question option [SEP]
    curve=False, view=False,  # four option rows per question
))  # fmt: skip
