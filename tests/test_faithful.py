"""Issue 20, "faithful to the last window": each behaviour checked against the original's facts,
with expected values worked out by hand in the comments (never produced by the code under test)."""

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch
from conftest import FIXTURES, featurize, fixture_tokenizer, tiny_bert_config, tiny_distilbert_config
from safetensors import safe_open
from test_pipeline import script

from trbert.config import Precision
from trbert.core.encoder import Trace
from trbert.core.heads import (
    TRBertForMultipleChoice,
    TRBertForSequenceClassification,
    TRDistilBertForSequenceClassification,
)
from trbert.core.objective import init_loss, init_mask, rank_targets, shared_rank_targets
from trbert.core.policy import Probe
from trbert.errors import InputError
from trbert.tasks import family, make_task
from trbert.tasks.answer_metrics import squad_scores
from trbert.tasks.final_text import final_text
from trbert.tasks.hotpot import HotpotExample, best_text_span
from trbert.tasks.race import RaceQuestion, read_race
from trbert.tasks.span import QAExample, SpanTask
from trbert.tasks.squad import read_squad
from trbert.tools.prepare import write_rank_targets
from trbert.train.cli import parse_args
from trbert.train.loop import _optimization, parameter_groups

# ---- 1. WikiHop windows: --doc_stride is the overlap, -1 (the default) one window -------------

WIKIHOP_ITEM = {
    "id": "WH_hand",
    "query": "plot",
    "candidates": ["fun", "dull"],
    "answer": "fun",
    "supports": ["good scene moving awful weak", "great actor film"],
}
# prefix   [CLS] plot [unused1] fun [unused1] dull                              6 pieces
# document [unused2] good scene moving awful weak [unused2] great actor film    10 pieces
# --max_seq_length 12: a window holds 12 - 6 - 1 = 5 document pieces
PREFIX = ["[CLS]", "plot", "[unused1]", "fun", "[unused1]", "dull"]
DOCUMENT = ["[unused2]", "good", "scene", "moving", "awful", "weak", "[unused2]", "great", "actor", "film"]


def _wikihop_windows(**options) -> tuple[list[list[int]], dict]:
    """The token ids of the three windows of ``WIKIHOP_ITEM`` (their real part) and the arrays."""
    task = make_task("wikihop", family("wikihop").config(max_segment=3, **options))
    arrays, _ = featurize(task, [WIKIHOP_ITEM], fixture_tokenizer(), 12)
    return [arrays["input_ids"][0, w, : arrays["lengths"][0, w]].tolist() for w in range(3)], arrays


def _ids(tokens: list[str]) -> list[int]:
    return fixture_tokenizer().convert_tokens_to_ids(tokens)  # (the fixture vocabulary has no [unusedN])


def test_wikihop_reads_one_window_per_question_by_default():
    windows, arrays = _wikihop_windows()
    assert windows[0] == _ids(PREFIX + DOCUMENT[:5] + ["[SEP]"])  # the first chunk only; the rest is not read
    assert arrays["lengths"][0].tolist() == [12, 1, 1]  # the other windows are [CLS]-only fillers
    # token types as the original: 0 for the query and candidates, 1 for the chunk and its [SEP]
    assert arrays["token_type_ids"][0, 0, :12].tolist() == [0] * 6 + [1] * 6


@pytest.mark.parametrize(
    "overlap,chunks",
    [
        # step 5 - 0 = 5: starts 0, 5
        (0, [DOCUMENT[0:5], DOCUMENT[5:10]]),
        # step 5 - 2 = 3: starts 0, 3, 6 (and 9, past --max_segment 3); consecutive chunks share 2 pieces
        (2, [DOCUMENT[0:5], DOCUMENT[3:8], DOCUMENT[6:10]]),
        # step 5 - 4 = 1: starts 0, 1, 2, ... cut at 3 windows
        (4, [DOCUMENT[0:5], DOCUMENT[1:6], DOCUMENT[2:7]]),
    ],
)
def test_wikihop_doc_stride_is_the_overlap_of_consecutive_windows(overlap, chunks):
    windows, arrays = _wikihop_windows(doc_stride=overlap)
    expected = [_ids(PREFIX + chunk + ["[SEP]"]) for chunk in chunks]
    assert windows[: len(expected)] == expected
    assert (arrays["lengths"][0, len(expected) :] == 1).all()
    for a, b in zip(chunks, chunks[1:], strict=False):  # the last `overlap` pieces open the next chunk
        assert a[len(a) - overlap :] == b[:overlap]


