"""Span QA: readers, answer alignment, official EM/F1, the QA reduction model, decoding, and every
stage of run_squad.py and run_mrqa.py."""

import gzip
import json
from collections import Counter

import numpy as np
import pytest
import torch
from conftest import FIXTURES, featurize, fixture_tokenizer, tiny_bert_config, tiny_distilbert_config
from test_pipeline import every_stage, script
from transformers import BertForQuestionAnswering, BertTokenizerFast, DistilBertForQuestionAnswering

from trbert.core.heads import TRBertForHotpotQA, TRBertForQuestionAnswering, TRDistilBertForQuestionAnswering
from trbert.core.policy import Threshold
from trbert.errors import InputError
from trbert.tasks import family, make_task
from trbert.tasks.answer_metrics import normalize_answer, squad2_f1, squad_scores, trivia_scores
from trbert.tasks.hotpot import HotpotTask
from trbert.tasks.mrqa import read_mrqa
from trbert.tasks.span import QAExample
from trbert.tasks.squad import read_squad

SQUAD, MRQA, TRIVIA, HOTPOT = (FIXTURES / name for name in ("squad", "mrqa", "trivia", "hotpot"))


def _task(name="squad", **overrides):
    options = dict(doc_stride=16, max_query_length=12, n_best_size=20, version_2_with_negative=True)
    return make_task(name, family(name).config(**{**options, **overrides}), "newsqa")


@pytest.fixture(scope="module")
def tokenizer():
    return fixture_tokenizer()


def test_readers(tmp_path):
    squad = read_squad(SQUAD / "train-v2.0.json")
    assert len(squad) == 24 and sum(not e.answers for e in squad) == 6
    assert all(e.answer_start is None for e in squad if not e.answers)
    mrqa = list(read_mrqa(MRQA / "train.jsonl"))  # the header line is skipped
    assert len(mrqa) == 18 and all(e.answers and e.answer_start is not None for e in mrqa)
    packed = tmp_path / "train.jsonl.gz"
    packed.write_bytes(gzip.compress((MRQA / "train.jsonl").read_bytes()))
    assert [e.qid for e in read_mrqa(packed)] == [e.qid for e in mrqa]
    broken = tmp_path / "bad.jsonl"
    broken.write_text((MRQA / "dev.jsonl").read_text() + '{"context": "x", "qas": [\n')
    with pytest.raises(InputError, match=r"bad.jsonl:6: not valid JSON"):
        list(read_mrqa(broken))
    (tmp_path / "bad.json").write_text('{"data": [')
    with pytest.raises(InputError, match=r"bad.json:1: not valid JSON"):
        read_squad(tmp_path / "bad.json")
    packed.write_bytes(packed.read_bytes()[:200])
    with pytest.raises(InputError, match="cannot be read"):
        list(read_mrqa(packed))


