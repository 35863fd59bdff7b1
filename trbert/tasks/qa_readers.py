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

from pathlib import Path

from .files import json_lines, load_json, require
from .span import QAExample


def read_squad(path: Path) -> list[QAExample]:
    data = load_json(path)
    require(isinstance(data, dict) and isinstance(data.get("data"), list), str(path), 'expected {"data": [...]}')
    examples = []
    for a, article in enumerate(data["data"]):
        for p, paragraph in enumerate(article.get("paragraphs", [])):
            where = f"{path}: data[{a}].paragraphs[{p}]"
            require(isinstance(paragraph.get("context"), str), where, 'no string "context"')
            for question in paragraph.get("qas", []):
                require(
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


def read_mrqa(path: Path) -> list[QAExample]:
    examples = []
    for where, number, item in json_lines(path):
        if number == 1 and isinstance(item, dict) and "header" in item:
            continue
        require(isinstance(item, dict) and isinstance(item.get("context"), str), where, 'no string "context"')
        examples += [_mrqa_question(item["context"], q, where) for q in item.get("qas", [])]
    return examples


def _mrqa_question(context: str, question: dict, where: str) -> QAExample:
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
