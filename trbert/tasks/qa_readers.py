"""Readers of the question-answering files: SQuAD json and MRQA jsonl(.gz).

What this file is: file formats to :class:`~trbert.tasks.span.QAExample` lists, with one clear
error naming the file (and line) for malformed input. Nothing here tokenises.

- SQuAD (v1.1 / v2.0): ``{"data": [{"paragraphs": [{"context", "qas": [{"id", "question",
  "answers": [{"text", "answer_start"}], "is_impossible"}]}]}]}``.
- MRQA: a header line, then one ``{"context", "qas": [{"qid"|"id", "question", "answers": [str],
  "detected_answers": [{"text", "char_spans": [[start, end]]}]}]}`` per line (end inclusive);
  plain or gzip-compressed.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from ..errors import InputError
from .span import QAExample


def _load_json(path: Path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise InputError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text ({e.reason})") from None


def _require(condition: bool, where: str, what: str) -> None:
    if not condition:
        raise InputError(f"{where}: {what}")


def read_squad(path: Path) -> list[QAExample]:
    data = _load_json(path)
    _require(isinstance(data, dict) and isinstance(data.get("data"), list), str(path), 'expected {"data": [...]}')
    examples = []
    for a, article in enumerate(data["data"]):
        for p, paragraph in enumerate(article.get("paragraphs", [])):
            where = f"{path}: data[{a}].paragraphs[{p}]"
            _require(isinstance(paragraph.get("context"), str), where, 'no string "context"')
            for question in paragraph.get("qas", []):
                _require(
                    isinstance(question, dict) and {"id", "question"} <= question.keys(),
                    where,
                    'a question without "id" or "question"',
                )
                answers = question.get("answers", [])
                impossible = bool(question.get("is_impossible", False)) or not answers
                first = answers[0] if answers else {}
                examples.append(
                    QAExample(
                        qid=str(question["id"]),
                        question=question["question"],
                        context=paragraph["context"],
                        answers=[a["text"] for a in answers] if not impossible else [],
                        answer_start=None if impossible else int(first.get("answer_start", -1)),
                        answer_text="" if impossible else first.get("text", ""),
                        where=f"{where}, question {question['id']}",
                    )
                )
    return examples


def _open_text(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def read_mrqa(path: Path) -> list[QAExample]:
    examples = []
    try:
        with _open_text(path) as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                where = f"{path}:{number}"
                try:
                    item = json.loads(line)
                except json.JSONDecodeError as e:
                    raise InputError(f"{where}: not valid JSON ({e.msg})") from None
                if number == 1 and "header" in item:
                    continue
                _require(isinstance(item.get("context"), str), where, 'no string "context"')
                examples += [_mrqa_question(item["context"], q, where) for q in item.get("qas", [])]
    except (OSError, EOFError) as e:  # e.g. a truncated .gz
        raise InputError(f"{path}: cannot be read ({e})") from None
    return examples


def _mrqa_question(context: str, question: dict, where: str) -> QAExample:
    qid = question.get("qid", question.get("id"))
    _require(
        qid is not None and isinstance(question.get("question"), str), where, 'a question without "qid"/"question"'
    )
    detected = question.get("detected_answers") or []
    start, text = None, ""
    if detected and detected[0].get("char_spans"):
        s, e = detected[0]["char_spans"][0]  # the training answer: first span of the first answer
        start, text = int(s), context[int(s) : int(e) + 1]
        if text.lower() != str(detected[0].get("text", text)).lower():
            text = str(detected[0].get("text"))  # offsets do not hold the text: counted as misaligned later
    return QAExample(str(qid), question["question"], context, list(question.get("answers", [])), start, text, where)
