"""NewsQA and NaturalQuestions in the MRQA format (``run_mrqa.py``).

The reader of MRQA jsonl (plain or gzip-compressed: a header line, then one ``{"context", "qas":
[{"qid"|"id", "question", "answers": [str], "detected_answers": [{"text", "char_spans": [[start,
end]]}]}]}`` per line, end inclusive) and the family's flags and defaults. As the original, training
uses the first detected answer's first span and drops training windows without it (the DeFormer
protocol); the context markers ``[PAR]``, ``[TLE]``, ``[DOC]`` are read as ``[unused1..3]``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ..config import with_defaults
from .answer_metrics import mrqa_scores
from .base import Family, options_for, register
from .files import json_lines, require
from .span import QAExample, SpanConfig, SpanTask

MARKERS = ("[PAR]", "[TLE]", "[DOC]")


def read_mrqa(path: Path) -> Iterator[QAExample]:
    """One context with its questions per line, read as the file is (it is not held whole)."""
    for where, number, item in json_lines(path):
        if number == 1 and isinstance(item, dict) and "header" in item:
            continue
        require(isinstance(item, dict) and isinstance(item.get("context"), str), where, 'no string "context"')
        yield from (_question(item["context"], q, where) for q in item.get("qas", []))


def _question(context: str, question: dict, where: str) -> QAExample:
    qid = question.get("qid", question.get("id"))
    require(qid is not None and isinstance(question.get("question"), str), where, 'a question without "qid"/"question"')
    detected = question.get("detected_answers") or []
    start, text = None, ""
    if detected and detected[0].get("char_spans"):
        s, e = detected[0]["char_spans"][0]  # the training answer: first span of the first answer
        start, text = int(s), context[int(s) : int(e) + 1]
        if text.lower() != str(detected[0].get("text", text)).lower():
            text = str(detected[0].get("text"))  # offsets do not hold the text: counted as misaligned later
    return QAExample(str(qid), question["question"], context, list(question.get("answers", [])), start, text, where)


def _build(config, name: str, seed: int) -> SpanTask:
    options = options_for(SpanTask, config)
    return SpanTask(name, read_mrqa, mrqa_scores, drop_answerless_train_windows=True, markers=MARKERS, **options)


MrqaConfig = with_defaults(
    SpanConfig, "MrqaConfig", train_file="train.jsonl", predict_file="dev.jsonl", max_query_length=40
)

FAMILY = register(Family(
    "mrqa", MrqaConfig, _build,
    defaults=dict(max_seq_length=512, per_gpu_train_batch_size=2, learning_rate=5e-5, alpha=3.0, guide_rate=0.2,
                  warmup_steps=0, logging_steps=50, save_steps=2000),
    min_length=lambda config: config.max_query_length + 4,  # [CLS] question [SEP] context [SEP]
))  # fmt: skip
