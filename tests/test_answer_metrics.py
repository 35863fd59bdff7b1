"""Answer metrics: the edge cases where the official evaluators of SQuAD v2.0, MRQA, TriviaQA and
HotpotQA differ (empty answers, missing predictions, yes/no, supporting facts), ordinary answers
in each family, and the refusal of repeated question ids. Every expected value is worked out by
hand in the comment next to it."""

import json

import pytest

from trbert.errors import InputError
from trbert.tasks.answer_metrics import (
    exact_match,
    hotpot_answer,
    hotpot_scores,
    mrqa_scores,
    normalize_answer,
    normalize_trivia_answer,
    squad1_f1,
    squad2_f1,
    squad_scores,
    supporting_facts,
    trivia_scores,
)
from trbert.tasks.files import unique_ids
from trbert.tasks.squad import read_squad


def test_the_two_f1_rules_differ_only_on_empty_answers():
    # "The" and "the" both normalise to nothing: equal, so exact match
    assert exact_match("The", "the") == 1
    # SQuAD v1.1 rule: no shared token -> 0, even empty against empty
    assert squad1_f1("The", "the") == 0.0 and squad1_f1("", "") == 0.0
    # SQuAD v2.0 rule: either side empty -> 1 if both are, else 0
    assert squad2_f1("The", "the") == 1.0 and squad2_f1("", "") == 1.0
    assert squad2_f1("", "Paris") == 0.0 and squad2_f1("Paris", "") == 0.0
    # ordinary answers: gold [denver, broncos], prediction [broncos]: P 1, R 1/2, F1 2/3 under both rules
    for rule in (squad1_f1, squad2_f1):
        assert rule("Denver Broncos", "the Broncos") == pytest.approx(2 / 3)
    # repeated tokens count with multiplicity: gold [x, x, y] vs [x]: P 1, R 1/3, F1 1/2
    assert squad1_f1("x x y", "x") == pytest.approx(0.5)


def test_normalisations():
    assert normalize_answer("The  Eiffel-Tower!") == "eiffeltower"  # SQuAD deletes punctuation
    # TriviaQA turns punctuation, typographic quotes and underscores into spaces
    assert normalize_trivia_answer("Jean-Paul_Sartre") == "jean paul sartre"
    assert normalize_trivia_answer("Rock \u2018n\u2019 Roll") == "rock n roll"
    assert normalize_trivia_answer("The The") == ""


def test_squad_v2_buckets_by_the_raw_answer_list():
    # gold ["The"] normalises to nothing: scored against "" (so "" is EM 1, F1 1) but stays HasAns
    report = squad_scores({"q": ["The"]}, {"q": ""})
    assert report == {
        "exact": 100.0,
        "f1": 100.0,
        "total": 1,
        "HasAns_exact": 100.0,
        "HasAns_f1": 100.0,
        "HasAns_total": 1,
    }
    # a prediction that normalises to nothing is empty too
    assert squad_scores({"q": ["The"]}, {"q": "the"})["f1"] == 100.0
    # ["the", "Paris"]: the empty gold is set aside before scoring, so "" matches nothing
    report = squad_scores({"q": ["the", "Paris"]}, {"q": ""})
    assert report["exact"] == 0.0 and report["f1"] == 0.0 and report["HasAns_total"] == 1


def test_squad_v2_report():
    golds = {"q1": ["The"], "q2": ["Denver Broncos"], "q3": [], "q4": [], "q5": ["x"]}
    preds = {"q1": "", "q2": "Broncos", "q3": "", "q4": "nothing"}  # q5 unanswered
    report = squad_scores(golds, preds)
    # per question (EM, F1): q1 (1, 1), q2 (0, 2/3), q3 (1, 1), q4 (0, 0), q5 (0, 0)
    assert report["total"] == 5
    assert report["exact"] == pytest.approx(100 * 2 / 5)
    assert report["f1"] == pytest.approx(100 * (1 + 2 / 3 + 1) / 5)
    # HasAns = q1, q2, q5 (raw answers non-empty); NoAns = q3, q4
    assert report["HasAns_total"] == 3 and report["NoAns_total"] == 2
    assert report["HasAns_exact"] == pytest.approx(100 / 3)
    assert report["HasAns_f1"] == pytest.approx(100 * (1 + 2 / 3) / 3)
    assert report["NoAns_exact"] == pytest.approx(50.0) and report["NoAns_f1"] == pytest.approx(50.0)
    # maximum over the gold answers: "city of paris" equals the second one after normalisation
    assert squad_scores({"q": ["Paris", "the city of Paris"]}, {"q": "city of paris"})["exact"] == 100.0
    # only unanswerable questions: no HasAns block at all
    assert "HasAns_total" not in squad_scores({"q": []}, {"q": ""})