def test_wikihop_overlap_as_large_as_a_window_is_refused():
    with pytest.raises(InputError, match=r"WH_hand: --doc_stride 5 .* smaller than the 5 document word pieces"):
        _wikihop_windows(doc_stride=5)


# ---- 2. --shared_selection (the original's run_mcrace.py): lr 5e-5, 10 % warm-up in every stage ---

STAGE_FLAGS = {
    "finetune": ["--model_type", "bert"],
    "train_init": ["--model_type", "initbert", "--train_init"],
    "train_rl": ["--model_type", "autobert", "--train_rl"],
    "train_both": ["--model_type", "autobert", "--train_both"],
}


def _race_job(*flags):
    base = ["--data_dir", "d", "--model_name_or_path", "m", "--output_dir", "o", "--do_train"]
    return parse_args(base + list(flags), "race", "run_race_classify.py")


@pytest.mark.parametrize("stage", list(STAGE_FLAGS))
def test_shared_selection_defaults_are_run_mcrace_defaults_in_every_stage(stage):
    job = _race_job(*STAGE_FLAGS[stage], "--shared_selection")
    assert job.stage == stage
    assert job.train.learning_rate == 5e-5 and job.train.warmup_steps == -1  # -1: 10 % of the steps
    binary = _race_job(*STAGE_FLAGS[stage])  # run_race_classify.py: 2e-5, no warm-up in fine-tuning only
    assert binary.train.learning_rate == 2e-5
    assert binary.train.warmup_steps == (0 if stage == "finetune" else -1)
    explicit = _race_job(*STAGE_FLAGS[stage], "--shared_selection", "--learning_rate", "1e-4", "--warmup_steps", "3")
    assert explicit.train.learning_rate == 1e-4 and explicit.train.warmup_steps == 3


def test_shared_selection_fine_tuning_warms_up_over_the_first_tenth_of_the_steps():
    job = _race_job(*STAGE_FLAGS["finetune"], "--shared_selection")
    model = torch.nn.Linear(2, 2)
    model.selector_parameters = lambda: []  # a stand-in model: everything is "backbone"
    run = _optimization(model, "backbone", job.train, Precision(), 50, torch.device("cpu"))
    rates = []
    for _ in range(6):
        rates.append(run.scheduler.get_last_lr()[0])
        run.optimizer.step()
        run.scheduler.step()
    # int(0.1 * 50) = 5 warm-up steps: 0, 1/5, ..., 4/5 of 5e-5, then the peak
    assert rates == pytest.approx([5e-5 * k / 5 for k in range(6)])


# ---- 3. rank targets for every selection shape; --train_init on windows and shared selections ----


def test_rank_targets_rank_each_window_among_its_own_tokens():
    # one example, two windows (lengths 3 and 2), one selector, T = 4
    scores = torch.tensor([[[[0.2, 0.9, 0.5, 8.0]], [[0.7, 0.1, 9.0, 9.0]]]])
    # window 0: order 0.9 > 0.5 > 0.2 -> ranks 2, 0, 1 of 3 -> 1 - r/3; position 3 is past the length
    # window 1: order 0.7 > 0.1 -> ranks 0, 1 of 2 -> 1, 1/2
    expected = torch.tensor([[[[1 / 3, 1.0, 2 / 3, 0.0]], [[1.0, 0.5, 0.0, 0.0]]]])
    assert torch.allclose(rank_targets(scores, torch.tensor([[3, 2]])), expected)


