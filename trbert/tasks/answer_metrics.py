"""Exact match and F1 of extractive answers, with the edge cases of each official evaluator.

Pure functions from gold and predicted answers (dicts keyed by question id) to each dataset's
official report, as percentages. All normalise alike (lower case, punctuation and the articles
a/an/the removed, white space collapsed; TriviaQA turns punctuation, typographic quotes and
underscores into spaces instead) and take the maximum over the gold answers; they differ on empty
answers (SQuAD v2.0: :func:`squad_scores`, :func:`squad2_f1`; MRQA, TriviaQA, HotpotQA and SQuAD
v1.1: :func:`squad1_f1`, so gold "The" against prediction "the" is EM 1 but F1 0) and HotpotQA
scores yes / no / noanswer and supporting facts its own way (:func:`hotpot_answer`,
:func:`hotpot_scores`).

A question without a prediction scores 0 and counts in the total. Repeated question ids are refused
by the readers (:func:`trbert.tasks.files.unique_ids`; a dict cannot hold them).
"""

from __future__ import annotations

import collections
import re
import string
from collections.abc import Callable, Iterable

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_SQUAD_PUNCTUATION = set(string.punctuation)
_TRIVIA_PUNCTUATION = set(string.punctuation + "\u2018\u2019\u00b4`")
_HOTPOT_SPECIAL = frozenset({"yes", "no", "noanswer"})