def test_mrqa_keeps_every_gold_answer_and_has_no_buckets():
    # "the" is kept as a gold answer: "" equals it after normalisation (EM 1), but shares no token (F1 0)
    assert mrqa_scores({"q": ["the", "Paris"]}, {"q": ""}) == {"exact_match": 100.0, "f1": 0.0, "total": 1}
    assert mrqa_scores({"q": ["The"]}, {"q": "the"}) == {"exact_match": 100.0, "f1": 0.0, "total": 1}
    golds = {"q1": ["the", "Paris"], "q2": ["Denver Broncos", "Broncos"], "q3": ["x"], "q4": ["Paris"]}
    preds = {"q1": "", "q2": "Denver", "q4": "paris."}  # q3 unanswered: 0, still counted
    report = mrqa_scores(golds, preds)
    # q1 (1, 0); q2 EM 0, F1 max(2/3 vs "Denver Broncos", 0 vs "Broncos") = 2/3; q3 (0, 0); q4 (1, 1)
    assert set(report) == {"exact_match", "f1", "total"} and report["total"] == 4
    assert report["exact_match"] == pytest.approx(50.0)
    assert report["f1"] == pytest.approx(100 * (2 / 3 + 1) / 4)
    assert mrqa_scores({"q": []}, {"q": ""})["f1"] == 0.0  # no gold answer: nothing can match


def test_trivia_missing_prediction_scores_zero():
    # "The The" normalises to nothing; a missing prediction must not be scored as "" (which would be EM 1)
    assert trivia_scores({"q": ["The The", "Matt Johnson"]}, {}) == {"exact_match": 0.0, "f1": 0.0, "total": 1}
    golds = {
        "q1": ["The The", "Matt Johnson"],
        "q2": ["Jean-Paul Sartre"],
        "q3": ["Rock \u2018n\u2019 Roll"],
        "q4": ["The The"],
        "q5": ["Mt. Everest", "Everest"],
    }
    preds = {"q2": "Sartre", "q3": "rock n roll", "q4": "the", "q5": "mt everest"}
    report = trivia_scores(golds, preds)
    # q1 missing (0, 0); q2 [jean, paul, sartre] vs [sartre]: P 1, R 1/3, F1 1/2 (0, 1/2);
    # q3 typographic quotes are spaces (1, 1); q4 "" equals "" but shares no token (1, 0); q5 (1, 1)
    assert report["total"] == 5
    assert report["exact_match"] == pytest.approx(100 * 3 / 5)
    assert report["f1"] == pytest.approx(100 * (0.5 + 1 + 0 + 1) / 5)


def test_hotpot_answer_rules():
    assert hotpot_answer("yes", "Yes.") == (1.0, 1.0, 1.0, 1.0)
    # without the yes/no rule [yes] vs [yes, indeed] would be F1 2/3; EM is 0 either way
    assert hotpot_answer("yes", "yes indeed") == (0.0, 0.0, 0.0, 0.0)
    assert hotpot_answer("noanswer", "no answer")[:2] == (0.0, 0.0)
    # both normalise to nothing: EM 1, F1 0 (SQuAD v1.1 rule)
    assert hotpot_answer("The", "") == (1.0, 0.0, 0.0, 0.0)
    # [eiffel, tower] vs [eiffel]: P 1, R 1/2, F1 2/3
    assert hotpot_answer("the Eiffel Tower", "Eiffel") == pytest.approx((0.0, 2 / 3, 1.0, 0.5))


