"""Issue 20, "faithful to the last window": each behaviour checked against the original's facts,
with expected values worked out by hand in the comments (never produced by the code under test)."""

import pytest
import torch
from conftest import featurize, fixture_tokenizer

from trbert.cli import parse_args
from trbert.config import Precision
from trbert.errors import InputError
from trbert.loop import _optimization
from trbert.tasks import family, make_task

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