def test_shared_rank_targets_rank_the_option_sum_among_the_selectable_positions():
    # one question, two option rows (lengths 5 and 4), one selector, T = 5, question_end 3
    scores = torch.tensor([[[[1.0, 0.0, 2.0, 9.0, 9.0]], [[0.5, 3.0, 0.0, 9.0, 0.0]]]])
    # summed: 1.5, 3.0, 2.0 on the selectable positions 0..2 -> ranks 2, 0, 1 of 3
    row = [1 - 2 / 3, 1.0, 1 - 1 / 3, 0.0, 0.0]
    out = shared_rank_targets(scores, torch.tensor([[5, 4]]), torch.tensor([3]))
    assert out.shape == scores.shape and torch.allclose(out, torch.tensor([[[row], [row]]]))


def test_init_loss_leaves_out_filler_windows_and_unselectable_positions():
    # two windows of one example: window 1 is a [CLS]-only filler; one selector
    batch = {
        "attention_mask": torch.tensor([[[True, True, True], [True, False, False]]]),
        "lengths": torch.tensor([[3, 1]]),
    }
    mask = init_mask(batch)
    assert mask.tolist() == [[[True, True, True], [False, False, False]]]
    probs = [torch.tensor([[0.5, 0.5, 0.5], [0.9, 0.0, 0.0]])]  # rows = windows
    targets = torch.tensor([[[[1.0, 0.5, 0.0]], [[0.0, 0.0, 0.0]]]])
    assert torch.isclose(init_loss(probs, targets, mask), torch.tensor((0.5 + 0.0 + 0.5) / 3))
    # a shared selection: only positions before question_end count
    batch = {
        "attention_mask": torch.ones(1, 2, 4, dtype=torch.bool),
        "lengths": torch.tensor([[4, 4]]),
        "question_end": torch.tensor([2]),
    }
    assert init_mask(batch).tolist() == [[[True, True, False, False]] * 2]


def test_the_shared_selection_probe_averages_the_option_logits_as_the_original():
    """The probe of the multiple-choice warm start: per question and position, the sigmoid of the
    selector logits averaged over the four options (the original's InitBertForRace), 0 from
    question_end on, the same in every option row. Computed here from the stock encoder's layer
    outputs, independently of the reduction loop."""
    torch.manual_seed(1)
    model = TRBertForMultipleChoice(tiny_bert_config()).eval()
    arrays, ids, types, mask, heads = _choice_batch()
    with torch.no_grad():
        trace = Trace()
        model(ids, mask, types, policy=Probe(), tracer=trace, head_inputs=heads)
        stock = model.bert(ids.flatten(0, 1), mask.flatten(0, 1).long(), types.flatten(0, 1), output_hidden_states=True)
    b, c, t = ids.shape
    selectable = mask & (torch.arange(t) < heads["question_end"][:, None, None])
    for w, layer in enumerate([1, 2]):  # a 4-layer model: selectors before layers 1 and 4 // 2
        logits = model.selectors[w](stock.hidden_states[layer]).view(b, c, t)  # hidden_states[i]: input of layer i
        expected = torch.sigmoid(logits.mean(1, keepdim=True)).expand(b, c, t) * selectable
        assert torch.allclose(trace.probs[w].nan_to_num().view(b, c, t), expected, atol=1e-5)


def _choice_batch():
    """Three RACE questions as one shared-selection batch: ids, token types, mask ``[3, 4, T]``."""
    task = make_task("race", family("race").config(max_qa_length=12, shared_selection=True))
    arrays, _ = featurize(task, read_race(FIXTURES / "race" / "train")[:3], fixture_tokenizer(), 40)
    width = int(arrays["lengths"].max())
    ids = torch.from_numpy(arrays["input_ids"][..., :width]).long()
    types = torch.from_numpy(arrays["token_type_ids"][..., :width]).long()
    mask = torch.arange(width) < torch.from_numpy(arrays["lengths"])[..., None]
    return arrays, ids, types, mask, {"question_end": torch.from_numpy(arrays["question_end"])}