def test_supporting_facts_as_sets():
    # gold {A0, B2}, predicted {A0, B1, C0}: P 1/3, R 1/2, F1 2*(1/6)/(5/6) = 2/5
    assert supporting_facts([("A", 0), ("B", 2)], [("A", 0), ("B", 1), ("C", 0)]) == pytest.approx(
        (0.0, 0.4, 1 / 3, 0.5)
    )
    # lists from JSON, another order and a repeat: the same set, EM 1
    assert supporting_facts([("A", 1), ("D", 0)], [["D", 0], ["A", 1], ["A", 1]]) == (1.0, 1.0, 1.0, 1.0)
    assert supporting_facts([], []) == (1.0, 0.0, 0.0, 0.0)


def test_hotpot_report_with_supporting_facts():
    gold_answers = {"q1": "Eiffel Tower", "q2": "yes", "q3": "no", "q4": "Paris"}
    answers = {"q1": "Eiffel", "q2": "yes", "q3": "no"}  # q4 answer missing
    gold_facts = {"q1": [("A", 0), ("B", 2)], "q2": [("A", 1), ("D", 0)], "q3": [("C", 0)], "q4": [("E", 0)]}
    facts = {"q1": [("A", 0), ("B", 1), ("C", 0)], "q2": [["D", 0], ["A", 1]], "q4": [("E", 0)]}  # q3 missing
    report = hotpot_scores(gold_answers, answers, gold_facts, facts)
    # answer (EM, F1, P, R): q1 (0, 2/3, 1, 1/2), q2 (1, 1, 1, 1), q3 (1, 1, 1, 1), q4 missing
    # facts  (EM, F1, P, R): q1 (0, 2/5, 1/3, 1/2), q2 (1, 1, 1, 1), q3 missing, q4 (1, 1, 1, 1)
    # joint: q1 P 1/3, R 1/4, F1 2*(1/12)/(7/12) = 2/7, EM 0; q2 (1, 1); q3, q4 0 (a part missing)
    assert report == pytest.approx(
        {
            "em": 100 * 2 / 4,
            "f1": 100 * (2 / 3 + 1 + 1) / 4,
            "sp_em": 100 * 2 / 4,
            "sp_f1": 100 * (0.4 + 1 + 1) / 4,
            "joint_em": 100 * 1 / 4,
            "joint_f1": 100 * (2 / 7 + 1) / 4,
            "total": 4,
        }
    )
    # answer EM 1 with F1 0 ("The" vs ""): joint EM 1 (EMs multiply) but joint F1 0 (precisions multiply)
    report = hotpot_scores({"q": "The"}, {"q": ""}, {"q": [("A", 0)]}, {"q": [("A", 0)]})
    assert report["joint_em"] == 100.0 and report["joint_f1"] == 0.0


def test_hotpot_report_without_supporting_facts():
    report = hotpot_scores({"q1": "Eiffel Tower", "q2": "yes", "q3": "no"}, {"q1": "Eiffel", "q2": "no"})
    # q1 (0, 2/3); q2 yes vs no (0, 0); q3 missing (0, 0)
    assert set(report) == {"em", "f1", "total"}
    assert report["em"] == 0.0 and report["f1"] == pytest.approx(100 * (2 / 3) / 3) and report["total"] == 3
    with pytest.raises(ValueError, match="gold_facts"):
        hotpot_scores({"q": "x"}, {"q": "x"}, None, {"q": []})


def test_unique_ids_names_the_first_repeat(tmp_path):
    unique_ids(["a", "b", "c"], "dev.json")  # no repeat: nothing raised
    with pytest.raises(InputError, match=r"dev\.json: question id 'b' appears more than once"):
        unique_ids(iter(["a", "b", "c", "b", "a"]), "dev.json")
    # a SQuAD file whose two paragraphs reuse one id: read, then refused naming the id
    question = {"id": "q-7", "question": "Where?", "answers": [{"text": "Paris", "answer_start": 0}]}
    paragraphs = [{"context": "Paris is big.", "qas": [question]}, {"context": "Paris again.", "qas": [question]}]
    path = tmp_path / "dev-v2.0.json"
    path.write_text(json.dumps({"version": "v2.0", "data": [{"title": "t", "paragraphs": paragraphs}]}))
    examples = read_squad(path)
    assert len(examples) == 2
    with pytest.raises(InputError, match="'q-7' appears more than once"):
        unique_ids((e.qid for e in examples), str(path))