@pytest.mark.parametrize("stride, starts", [(-1, [0, 20]), (8, [0, 8, 16]), (20, [0, 20]), (50, [0, 20])])
def test_context_windows_step_by_the_stride_to_the_context_end(tokenizer, stride, starts):
    """30 context pieces, 20 to a window (32 - 9 question pieces - 3): windows start ``stride`` apart (-1 or
    more than a window: a window apart) until one reaches the end (tokenizers 0.23.1-0.23.2 stopped early)."""
    context = " ".join(["movie film"] * 15)
    windows = _task(doc_stride=stride)._tokenized_windows(
        QAExample("q", "what " * 9, context, []), tokenizer, 32, Counter()
    )
    assert [int(w["offsets"][w["context"][0], 0]) // 11 for w in windows] == [s // 2 for s in starts]
    assert [len(w["context"]) for w in windows] == [min(20, 30 - s) for s in starts]
    for w in windows:
        assert (
            w["input_ids"][:11] == tokenizer("what " * 9)["input_ids"] and w["input_ids"][-1] == tokenizer.sep_token_id
        )
        assert list(w["token_type_ids"]) == [0] * 11 + [1] * (len(w["input_ids"]) - 11)


@pytest.mark.parametrize("family", ["squad", "mrqa"])
def test_answer_alignment_round_trips(tokenizer, family):
    task = _task(family)
    examples = list(task.read(SQUAD if family == "squad" else MRQA, "train"))
    arrays, counts = featurize(task, examples, tokenizer, 48, "train")
    assert counts["misaligned"] == 1 and counts["truncated_questions"] == 1
    answered = 0
    for row in range(len(arrays["lengths"])):
        example = examples[arrays["example"][row]]
        s, e = arrays["start"][row], arrays["end"][row]
        if s == 0:
            assert e == 0
            continue
        offsets = arrays["offsets"][row]
        assert example.context[offsets[s][0] : offsets[e][1]] == example.answer_text
        answered += 1
    assert answered >= 17 and arrays["input_ids"].shape[1] == 48 and (arrays["lengths"] <= 48).all()
    windows_per_question = np.bincount(arrays["example"])
    assert windows_per_question.max() > 1  # long contexts are cut into several windows
    if family == "mrqa":
        assert (arrays["start"] > 0).all()  # answer-less training windows dropped (DeFormer protocol)
    # every context token is decoded in exactly one window (the one where it has most context)
    for number in np.unique(arrays["example"]):
        rows = np.flatnonzero(arrays["example"] == number)
        starts = [arrays["offsets"][r][arrays["max_context"][r], 0] for r in rows]
        merged = np.concatenate(starts)
        assert len(merged) == len(set(merged.tolist()))


def test_official_answer_normalisation_and_scores():
    assert normalize_answer("The  Eiffel-Tower!") == "eiffeltower"
    assert normalize_answer("an apple, a pear") == "apple pear"
    assert squad2_f1("the cat sat", "cat sat down") == pytest.approx(2 * (2 / 3) * 1 / (2 / 3 + 1))
    assert squad2_f1("", "") == 1.0 and squad2_f1("", "something") == 0.0
    golds = {"q1": ["Paris", "the city of Paris"], "q2": [], "q3": ["blue river"], "q4": []}
    preds = {"q1": "city of paris", "q2": "", "q3": "river", "q4": "a bridge"}
    report = squad_scores(golds, preds)
    # q1 exact (max over gold answers), q2 right (empty), q3 f1 2/3, q4 wrong
    assert report["exact"] == pytest.approx(50.0) and report["f1"] == pytest.approx(100 * (1 + 1 + 2 / 3) / 4)
    assert report["HasAns_total"] == 2 and report["HasAns_exact"] == pytest.approx(50.0)
    assert report["NoAns_total"] == 2 and report["NoAns_f1"] == pytest.approx(50.0)
    assert squad_scores({"q": ["x"]}, {})["exact"] == 0.0  # unanswered counts as wrong
    trivia = trivia_scores({"q": ["Mt. Everest", "Everest"]}, {"q": "mt everest"})
    assert trivia["exact_match"] == 100.0  # TriviaQA turns punctuation into spaces


def _stock_pair(config, ours, stock):
    torch.manual_seed(0)
    reference = stock(config).eval()
    model = ours(config).eval()
    model.load_state_dict(reference.state_dict(), strict=False)
    return model, reference


@pytest.mark.parametrize(
    "config,ours,stock",
    [
        (tiny_bert_config, TRBertForQuestionAnswering, BertForQuestionAnswering),
        (tiny_distilbert_config, TRDistilBertForQuestionAnswering, DistilBertForQuestionAnswering),
    ],
)
def test_keep_all_equals_the_stock_qa_model(config, ours, stock):
    model, reference = _stock_pair(config(), ours, stock)
    for selector in model.selectors:
        selector.out.bias.data.fill_(20.0)
    ids = torch.randint(5, 40, (3, 20))
    mask = torch.arange(20)[None] < torch.tensor([20, 14, 9])[:, None]
    with torch.no_grad():
        out = model(ids, mask, policy=Threshold())
        ref = reference(input_ids=ids, attention_mask=mask.long())
    for i, name in enumerate(("start_logits", "end_logits")):
        assert torch.allclose(out.logits[:, i][mask], getattr(ref, name)[mask], atol=1e-5)


def test_dropped_tokens_keep_the_state_they_had_when_dropped():
    torch.manual_seed(1)
    model = TRBertForQuestionAnswering(tiny_bert_config()).eval()
    model.qa_outputs.weight.data = torch.eye(2, 32)  # start logit = hidden feature 0
    model.qa_outputs.bias.data.zero_()
    ids = torch.randint(5, 40, (2, 16))
    mask = torch.ones(2, 16, dtype=torch.bool)
    with torch.no_grad():
        out = model(ids, mask, policy=Threshold())
        states = model(ids, mask, output_hidden_states=True).hidden_states  # [embeddings, layer 0, ...]
        dropped = torch.sigmoid(model.selectors[0](states[1])) < 0.5  # selector 0 sees layer 0's output
    dropped[:, 0] = False
    assert dropped.any() and (~dropped).any()
    assert torch.allclose(out.logits[:, 0][dropped], states[1][..., 0][dropped], atol=1e-6)


def test_positions_extend_beyond_the_checkpoint():
    model = TRBertForQuestionAnswering(tiny_bert_config())
    learned = model.bert.embeddings.position_embeddings.weight.detach().clone()
    assert model.extend_positions(100) == 64 and model.config.max_position_embeddings == 100
    grown = model.bert.embeddings.position_embeddings.weight
    assert torch.equal(grown[:64], learned) and torch.equal(grown[64:100], learned[:36])
    out = model(torch.randint(5, 40, (1, 90)), torch.ones(1, 90, dtype=torch.bool))
    assert out.logits.shape == (1, 2, 90)


def test_decoding_picks_the_best_span_and_the_null_answer(tokenizer):
    task = _task("squad")
    examples = list(task.read(SQUAD, "dev"))
    arrays, _ = featurize(task, examples, tokenizer, 48, "dev")
    logits = np.full((len(arrays["lengths"]), 2, 48), -5.0, dtype=np.float32)
    logits[:, :, 0] = 0.0  # [CLS]: null score 0 beats every other span (-10)
    rows = range(len(arrays["lengths"]))
    target = next(r for r in rows if arrays["start"][r] > 0 and arrays["max_context"][r, arrays["start"][r]])
    s, e = arrays["start"][target], arrays["end"][target]
    logits[target, 0, s], logits[target, 1, e] = 10.0, 10.0
    answers, odds = task.decode(logits, arrays, examples)
    example = examples[arrays["example"][target]]
    assert answers[example.qid] == example.answer_text and odds[example.qid] < 0
    others = [q for q in answers if q != example.qid]
    assert others and all(answers[q] == "" and odds[q] == pytest.approx(10.0) for q in others)
    task.version_2_with_negative = False  # SQuAD 1.1: always a span
    assert all(answers for answers in task.decode(logits, arrays, examples)[0].values())


def _span_stage(script_name, command, **paths):
    common = (
        "--data_dir {data} --max_seq_length 48 --doc_stride 16 --max_query_length 12 --per_gpu_train_batch_size 8"
        " --per_gpu_eval_batch_size 8 --num_train_epochs 1 --logging_steps 2 --learning_rate 1e-3"
        " --features_cache_dir {cache}"
    )
    return script(script_name, *f"{common} {command}".format(**paths).split())


SCRIPTS = [
    ("run_squad.py", SQUAD, "--version_2_with_negative", 48),
    ("run_mrqa.py", MRQA, "--task_name newsqa", 48),
    ("run_triviaqa.py", TRIVIA, "--max_segment 3", 48),
    ("run_triviaqa.py", TRIVIA, "--max_segment 2 --doc_stride -1 --max_seq_len 80", 80),  # beyond 64 positions
    ("run_hotpotqa.py", HOTPOT, "--max_seq_length 96 --warmup_steps 0", 96),
]


@pytest.mark.parametrize("script_name,data,extra,length", SCRIPTS)
def test_every_stage_of_the_span_scripts(tmp_path, tiny_bert_dir, script_name, data, extra, length):
    flags = f"--max_seq_length 48 --doc_stride 16 --max_query_length 12 {extra}"
    p, tr, full = every_stage(
        script_name, flags, tmp_path, data, tiny_bert_dir, "--alpha 5", "--train_teacher --alpha 5"
    )
    scores, teacher = np.load(p["bert"] / "token_scores.npy"), np.load(p["bert"] / "teacher_logits.npy")
    assert scores.shape[-2:] == (2, length) and teacher.shape[-1] == length and scores.max() > 0
    assert (script_name == "run_hotpotqa.py") == (teacher.shape[-2] == 7)  # span, switch, sentence rows
    assert tr["total"] == full["total"] and 0 <= tr["f1"] <= 100
    predictions = json.loads((p["both"] / "predictions.json").read_text())
    if script_name == "run_hotpotqa.py":  # HotpotQA's official format: answers and supporting facts
        assert set(predictions) == {"answer", "sp"} and len(predictions["sp"]) == tr["total"]
        predictions = predictions["answer"]
    assert len(predictions) == tr["total"] and all(isinstance(v, str) for v in predictions.values())
    assert (p["both"] / "null_odds.json").is_file() == (script_name == "run_squad.py")


def test_a_malformed_file_stops_the_script_with_its_name(tmp_path, capsys, tiny_bert_dir):
    p = {"data": tmp_path, "lm": tiny_bert_dir, "cache": tmp_path / "cache", "out": tmp_path / "out"}
    (tmp_path / "train.jsonl").write_text('{"header": {}}\n{"context": 3}\n')
    command = "--task_name newsqa --model_type bert --model_name_or_path {lm} --output_dir {out} --do_train"
    assert _span_stage("run_mrqa.py", command, **p) == 2
    err = capsys.readouterr().err
    assert 'train.jsonl:2: no string "context"' in err and "Traceback" not in err and not p["out"].exists()


def test_trivia_windows_and_the_shared_normalisation_loss(tokenizer):
    task = _task("trivia", doc_stride=-1, max_segment=3, max_num_answers=64)
    examples = list(task.read(TRIVIA, "train"))
    arrays, counts = featurize(task, examples, tokenizer, 48, "train")
    assert arrays["input_ids"].shape == (10, 3, 48) and counts["questions_without_gold_span"] == 1
    for i, example in enumerate(examples):  # every gold position decodes to the answer text
        for w in range(3):
            for s, e in zip(arrays["starts"][i, w], arrays["ends"][i, w], strict=True):
                if s > 0:
                    offsets = arrays["offsets"][i, w]
                    assert example.context[offsets[s][0] : offsets[e][1]] == example.answers[0]
    # the OR loss over all windows of an example, against the formula
    logits = torch.randn(1, 2, 2, 5)
    batch = {
        "attention_mask": torch.tensor([[[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]]),
        "starts": torch.tensor([[[2, -1], [1, 2]]]),
        "ends": torch.tensor([[[3, -1], [2, -1]]]),
    }
    z = logits.masked_fill(batch["attention_mask"][:, :, None, :] == 0, -1e4)
    start = torch.logsumexp(z[0, :, 0].flatten(), 0) - torch.logsumexp(
        torch.stack([z[0, 0, 0, 2], z[0, 1, 0, 1], z[0, 1, 0, 2]]), 0
    )
    end = torch.logsumexp(z[0, :, 1].flatten(), 0) - torch.logsumexp(torch.stack([z[0, 0, 1, 3], z[0, 1, 1, 2]]), 0)
    assert torch.allclose(task.row_loss(logits, batch), ((start + end) / 2)[None])


def test_hotpot_features_heads_and_answers(tokenizer):
    task = HotpotTask(max_answer_length=30)
    examples = list(task.read(HOTPOT, "train"))
    arrays, _ = featurize(task, examples, tokenizer, 64, "train")
    assert arrays["switch"].tolist() == [{"yes": 1, "no": 2}.get(e.answer, 0) for e in examples]
    for i, example in enumerate(examples):
        s, e = arrays["starts"][i, 0], arrays["ends"][i, 0]
        if arrays["switch"][i] == 0 and s > 0:  # the gold span's word pieces spell the answer
            assert tokenizer.decode(arrays["input_ids"][i, s : e + 1]) == example.answer
        real = arrays["sent_starts"][i] >= 0
        assert (arrays["sent_starts"][i][real] <= arrays["sent_ends"][i][real]).all()
        assert (arrays["sent_ends"][i][real] < arrays["lengths"][i]).all()
    # keep-all: the span rows equal stock BertForQuestionAnswering on the same weights
    model, reference = _stock_pair(tiny_bert_config(), TRBertForHotpotQA, BertForQuestionAnswering)
    for selector in model.selectors:
        selector.out.bias.data.fill_(20.0)
    batch = {k: torch.from_numpy(v[:3]) for k, v in arrays.items() if k not in ("origin", "sent_ids")}
    width = int(batch["lengths"].max())
    ids, types = batch["input_ids"][:, :width].long(), batch["token_type_ids"][:, :width].long()
    mask = torch.arange(width) < batch["lengths"][:, None]
    heads = {"sent_starts": batch["sent_starts"], "sent_ends": batch["sent_ends"]}
    with torch.no_grad():
        out = model(ids, mask, types, policy=Threshold(), head_inputs=heads)
        ref = reference(input_ids=ids, attention_mask=mask.long(), token_type_ids=types)
    assert torch.allclose(out.logits[:, 0][mask], ref.start_logits[mask], atol=1e-5)
    loss = task.row_loss(out.logits, {**batch, "attention_mask": mask})
    assert loss.shape == (3,) and torch.isfinite(loss).all()
    # decoding: the switch answers yes / no; F1 scores a wrong yes/no as 0
    dev = list(task.read(HOTPOT, "dev"))
    dev_arrays, _ = featurize(task, dev, tokenizer, 64, "dev")
    logits = np.full((len(dev), 7, 64), -5.0, dtype=np.float32)
    logits[:, 2:5, 0] = [0.0, 1.0, 0.0]  # switch: yes
    predictions = task.predict(logits, dev_arrays, dev)
    assert set(predictions.answers["answer"].values()) == {"yes"}
    report = task.score(predictions, dev)
    assert report["f1"] == pytest.approx(100.0 * sum(e.answer == "yes" for e in dev) / len(dev))


def test_empty_contexts_are_counted_and_an_all_empty_file_is_refused(tokenizer):
    task = _task("squad")
    good = QAExample("q1", "What film?", "The film was great.", ["film"], 4, "film")
    empty = QAExample("q2", "What?", "   ", [], None)
    arrays, counts = featurize(task, [good, empty], tokenizer, 48, "train")
    assert counts["empty_contexts"] == 1 and arrays["example"].tolist() == [0]
    assert len(featurize(task, [empty], tokenizer, 48, "train")[0]["lengths"]) == 0


def test_hotpot_training_order_shuffles_the_chosen_set_and_puts_the_overflow_last():
    """Gold paragraphs are not always first (no "keep the early tokens" shortcut); the paragraph
    that overflows the budget comes last; the order is fixed per example."""
    task = HotpotTask(seed=3)
    sizes = [10, 10, 10, 10, 10, 10]
    orders = [task._order(number, sizes, budget=45, training=True) for number in range(40)]
    assert all(len(o) == 5 and o[4] not in (0, 1) for o in orders)  # 4 fit, the 5th overflows
    assert any(o[0] not in (0, 1) for o in orders) and any(o[0] in (0, 1) for o in orders)
    assert all({0, 1} <= set(o[:4]) for o in orders)  # both gold paragraphs are always chosen
    assert orders == [task._order(number, sizes, budget=45, training=True) for number in range(40)]
    assert task._order(0, sizes, budget=45, training=False) == list(range(6))  # dev: the file's order


def test_mrqa_context_markers_are_one_reserved_token_each(tmp_path):
    vocab = (FIXTURES / "vocab.txt").read_text().split() + ["[unused1]", "[unused2]", "[unused3]", "["]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(vocab=str(tmp_path / "vocab.txt"), do_lower_case=True)
    example = QAExample("m1", "what film?", "[TLE] film [PAR] the film was great", ["film"], 6, "film")
    arrays, _ = featurize(_task("mrqa"), [example], tokenizer, 48, "train")
    ids = arrays["input_ids"][0, : arrays["lengths"][0]].tolist()
    unused = tokenizer.convert_tokens_to_ids(["[unused1]", "[unused2]"])
    assert ids.count(unused[1]) == 1 and ids.count(unused[0]) == 1  # [TLE] -> [unused2], [PAR] -> [unused1]
    assert tokenizer.convert_tokens_to_ids("[") not in ids  # not read as text
    start = int(arrays["start"][0])
    assert example.context[arrays["offsets"][0][start][0] : arrays["offsets"][0][start][1]] == "film"


@pytest.mark.parametrize("head", ["hotpot", "wikihop"])
def test_original_hotpot_and_wikihop_checkpoints_load_their_heads(tmp_path, head):
    from safetensors.torch import save_file

    from trbert.core.heads import TRBertForWikihop
    from trbert.store.checkpoint import load_model

    cls, names = (
        (
            TRBertForHotpotQA,
            {"switch": "qa_classifier", "sentence_hidden": "sent_linear", "sentence_out": "sent_classifier"},
        )
        if head == "hotpot"
        else (TRBertForWikihop, {"token_scores": "qa_outputs"})
    )
    torch.manual_seed(1)
    model = cls(tiny_bert_config())
    state = {}
    for key, value in model.state_dict().items():
        first, rest = key.split(".", 1)
        if first == "selectors":
            w, part, kind = rest.split(".")
            state[f"bert.encoder.linear_{1 if part == 'hidden' else 2}.{w}.{kind}"] = value
        else:
            state[f"{names.get(first, first)}.{rest}"] = value
    model.config.save_pretrained(tmp_path)
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "model.safetensors"))
    loaded = load_model(str(tmp_path), "autobert", model.num_labels, head)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_triviaqa_max_doc_len_cuts_the_document_as_wikihop_cuts_its_supports(tokenizer):
    """One meaning per flag: --max_doc_len is the document word pieces read per question in
    TriviaQA as in WikiHop (-1: all); an answer past the cut is in no window."""
    context = "the film opened in paris and the film closed in london"
    example = QAExample(
        "q1", "where did it close?", context, ["london"], spans=[(context.index("london"), len(context))]
    )
    for cut, pieces, found in ((-1, len(tokenizer.tokenize(context)), True), (5, 5, False)):
        task = make_task("trivia", family("trivia").config(max_doc_len=cut, max_segment=1))
        arrays, counts = featurize(task, [example], tokenizer, 64)
        assert (arrays["offsets"][0, 0, :, 0] >= 0).sum() == pieces
        assert bool(counts["questions_without_gold_span"]) != found