def _stages(script_name: str, data, tmp_path, lm, flags: str) -> dict:
    """Fine-tune, token scores, rank targets, warm start; returns the paths."""
    p = {"data": tmp_path / "data", "lm": lm, "bert": tmp_path / "bert", "init": tmp_path / "init"}
    shutil.copytree(data, p["data"])
    common = (
        "--data_dir {data} --per_gpu_train_batch_size 4 --per_gpu_eval_batch_size 4 --num_train_epochs 1"
        " --learning_rate 1e-2 --logging_steps 1 --features_cache_dir {data}/cache " + flags
    )
    for command in (
        "--model_type bert --model_name_or_path {lm} --output_dir {bert} --do_train",
        "--model_type bert --model_name_or_path {bert} --output_dir {bert} --do_eval_grad",
        "RANK",
        "--model_type initbert --model_name_or_path {bert} --output_dir {init} --do_train --train_init",
    ):
        if command == "RANK":
            assert script("trans_imdb_rank.py", "--model_dir", p["bert"]) == 0
            continue
        assert script(script_name, *f"{common} {command}".format(**p).split()) == 0, command
    return p


def _selectors(path) -> dict:
    with safe_open(str(path / "model.safetensors"), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys() if k.startswith("selectors.")}


@pytest.mark.parametrize(
    "script_name,data,flags,windows",
    [
        ("run_race_classify.py", "race", "--max_seq_length 48 --max_qa_length 16 --shared_selection", 4),
        ("run_wikihop.py", "wikihop", "--max_seq_len 48 --max_segment 3 --doc_stride 0", 3),
    ],
)
def test_train_init_runs_on_windows_and_on_the_shared_selection(
    tmp_path, tiny_bert_dir, script_name, data, flags, windows
):
    p = _stages(script_name, FIXTURES / data, tmp_path, tiny_bert_dir, flags)
    scores, ranks = np.load(p["bert"] / "token_scores.npy"), np.load(p["bert"] / "token_ranks.npy")
    assert scores.shape[1:3] == (windows, 2) and ranks.shape == scores.shape
    assert ranks.max() == 1.0 and ranks.min() == 0.0
    if "--shared_selection" in flags:  # one target per question, carried by each option row
        assert (ranks == ranks[:, :1]).all()
    else:
        assert (np.load(p["bert"] / "token_ranks.npy")[:, 1:] > 0).any()  # later windows have targets too
    before, after = _selectors(p["bert"]), _selectors(p["init"])
    assert before.keys() == after.keys() and any(not torch.equal(before[k], after[k]) for k in before)
    assert json.loads((p["init"] / "trbert_stage.json").read_text())["stage"] == "train_init"


# ---- 4. decoding: HotpotQA scans every start and trims to the word pieces; SQuAD's top-n -------


def test_hotpot_span_search_scans_every_start_within_one_run_of_text():
    # 26 text positions (0..25), then a title token (26, not text) and text again (27, 28)
    text = np.array([True] * 26 + [False] + [True] * 2)
    start, end = np.zeros(29), np.zeros(29)
    start[:20] = 5.0  # twenty starts score 5 but no end near them scores anything
    start[25], end[25] = 4.0, 10.0  # the 21st best start with a strong end: 4 + 10 = 14
    assert best_text_span(start, end, text, max_length=3) == (25, 25)
    # a span may not run over a non-text position: end 28 is out of reach from 25 (26 is a title)
    end[28] = 100.0
    assert best_text_span(start, end, text, max_length=4) == (27, 28)  # 0 + 100, from the next run
    # ties: the first (s, e) in order, as the original's stable sort
    assert best_text_span(np.zeros(3), np.zeros(3), np.ones(3, dtype=bool), 2) == (0, 0)
    assert best_text_span(np.zeros(3), np.zeros(3), np.zeros(3, dtype=bool), 2) is None


HOTPOT_NODE = {
    "name": "the_years",
    "context": ["the", "1990", "##s", "were", "paris", ","],
    "doc_tokens": ["The", "1990s", "were", "Paris,"],
    "tok_to_orig_index": [0, 1, 1, 2, 3, 3],
}


