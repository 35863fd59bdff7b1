"""RACE and WikiHop: readers and their bad input, features, losses, and every stage of both scripts."""

import json

import numpy as np
import pytest
import torch
from conftest import FIXTURES, featurize, fixture_tokenizer, tiny_bert_config, tiny_distilbert_config
from test_pipeline import every_stage, script
from transformers import BertForMultipleChoice, DistilBertForMultipleChoice

from trbert.core.heads import TRBertForMultipleChoice, TRBertForSequenceClassification, TRDistilBertForMultipleChoice
from trbert.core.policy import Policy, Sample, Threshold
from trbert.errors import InputError
from trbert.tasks import family, make_task
from trbert.tasks.race import read_race

RACE, WIKIHOP = FIXTURES / "race", FIXTURES / "wikihop"


def _wikihop(**overrides):
    return make_task("wikihop", family("wikihop").config(**{"max_segment": 3, **overrides}))


def _race(shared: bool):
    return make_task("race", family("race").config(max_qa_length=12, shared_selection=shared))


def test_race_reader_features_and_question_accuracy(tmp_path):
    questions = read_race(RACE / "train")
    assert len(questions) >= 4 and all(len(q.options) == 4 and 0 <= q.answer < 4 for q in questions)
    task = _race(shared=False)
    tokenizer = fixture_tokenizer()
    arrays, _ = featurize(task, questions, tokenizer, 40)
    assert arrays["input_ids"].shape == (4 * len(questions), 40)
    assert (arrays["labels"].reshape(-1, 4).sum(1) == 1).all()  # one right option per question
    group = arrays["input_ids"][:4]
    first_sep = [list(row).index(tokenizer.sep_token_id) for row in group]
    assert len(set(first_sep)) == 1  # the passage has one length for the four options
    logits = np.zeros((len(arrays["labels"]), 2), dtype=np.float32)
    logits[:, 1] = arrays["labels"]  # the right option scores highest
    assert task.score(task.predict(logits, arrays, questions), questions)["acc"] == 1.0
    logits[:, 1] = -arrays["labels"]
    assert task.score(task.predict(logits, arrays, questions), questions)["acc"] == 0.0

    bad = tmp_path / "train" / "high"
    bad.mkdir(parents=True)
    item = {"article": "a film", "questions": ["q?"], "options": [["a", "b", "c"]], "answers": ["A"]}
    (bad / "1.txt").write_text(json.dumps(item))
    with pytest.raises(InputError, match=r"1.txt: question 0: expected 4 options"):
        read_race(tmp_path / "train")
    item.update(options=[["a", "b", "c", "d"]], answers=["E"])
    (bad / "1.txt").write_text(json.dumps(item))
    with pytest.raises(InputError, match=r"answer 'E' is not one of A, B, C, D"):
        read_race(tmp_path / "train")


def test_wikihop_windows_markers_and_loss(tmp_path):
    task = _wikihop(doc_stride=0)  # windows without overlap
    tokenizer = fixture_tokenizer()
    items = task.read(WIKIHOP, "train")
    arrays, _ = featurize(task, items, tokenizer, 32)
    assert arrays["input_ids"].shape == (10, 3, 32)
    unused1 = tokenizer.convert_tokens_to_ids("[unused1]")
    for i, item in enumerate(items):
        markers = arrays["markers"][i][: len(item["candidates"])]
        real = arrays["lengths"][i] > 1
        for w in np.flatnonzero(real):  # every real window repeats the query and the markers
            assert (arrays["input_ids"][i, w, markers] == unused1).all()
        assert (arrays["markers"][i][len(item["candidates"]) :] == -1).all()
    assert (arrays["lengths"][:, 1:] > 1).any()  # long supports fill several windows
    # the loss: cross-entropy over candidates of the marker logits averaged over real windows
    logits = torch.randn(2, 3, 1, 32)
    batch = {k: torch.from_numpy(arrays[k][:2]) for k in ("markers", "lengths", "labels")}
    scores = task.candidate_logits(logits, batch["markers"], batch["lengths"])
    i, real = 0, batch["lengths"][0] > 1
    expected = logits[0, real, 0][:, batch["markers"][0, : len(items[0]["candidates"])]].mean(0)
    assert torch.allclose(scores[0, : len(items[0]["candidates"])], expected)
    loss = task.row_loss(logits, batch)
    assert torch.allclose(loss, torch.nn.functional.cross_entropy(scores, batch["labels"], reduction="none"))

    broken = json.loads((WIKIHOP / "train.json").read_text())
    broken[2]["answer"] = "nowhere"
    (tmp_path / "train.json").write_text(json.dumps(broken))
    with pytest.raises(InputError, match=r"item WH_tra_2: answer 'nowhere' is not a candidate"):
        task.read(tmp_path, "train")
    with pytest.raises(InputError, match=r"more than --max_num_candidates 2"):
        _wikihop(max_num_candidates=2).read(WIKIHOP, "train")


