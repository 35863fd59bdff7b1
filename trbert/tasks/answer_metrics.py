"""Exact match and F1 of extractive answers, as the official evaluation scripts define them.

What this file is: our implementation of the rules of the official SQuAD v2.0 script (answer
normalisation: lower case, punctuation removed, articles a/an/the removed, white space collapsed;
maximum over the gold answers; a question without gold answers is answered correctly by the empty
string; HasAns/NoAns breakdown) and of the TriviaQA script (punctuation including typographic
quotes replaced by spaces, underscores as spaces, maximum over the answer aliases). Scores are
percentages, as the official scripts print them.
"""

from __future__ import annotations

import collections
import re
import string

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_SQUAD_PUNCTUATION = set(string.punctuation)
_TRIVIA_PUNCTUATION = set(string.punctuation + "\u2018\u2019\u00b4`")


def normalize_answer(text: str) -> str:
    """SQuAD normalisation."""
    text = "".join(ch for ch in text.lower() if ch not in _SQUAD_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def normalize_trivia_answer(text: str) -> str:
    """TriviaQA normalisation: punctuation and underscores become spaces, then as SQuAD."""
    text = "".join(" " if ch in _TRIVIA_PUNCTUATION else ch for ch in text.lower().replace("_", " "))
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(gold: str, prediction: str, normalize=normalize_answer) -> int:
    return int(normalize(gold) == normalize(prediction))


def f1(gold: str, prediction: str, normalize=normalize_answer) -> float:
    gold_tokens, pred_tokens = normalize(gold).split(), normalize(prediction).split()
    if not gold_tokens or not pred_tokens:  # no-answer: right only if both are empty
        return float(gold_tokens == pred_tokens)
    common = sum((collections.Counter(gold_tokens) & collections.Counter(pred_tokens)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred_tokens), common / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def squad_scores(golds: dict[str, list[str]], predictions: dict[str, str]) -> dict[str, float]:
    """The official SQuAD v2.0 report: ``exact``, ``f1``, ``total`` and, where present,
    ``HasAns_*`` / ``NoAns_*``. ``golds`` maps question ids to their gold answer texts
    (empty for unanswerable questions); a question missing from ``predictions`` scores 0."""
    exact, overlap, has_answer = {}, {}, {}
    for qid, answers in golds.items():
        answers = [a for a in answers if normalize_answer(a)] or [""]
        has_answer[qid] = answers != [""]
        prediction = predictions.get(qid)
        exact[qid] = max(exact_match(a, prediction) for a in answers) if prediction is not None else 0
        overlap[qid] = max(f1(a, prediction) for a in answers) if prediction is not None else 0.0

    def block(ids, prefix=""):
        n = len(ids)
        return {
            f"{prefix}exact": 100.0 * sum(exact[q] for q in ids) / n,
            f"{prefix}f1": 100.0 * sum(overlap[q] for q in ids) / n,
            f"{prefix}total": n,
        }

    report = block(list(golds))
    for prefix, wanted in (("HasAns_", True), ("NoAns_", False)):
        ids = [q for q in golds if has_answer[q] == wanted]
        if ids:
            report.update(block(ids, prefix))
    return report


def trivia_scores(golds: dict[str, list[str]], predictions: dict[str, str]) -> dict[str, float]:
    """TriviaQA's ``exact_match`` and ``f1``: maximum over the aliases, mean over the questions."""
    n = max(1, len(golds))
    em = sum(max(exact_match(a, predictions.get(q, ""), normalize_trivia_answer) for a in g) for q, g in golds.items())
    score = sum(max(f1(a, predictions.get(q, ""), normalize_trivia_answer) for a in g) for q, g in golds.items())
    return {"exact_match": 100.0 * em / n, "f1": 100.0 * score / n, "total": len(golds)}