@pytest.mark.parametrize(
    "first,last,answer",
    [
        (1, 1, "1990"),  # the piece "1990" of the word "1990s": trimmed (the old whole-word answer: "1990s")
        (1, 2, "1990s"),
        (4, 4, "Paris"),  # the comma glued to "Paris," is left out
        (3, 5, "were Paris,"),
        (0, 1, "The 1990"),
    ],
)
def test_hotpot_answer_is_trimmed_to_the_predicted_word_pieces(first, last, answer):
    task = make_task("hotpot", family("hotpot").config())
    example = HotpotExample("q", "when ?", "", [HOTPOT_NODE])
    # row: [CLS] when ? [SEP] [unused1] title [unused2] the 1990 ##s were paris , [SEP] -> pieces at 7..12
    t, offset = 14, 7
    origin = np.full((t, 2), -1)
    origin[offset : offset + 6] = [(0, w) for w in HOTPOT_NODE["tok_to_orig_index"]]
    logits = np.full((7, t), -1e4, dtype=np.float32)
    logits[2:5, 0] = [5.0, 0.0, 0.0]  # the switch says: a span
    logits[0, offset + first], logits[1, offset + last] = 10.0, 10.0
    logits[0, offset : offset + 6] = np.maximum(logits[0, offset : offset + 6], 0.0)
    logits[1, offset : offset + 6] = np.maximum(logits[1, offset : offset + 6], 0.0)
    assert task._answer(logits, origin, example) == answer


def test_final_text_aligns_in_the_case_of_the_pieces():
    assert final_text("paris", "Paris,", lower=True) == "Paris"
    assert final_text("Paris", "Paris,", lower=False) == "Paris"
    assert final_text("paris", "Paris,", lower=False) == "Paris,"  # not found cased: the whole words
    assert final_text("cafe", "Café au", lower=True) == "Café"  # accents removed when lower-casing
    assert final_text("[UNK]", "Paris,", lower=True) == "Paris,"


def _two_window_squad(n_best_size: int = 2):
    """One question over two windows of ``alpha beta gamma delta``; each window ``[CLS] q q [SEP]
    w w w [SEP]`` with its three context words at positions 4, 5, 6."""
    task = SpanTask("squad", None, squad_scores, "", "", n_best_size=n_best_size)
    spans = {"alpha": (0, 5), "beta": (6, 10), "gamma": (11, 16), "delta": (17, 22)}
    offsets = np.full((2, 8, 2), -1, dtype=np.int32)
    offsets[0, 4:7] = [spans["alpha"], spans["beta"], spans["gamma"]]
    offsets[1, 4:7] = [spans["beta"], spans["gamma"], spans["delta"]]
    max_context = np.zeros((2, 8), dtype=bool)
    max_context[0, 4:6] = max_context[1, 5:7] = True  # beta decoded in window 0, gamma in window 1
    arrays = {"example": np.array([0, 0]), "offsets": offsets, "max_context": max_context, "lengths": np.array([8, 8])}
    example = QAExample("q", "which ?", "alpha beta gamma delta", ["gamma delta"])
    return task, arrays, example


def test_squad_takes_the_top_n_over_all_positions_then_filters():
    task, arrays, example = _two_window_squad()
    logits = np.zeros((2, 2, 8), dtype=np.float32)
    # window 0: the two best ends are question tokens (9, 8), so the original finds no span there,
    # although "alpha beta" (6 + 6 = 12) would be the best span among the context positions
    logits[0, 0] = [0, 9, 0, 0, 6, 2, 0, 0]
    logits[0, 1] = [0, 9, 8, 0, 0, 6, 1, 0]
    # window 1: starts 5 (3) and 6 (1); ends 6 (2) and, among the zeros, position 0 ([CLS], the
    # earliest): spans (5, 6) = 5 and (6, 6) = 3 -> "gamma delta"
    logits[1, 0] = [0, 0, 0, 0, 0, 3, 1, 0]
    logits[1, 1] = [0, 0, 0, 0, 0, 0, 2, 0]
    answers, _ = task.decode(logits, arrays, [example])
    assert answers == {"q": "gamma delta"}
    assert task._best_span(logits[0, 0], logits[0, 1], arrays["offsets"][0], arrays["max_context"][0], 8) is None
    # with room for three candidates the window-0 span is back: ends 1, 2 and 5 -> (4, 5) = 12
    task, arrays, example = _two_window_squad(n_best_size=3)
    assert task.decode(logits, arrays, [example])[0] == {"q": "alpha beta"}


