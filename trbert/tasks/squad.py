"""SQuAD 2.0 (``run_squad.py``): the official JSON files, span features, the official v2.0 metric.

The reader of ``{"data": [{"paragraphs": [{"context", "qas": [{"id", "question", "answers":
[{"text", "answer_start"}], "is_impossible"}]}]}]}`` into :class:`~trbert.tasks.span.QAExample`
(errors name the file and question) and the family's flags and defaults; the rest: :mod:`.span`.
"""

from __future__ import annotations

from pathlib import Path

from ..config import with_defaults
from .answer_metrics import squad_scores
from .base import Family, options_for, register
from .files import load_json, require
from .span import QAExample, SpanConfig, SpanTask


def read_squad(path: Path) -> list[QAExample]:
    data = load_json(path)
    require(isinstance(data, dict) and isinstance(data.get("data"), list), str(path), 'expected {"data": [...]}')
    examples = []
    for a, article in enumerate(data["data"]):
        for p, paragraph in enumerate(article.get("paragraphs", [])):
            where = f"{path}: data[{a}].paragraphs[{p}]"
            require(isinstance(paragraph.get("context"), str), where, 'no string "context"')
            examples += [_question(paragraph["context"], q, where) for q in paragraph.get("qas", [])]
    return examples


def _question(context: str, question: dict, where: str) -> QAExample:
    keys = {"id", "question"}
    require(isinstance(question, dict) and keys <= question.keys(), where, 'a question without "id" or "question"')
    where = f"{where}, question {question['id']}"
    answers = question.get("answers", [])
    require(isinstance(answers, list), where, '"answers" must be a list')
    for answer in answers:
        require(isinstance(answer, dict) and isinstance(answer.get("text"), str), where, 'an answer without "text"')
        start = answer.get("answer_start")
        integer = isinstance(start, int) and not isinstance(start, bool)
        require(integer, where, f"answer_start {start!r} is not an integer")
    impossible = bool(question.get("is_impossible", False)) or not answers
    # evaluation: the raw answer list, as the official v2.0 evaluator (a question marked is_impossible
    # with answers listed is HasAns there); training: the first answer, none when impossible
    start, text = (None, "") if impossible else (answers[0]["answer_start"], answers[0]["text"])
    return QAExample(
        str(question["id"]), question["question"], context, [a["text"] for a in answers], start, text, where
    )


SquadConfig = with_defaults(SpanConfig, "SquadConfig", train_file="train-v2.0.json", predict_file="dev-v2.0.json")

FAMILY = register(
    Family(
        "squad",
        SquadConfig,
        lambda config, name, seed: SpanTask("squad", read_squad, squad_scores, **options_for(SpanTask, config)),
        defaults=dict(task_name="squad", max_seq_length=384, learning_rate=5e-5, guide_rate=0.2),
        min_length=lambda config: config.max_query_length + 4,  # [CLS] question [SEP] context [SEP]
    )
)