@pytest.mark.parametrize(
    "script_name,data,extra",
    [
        ("run_race_classify.py", RACE, "--max_seq_length 48 --max_qa_length 16"),
        ("run_race_classify.py", RACE, "--max_seq_length 48 --max_qa_length 16 --shared_selection"),
        ("run_wikihop.py", WIKIHOP, "--max_seq_len 48 --max_segment 3"),
        ("run_wikihop.py", WIKIHOP, "--max_seq_len 80 --max_segment 2 --doc_stride 20"),  # beyond 64 positions
    ],
)
def test_every_stage_of_the_choice_scripts(tmp_path, tiny_bert_dir, script_name, data, extra):
    joint = "--train_teacher --alpha 1 --beta 0.5 --temperature 2"
    p, tr, _ = every_stage(script_name, extra, tmp_path, data, tiny_bert_dir, "--alpha 1", joint)
    assert np.load(p["bert"] / "token_scores.npy").max() > 0 and 0 <= tr["acc"] <= 1
    if script_name == "run_race_classify.py":
        command = f"--data_dir {p['data']} {extra} --model_type autobert --model_name_or_path {p['both']}"
        assert script(script_name, *f"{command} --output_dir {p['both']} --do_eval --do_test".split()) == 0
        assert json.loads((p["both"] / "eval_results_test.json").read_text())["split"] == "test"
        assert json.loads((p["both"] / "eval_results.json").read_text())["split"] == "dev"  # not overwritten


def _choice_batch(tokenizer):
    arrays, _ = featurize(_race(shared=True), read_race(RACE / "train")[:3], tokenizer, 40)
    width = int(arrays["lengths"].max())
    ids = torch.from_numpy(arrays["input_ids"][..., :width]).long()
    types = torch.from_numpy(arrays["token_type_ids"][..., :width]).long()
    mask = torch.arange(width) < torch.from_numpy(arrays["lengths"])[..., None]
    return arrays, ids, types, mask, {"question_end": torch.from_numpy(arrays["question_end"])}


@pytest.mark.parametrize(
    "config,ours,stock",
    [
        (tiny_bert_config, TRBertForMultipleChoice, BertForMultipleChoice),
        (tiny_distilbert_config, TRDistilBertForMultipleChoice, DistilBertForMultipleChoice),
    ],
)
def test_shared_selection_keep_all_equals_the_stock_multiple_choice_model(config, ours, stock):
    torch.manual_seed(0)
    reference = stock(config()).eval()
    model = ours(config()).eval()
    model.load_state_dict(reference.state_dict(), strict=False)
    for selector in model.selectors:
        selector.out.bias.data.fill_(20.0)
    arrays, ids, types, mask, heads = _choice_batch(fixture_tokenizer())
    stock_types = {"token_type_ids": types} if stock is BertForMultipleChoice else {}
    with torch.no_grad():
        out = model(ids, mask, types if stock is BertForMultipleChoice else None, policy=Threshold(), head_inputs=heads)
        ref = reference(input_ids=ids, attention_mask=mask.long(), **stock_types)
    assert out.logits.shape == (3, 4) and torch.allclose(out.logits, ref.logits, atol=1e-5)