# ---- 5. smaller items -----------------------------------------------------------------------

# HotpotQA paragraph order (training): the gold pair, then shuffled others until the budget is
# reached; the paragraph that reached it (or the last drawn) goes last, after the shuffled rest.


def _hotpot_orders(sizes: list[int], budget: int, examples: int = 40) -> list[list[int]]:
    task = make_task("hotpot", family("hotpot").config())
    return [task._order(number, sizes, budget, training=True) for number in range(examples)]


def test_hotpot_all_paragraphs_fit_and_the_last_drawn_one_is_pinned_at_the_end():
    for order in _hotpot_orders([3, 3, 2, 2, 2], budget=100):
        assert sorted(order) == [0, 1, 2, 3, 4] and order[-1] >= 2  # never a gold paragraph last


def test_hotpot_a_paragraph_ending_exactly_at_the_budget_goes_last_and_nothing_follows():
    # 4 + 4 = 8 < 10; the first other drawn brings 10 = the budget: it is the last one taken
    for order in _hotpot_orders([4, 4, 2, 2, 2], budget=10):
        assert len(order) == 3 and sorted(order[:2]) == [0, 1] and order[2] >= 2


def test_hotpot_a_gold_pair_filling_the_budget_is_shuffled_alone():
    orders = _hotpot_orders([6, 6, 1], budget=10)
    assert all(sorted(order) == [0, 1] for order in orders) and {tuple(o) for o in orders} == {(0, 1), (1, 0)}


def test_hotpot_a_title_that_fits_in_part_is_cut_not_dropped():
    task = make_task("hotpot", family("hotpot").config())
    nodes = [
        {"name": "good", "context": ["this", "is", "a", "fun", "film"], "sent_pos": [[0, 5]], "supp_label": [1]},
        {"name": "great_plot", "context": ["a", "dull", "plot"], "spans": [[1, 1]], "sent_pos": [[0, 3]]},
    ]
    example = HotpotExample("q", "fun", "", nodes)
    tokenizer = fixture_tokenizer()
    arrays, _ = featurize(task, [example], tokenizer, 14, split="dev")
    # [CLS] fun [SEP] | [unused1] good [unused2] this is a fun film | [unused1] great | [SEP]: the
    # second paragraph's head [unused1] great plot [unused2] is cut after 2 of its 4 pieces at 13
    expected = ["[CLS]", "fun", "[SEP]", "[unused1]", "good", "[unused2]", "this", "is", "a", "fun", "film"]
    expected += ["[unused1]", "great", "[SEP]"]
    assert arrays["lengths"].tolist() == [14]
    assert arrays["input_ids"][0, :14].tolist() == tokenizer.convert_tokens_to_ids(expected)
    assert (arrays["origin"][0, 11:14] == -1).all()  # title pieces are not answer text
    assert arrays["starts"][0, 0] == 0 and (arrays["sent_starts"][0] >= 0).sum() == 1  # nothing of paragraph 2