def normalize_answer(text: str) -> str:
    """SQuAD normalisation (also MRQA's and HotpotQA's): punctuation is deleted."""
    text = "".join(ch for ch in text.lower() if ch not in _SQUAD_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def normalize_trivia_answer(text: str) -> str:
    """TriviaQA normalisation: punctuation and underscores become spaces, then as SQuAD."""
    text = "".join(" " if ch in _TRIVIA_PUNCTUATION else ch for ch in text.replace("_", " ").lower())
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(gold: str, prediction: str, normalize: Callable[[str], str] = normalize_answer) -> int:
    return int(normalize(gold) == normalize(prediction))


def token_overlap(gold_tokens: list[str], pred_tokens: list[str]) -> tuple[float, float, float]:
    """``(f1, precision, recall)`` of the tokens both sides share (with multiplicity); all 0 when they share none."""
    common = sum((collections.Counter(gold_tokens) & collections.Counter(pred_tokens)).values())
    if common == 0:
        return 0.0, 0.0, 0.0
    precision, recall = common / len(pred_tokens), common / len(gold_tokens)
    return 2 * precision * recall / (precision + recall), precision, recall


def squad1_f1(gold: str, prediction: str, normalize: Callable[[str], str] = normalize_answer) -> float:
    """F1 as SQuAD v1.1, MRQA and TriviaQA score it: 0 unless a token is shared (empty vs empty is 0)."""
    return token_overlap(normalize(gold).split(), normalize(prediction).split())[0]


def squad2_f1(gold: str, prediction: str, normalize: Callable[[str], str] = normalize_answer) -> float:
    """F1 as SQuAD v2.0 scores it: when either side is empty, 1 if both are, else 0."""
    gold_tokens, pred_tokens = normalize(gold).split(), normalize(prediction).split()
    if not gold_tokens or not pred_tokens:
        return float(gold_tokens == pred_tokens)
    return token_overlap(gold_tokens, pred_tokens)[0]


def _percent(total: float, count: int) -> float:
    return 100.0 * total / count if count else 0.0


def squad_scores(golds: dict[str, list[str]], predictions: dict[str, str]) -> dict[str, float]:
    """The SQuAD v2.0 report: ``exact``, ``f1``, ``total`` and, where such questions exist,
    ``HasAns_*`` / ``NoAns_*``. ``golds`` maps question ids to their raw gold answer texts (empty
    for unanswerable questions); those that normalise to nothing are set aside (all of them: scored
    against the empty string), but HasAns/NoAns follows the raw list (gold "The" alone: HasAns).
    Unlike the official script, which leaves a question without a prediction out of the total (and
    then fails on the breakdown), such a question scores 0."""
    exact, overlap = {}, {}
    for qid, answers in golds.items():
        scored = [a for a in answers if normalize_answer(a)] or [""]
        prediction = predictions.get(qid)
        exact[qid] = max(exact_match(a, prediction) for a in scored) if prediction is not None else 0
        overlap[qid] = max(squad2_f1(a, prediction) for a in scored) if prediction is not None else 0.0

    def block(ids: list[str], prefix: str = "") -> dict[str, float]:
        sums = {"exact": sum(exact[q] for q in ids), "f1": sum(overlap[q] for q in ids)}
        return {**{prefix + k: _percent(v, len(ids)) for k, v in sums.items()}, f"{prefix}total": len(ids)}

    report = block(list(golds))
    for prefix, wanted in (("HasAns_", True), ("NoAns_", False)):
        ids = [q for q, answers in golds.items() if bool(answers) == wanted]  # the raw list decides
        if ids:
            report.update(block(ids, prefix))
    return report


def _best_over_golds(golds: dict, predictions: dict, normalize: Callable[[str], str]) -> dict[str, float]:
    """``exact_match``, ``f1`` (maximum over each question's gold answers, SQuAD v1.1 rule) and
    ``total``. A missing prediction, or a question without any gold answer, scores 0."""
    em = score = 0.0
    for qid, answers in golds.items():
        prediction = predictions.get(qid)
        if prediction is None or not answers:
            continue
        em += max(exact_match(a, prediction, normalize) for a in answers)
        score += max(squad1_f1(a, prediction, normalize) for a in answers)
    return {"exact_match": _percent(em, len(golds)), "f1": _percent(score, len(golds)), "total": len(golds)}


def mrqa_scores(golds: dict[str, list[str]], predictions: dict[str, str]) -> dict[str, float]:
    """The MRQA shared-task report (the SQuAD v1.1 rules): ``exact_match``, ``f1`` and ``total``.
    Every gold answer counts, including one that normalises to nothing; no HasAns/NoAns split."""
    return _best_over_golds(golds, predictions, normalize_answer)


def trivia_scores(golds: dict[str, list[str]], predictions: dict[str, str]) -> dict[str, float]:
    """TriviaQA's ``exact_match`` and ``f1`` over the answer aliases, and ``total``. A question
    without a prediction scores 0 (it is not scored as the empty string, which would match an
    alias such as "The The" that normalises to nothing)."""
    return _best_over_golds(golds, predictions, normalize_trivia_answer)


def hotpot_answer(gold: str, prediction: str) -> tuple[float, float, float, float]:
    """``(em, f1, precision, recall)`` of one HotpotQA answer. EM is plain exact match; when
    either normalised side is yes / no / noanswer and the sides differ, F1, precision and recall
    are 0. Otherwise the SQuAD v1.1 rule (empty vs empty: EM 1, F1 0)."""
    gold_text, pred_text = normalize_answer(gold), normalize_answer(prediction)
    em = float(gold_text == pred_text)
    if (gold_text in _HOTPOT_SPECIAL or pred_text in _HOTPOT_SPECIAL) and gold_text != pred_text:
        return em, 0.0, 0.0, 0.0
    return (em, *token_overlap(gold_text.split(), pred_text.split()))


def supporting_facts(gold: Iterable, predicted: Iterable) -> tuple[float, float, float, float]:
    """``(em, f1, precision, recall)`` of predicted supporting facts against the gold ones, both
    taken as sets of ``(title, sentence index)`` pairs (lists from JSON are accepted). EM is set
    equality (two empty sets: EM 1, F1 0); F1, precision and recall are 0 without a shared fact."""
    gold_set, pred_set = {tuple(f) for f in gold}, {tuple(f) for f in predicted}
    return (float(gold_set == pred_set), *token_overlap(list(gold_set), list(pred_set)))


def hotpot_scores(
    gold_answers: dict[str, str], answers: dict[str, str], gold_facts: dict | None = None, facts: dict | None = None
) -> dict[str, float]:
    """HotpotQA's report as percentages: ``em``, ``f1`` and ``total``; with predicted ``facts``
    also ``sp_em``, ``sp_f1``, ``joint_em`` and ``joint_f1``. ``gold_facts`` and ``facts`` map
    question ids to ``(title, sentence index)`` pairs. Joint precision (recall) is the product of
    the answer's and the facts' precision (recall), joint F1 their harmonic mean and joint EM the
    product of the EMs. A question missing from ``answers`` or ``facts`` scores 0 in that part
    and in the joint scores, and still counts in the total."""
    if facts is not None and gold_facts is None:
        raise ValueError("hotpot_scores: predicted supporting facts need gold_facts")
    sums = collections.Counter()
    for qid, gold in gold_answers.items():
        answer = hotpot_answer(gold, answers[qid]) if qid in answers else None
        if answer is not None:
            sums.update(em=answer[0], f1=answer[1])
        if facts is None or qid not in facts:
            continue
        fact = supporting_facts(gold_facts[qid], facts[qid])
        sums.update(sp_em=fact[0], sp_f1=fact[1])
        if answer is not None:
            precision, recall = answer[2] * fact[2], answer[3] * fact[3]
            joint_f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
            sums.update(joint_em=answer[0] * fact[0], joint_f1=joint_f1)
    keys = ("em", "f1") if facts is None else ("em", "f1", "sp_em", "sp_f1", "joint_em", "joint_f1")
    return {**{k: _percent(sums[k], len(gold_answers)) for k in keys}, "total": len(gold_answers)}