@pytest.mark.parametrize("selection", ["threshold", "unpadded", "sample"])
def test_the_options_of_a_question_share_one_selection(selection):
    torch.manual_seed(3)
    model = TRBertForMultipleChoice(tiny_bert_config()).train(selection == "sample")
    arrays, ids, types, mask, heads = _choice_batch(fixture_tokenizer())
    policy = Sample(torch.arange(3)) if selection == "sample" else Threshold()
    path = "unpadded" if selection == "unpadded" else "padded"
    with torch.no_grad():
        out = model(ids, mask, types, policy=policy, path=path, head_inputs=heads)
    positions = out.positions  # [B, 4, k] original positions reaching the last layer
    for b in range(3):
        end = int(arrays["question_end"][b])
        shared = [set(p[(p >= 0) & (p < end)].tolist()) for p in positions[b]]
        assert all(s == shared[0] for s in shared)  # the same passage/question tokens in every option row
        for c in range(4):  # option tokens and the final [SEP] are always kept
            kept = set(positions[b, c][positions[b, c] >= 0].tolist())
            assert set(range(end, int(arrays["lengths"][b, c]))) <= kept
    if selection == "sample":
        assert out.select_nll.shape == (3,) and torch.isfinite(out.select_nll).all()


def test_every_path_decides_through_the_one_keep_rule(monkeypatch):
    """The padded loop, the unpadded loop and the shared-choice heads all call Policy.keep (and the
    shared choice calls it once per question, not per option row)."""
    calls = []
    rule = Policy.keep

    def spy(policy, site):
        calls.append(site.alive.shape[0])
        return rule(policy, site)

    monkeypatch.setattr(Policy, "keep", spy)
    torch.manual_seed(0)
    plain = TRBertForSequenceClassification(tiny_bert_config()).eval()
    ids, mask = torch.randint(5, plain.config.vocab_size, (3, 12)), torch.ones(3, 12, dtype=torch.long)
    with torch.no_grad():
        for path in ("padded", "unpadded"):
            calls.clear()
            plain(ids, mask, policy=Threshold(), path=path)
            assert calls == [3, 3], path
        arrays, ids, types, mask, heads = _choice_batch(fixture_tokenizer())
        for path in ("padded", "unpadded"):
            calls.clear()
            TRBertForMultipleChoice(tiny_bert_config()).eval()(ids, mask, types, policy=Threshold(), path=path,
                                                               head_inputs=heads)  # fmt: skip
            assert calls and set(calls) == {3}, path  # 3 questions, not 12 option rows


def test_a_shared_selection_groups_the_rows_of_each_question_whatever_its_option_count():
    """Two options (not RACE's four): a question's selection and logits depend on its own rows alone; without
    ``question_end`` a selection that runs says what it needs."""
    torch.manual_seed(0)
    model = TRBertForMultipleChoice(tiny_bert_config()).eval()
    arrays, ids, types, mask, heads = _choice_batch(fixture_tokenizer())
    ids, types, mask = ids[:, :2], types[:, :2], mask[:, :2]
    with torch.no_grad():
        out = model(ids, mask, types, policy=Threshold(), head_inputs=heads)
        changed = ids.clone()
        changed[0, :, 1:4] = 7  # only the first question's passage
        again = model(changed, mask, types, policy=Threshold(), head_inputs=heads)
        assert out.logits.shape == (3, 2) and torch.equal(out.logits[1:], again.logits[1:])
        with pytest.raises(ValueError, match="a shared selection needs head_inputs"):
            model(ids, mask, types, policy=Threshold())