@pytest.mark.parametrize("backbone", ["bert", "distilbert"])
def test_weight_decay_groups_follow_the_originals_rule_by_name(backbone):
    """No decay exactly on names containing "bias" or "LayerNorm.weight": DistilBERT's
    ``embeddings.LayerNorm.weight`` takes none, its ``sa_layer_norm`` / ``output_layer_norm``
    weights (1-D, but not so named) do decay, as they did in the original."""
    config = tiny_bert_config() if backbone == "bert" else tiny_distilbert_config()
    model_class = TRBertForSequenceClassification if backbone == "bert" else TRDistilBertForSequenceClassification
    model = model_class(config)
    train = dataclasses.replace(_race_job("--model_type", "bert").train, weight_decay=0.01)
    decay_of = {id(p): g["weight_decay"] for g in parameter_groups(model, "all", train) for p in g["params"]}
    names = dict(model.named_parameters())
    for name, p in names.items():
        assert decay_of[id(p)] == (0.0 if name.endswith(".bias") or name.endswith("LayerNorm.weight") else 0.01), name
    if backbone == "distilbert":
        assert decay_of[id(names["distilbert.transformer.layer.0.sa_layer_norm.weight"])] == 0.01
        assert decay_of[id(names["distilbert.transformer.layer.3.output_layer_norm.weight"])] == 0.01
        assert decay_of[id(names["distilbert.embeddings.LayerNorm.weight"])] == 0.0
    else:
        assert decay_of[id(names["bert.encoder.layer.0.output.LayerNorm.weight"])] == 0.0
    assert decay_of[id(names["selectors.0.hidden.weight"])] == 0.01 and decay_of[id(names["selectors.0.out.bias"])] == 0


def test_race_question_end_counts_the_whole_question_as_the_original():
    """``question_end = len([CLS] passage [SEP]) + len(question)``, also when the question is longer
    than ``--max_qa_length`` (the selectable part then runs past the cut, over the last [SEP])."""
    task = make_task("race", family("race").config(max_qa_length=5, shared_selection=True))
    question = RaceQuestion("good plot", "is this a fun film with a great actor", ["fun", "dull", "good", "bad"], 0, "")
    arrays, _ = featurize(task, [question], fixture_tokenizer(), 20)
    # question + option cut to 5 pieces (the question's first 5); the passage keeps 20 - 3 - 5 = 12
    # pieces, i.e. both: [CLS] good plot [SEP] (4) + 5 + [SEP] = 10 per row; question_end 4 + 9 = 13
    assert arrays["lengths"].tolist() == [[10, 10, 10, 10]]
    assert arrays["question_end"].tolist() == [13]
    short = RaceQuestion("good plot", "is this fun", ["a film", "dull", "good", "bad"], 0, "")
    arrays, _ = featurize(task, [short], fixture_tokenizer(), 20)
    assert arrays["question_end"].tolist() == [4 + 3]  # a question that fits: up to its last piece


def test_squad_is_impossible_with_answers_is_hasans_for_the_evaluator_and_no_answer_in_training(tmp_path):
    data = {
        "data": [
            {
                "paragraphs": [
                    {
                        "context": "alpha beta gamma",
                        "qas": [
                            {
                                "id": "a",
                                "question": "which ?",
                                "is_impossible": True,
                                "answers": [{"text": "beta", "answer_start": 6}],
                            },
                            {"id": "b", "question": "which ?", "is_impossible": True, "answers": []},
                        ],
                    }
                ]
            }
        ]
    }
    path = tmp_path / "dev-v2.0.json"
    path.write_text(json.dumps(data))
    first, second = read_squad(path)
    assert first.answers == ["beta"] and first.answer_start is None  # scored as HasAns, trained as no answer
    report = squad_scores({e.qid: e.answers for e in (first, second)}, {"a": "beta", "b": ""})
    # a: HasAns, exact; b: NoAns, the empty prediction is right
    assert report["HasAns_total"] == 1 and report["HasAns_exact"] == 100.0
    assert report["NoAns_total"] == 1 and report["exact"] == 100.0


def test_rank_builder_refuses_scores_its_sidecar_does_not_describe(tmp_path):
    np.save(tmp_path / "token_scores.npy", np.zeros((2, 3, 2, 4), dtype=np.float32))
    (tmp_path / "token_scores.json").write_text(json.dumps({"lengths": [4, 4]}))  # rows [2], scores [2, 3]
    with pytest.raises(InputError, match=r"token_scores.npy: token scores of shape \(2, 3, 2, 4\) do not match"):
        write_rank_targets(tmp_path)
    (tmp_path / "token_scores.json").write_text(json.dumps({"lengths": [[4] * 3] * 2, "question_end": [2]}))
    with pytest.raises(InputError, match=r"question_end of the sidecar does not fit"):
        write_rank_targets(tmp_path)
    assert not (tmp_path / "token_ranks.npy").exists()
