"""The unpadded inference path equals the padded one for every head; length-sorted evaluation restores order."""

import numpy as np
import pytest
import torch
from conftest import tiny_bert_config, tiny_distilbert_config

import trbert.core.backbones
from trbert import (
    TRBertForHotpotQA,
    TRBertForMultipleChoice,
    TRBertForQuestionAnswering,
    TRBertForSequenceClassification,
    TRBertForWikihop,
    TRDistilBertForMultipleChoice,
    TRDistilBertForQuestionAnswering,
    TRDistilBertForSequenceClassification,
)
from trbert.config import EvalConfig, Precision
from trbert.core.packed import keep_tokens, pack, row_chunks, unpack
from trbert.core.policy import Counted, Site, Threshold
from trbert.train.distributed import World
from trbert.train.inference import predict


def _model(cls, seed=0):
    torch.manual_seed(seed)
    make_config = tiny_distilbert_config if "DistilBert" in cls.__name__ else tiny_bert_config
    model = cls(make_config()).eval()
    for selector in model.selectors:  # decisive, varied selections
        torch.nn.init.normal_(selector.out.weight, std=2.0)
    return model


def _lengths(g, shape, width, low=2):
    lengths = torch.randint(low, width + 1, shape, generator=g)
    lengths.view(-1)[0] = width
    return lengths


def _rows(g, lengths, width, vocab=40):
    """Token ids ``[..., width]`` ([CLS] = 2 first, 0 on padding), their mask and token types."""
    ids = torch.randint(5, vocab, (*lengths.shape, width), generator=g)
    ids[..., 0] = 2
    mask = torch.arange(width) < lengths[..., None]
    types = (torch.arange(width) > 6).long().expand_as(ids)
    return ids.masked_fill(~mask, 0), mask, types


def _flat(seed, batch=7, width=40):
    """Rows of one window each: ``[B, T]``."""
    g = torch.Generator().manual_seed(seed)
    lengths = _lengths(g, (batch,), width)
    return *_rows(g, lengths, width), {}


def _hotpot(seed, batch=6, width=40, sentences=5):
    """Rows with ``sent_starts``/``sent_ends [B, M]`` inside each row (-1 on empty slots)."""
    ids, mask, types, _ = _flat(seed, batch, width)
    g = torch.Generator().manual_seed(100 + seed)
    lengths = mask.sum(1, keepdim=True)
    starts = (torch.rand(batch, sentences, generator=g) * (lengths - 1)).long() + 1
    ends = torch.minimum(starts + torch.randint(0, 6, starts.shape, generator=g), lengths - 1)
    empty = torch.rand(batch, sentences, generator=g) < 0.3
    heads = {"sent_starts": starts.masked_fill(empty, -1), "sent_ends": ends.masked_fill(empty, -1)}
    return ids, mask, types, {"head_inputs": heads}


def _windows(seed, batch=4, windows=3, width=32):
    """Examples of several windows ``[B, S, T]``; some are fillers holding [CLS] only."""
    g = torch.Generator().manual_seed(seed)
    lengths = _lengths(g, (batch, windows), width)
    lengths[1:, 1:] = lengths[1:, 1:].masked_fill(torch.rand(batch - 1, windows - 1, generator=g) < 0.4, 1)
    return *_rows(g, lengths, width), {}


def _choice(seed, batch=3, options=4, width=40):
    """Questions of 4 option rows ``[B, 4, T]``: passage and question shared up to ``question_end``."""
    g = torch.Generator().manual_seed(seed)
    end = torch.randint(8, 24, (batch,), generator=g)
    lengths = torch.minimum(end[:, None] + torch.randint(2, 20, (batch, options), generator=g), torch.tensor(width))
    lengths[0, 0] = width
    ids, mask, _ = _rows(g, lengths, width)
    shared = torch.arange(width) < end[:, None, None]
    ids = torch.where(shared, ids[:, :1], ids)  # option 0's passage and question in every row
    types = (~shared).long().expand_as(ids) * mask
    return ids, mask, types, {"head_inputs": {"question_end": end}}


CASES = {  # head: (model class, batch maker)
    "classification-bert": (TRBertForSequenceClassification, _flat),
    "classification-distilbert": (TRDistilBertForSequenceClassification, _flat),
    "span-bert": (TRBertForQuestionAnswering, _flat),
    "span-distilbert": (TRDistilBertForQuestionAnswering, _flat),
    "span-bert-windows": (TRBertForQuestionAnswering, _windows),
    "hotpot": (TRBertForHotpotQA, _hotpot),
    "wikihop-windows": (TRBertForWikihop, _windows),
    "choice-bert": (TRBertForMultipleChoice, _choice),
    "choice-distilbert": (TRDistilBertForMultipleChoice, _choice),
}


def _both_paths(model, make_batch, seed, policy, kernel):
    ids, mask, types, extra = make_batch(seed)
    types = None if "DistilBert" in type(model).__name__ else types
    with torch.no_grad():
        model.attention_kernel = kernel
        padded = model(ids, mask, types, policy=policy, path="padded", **extra)
        unpadded = model(ids, mask, types, policy=policy, path="unpadded", **extra)
    return padded, unpadded, mask


def _assert_same(padded, unpadded):
    assert [k.tolist() for k in unpadded.kept] == [k.tolist() for k in padded.kept]
    assert torch.equal(unpadded.positions, padded.positions)  # the same tokens, in the same order
    assert unpadded.logits.shape == padded.logits.shape
    assert (unpadded.logits - padded.logits).abs().max() <= 1e-5


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("kernel", ["padded", "jagged"])
@pytest.mark.parametrize("selection", ["threshold", "off"])
def test_unpadded_equals_padded(case, kernel, selection):
    cls, make_batch = CASES[case]
    model = _model(cls)
    policy = Threshold() if selection == "threshold" else None
    for seed in range(2 if selection == "threshold" else 1):
        padded, unpadded, mask = _both_paths(model, make_batch, seed, policy, kernel)
        _assert_same(padded, unpadded)
        if selection == "threshold":  # the selection is real: tokens dropped, and not all of them
            last = padded.kept[-1].flatten()
            assert (last < mask.flatten(0, -2).sum(-1)).any() and (last > 1).any()


@pytest.mark.parametrize("case", ["span-bert", "span-distilbert", "choice-bert"])
def test_feed_forward_in_row_chunks_gives_the_same_result(case, monkeypatch):
    cls, make_batch = CASES[case]
    model = _model(cls)
    monkeypatch.setattr(trbert.core.backbones, "FFN_MIN_ROWS", 10**6)  # one slice
    padded, whole, _ = _both_paths(model, make_batch, 0, Threshold(), "padded")
    monkeypatch.setattr(trbert.core.backbones, "FFN_MIN_ROWS", 5)  # tiny batches: quarters of the packed rows
    padded, chunked, _ = _both_paths(model, make_batch, 0, Threshold(), "padded")
    _assert_same(padded, chunked)
    assert (chunked.logits - whole.logits).abs().max() <= 1e-5


def test_the_shared_decision_averages_the_options_logits():
    """Option rows that disagree (random states): the question's decision comes from the selector
    logits averaged over its options, the same in every option row, whatever the rows alone say."""
    model = _model(TRBertForMultipleChoice)
    _, mask, _, extra = _choice(0)
    alive = mask.flatten(0, 1)
    rows, width = alive.shape
    x = torch.randn(rows, width, 32, generator=torch.Generator().manual_seed(0))
    model._question_end, model._options = extra["head_inputs"]["question_end"].repeat_interleave(4), 4
    orig = torch.arange(width).expand(rows, -1)
    with torch.no_grad():
        site = Site(0, alive, orig, width, lambda: model.selectors[0](x))
        keep, _, _ = model._decide(Threshold(), site)
        mean = torch.sigmoid(model.selectors[0](x).view(-1, 4, width).mean(1)) >= 0.5
        alone = torch.sigmoid(model.selectors[0](x)) >= 0.5  # each row on its own
    selectable = (orig < model._question_end[:, None]) & alive
    assert torch.equal(keep[selectable], mean.repeat_interleave(4, 0)[selectable] | (orig == 0)[selectable])
    assert keep[alive & ~selectable].all()  # options and the last [SEP]
    assert (alone != keep)[selectable].any()  # the average decides, not any one row


def test_packing_bookkeeping_chunks_and_unpack():
    alive = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    packing, position = pack(alive)
    assert packing.counts.tolist() == [3, 2, 4] and packing.width == 4 and not packing.uniform
    assert packing.starts.tolist() == [0, 3, 5] and position.tolist() == [0, 1, 2, 0, 1, 0, 1, 2, 3]
    assert packing.block_index.tolist() == [0, 1, 2, 4, 5, 8, 9, 10, 11] and packing.block_padding.tolist() == [3, 6, 7]
    kept = keep_tokens(packing, torch.tensor([1, 0, 1, 1, 0, 1, 0, 0, 1], dtype=torch.bool))
    assert kept.counts.tolist() == [2, 1, 2] and kept.slot.tolist() == [0, 1, 0, 0, 1]
    x = torch.arange(18.0).view(9, 2)
    assert torch.equal(row_chunks(x, lambda part: part * 2, 4, 2), x * 2)  # slices of 3 rows
    keep = torch.tensor([1, 0, 1, 1, 1, 0, 1, 0, 1], dtype=torch.bool)
    dense = unpack(
        [(-x[~keep], packing.row[~keep], position[~keep]), (x[keep], packing.row[keep], position[keep])],
        torch.arange(5) < torch.tensor([[3], [2], [4]]),
    )
    expected = torch.zeros(3, 5, 2)
    expected[packing.row, position] = torch.where(keep[:, None], x, -x)
    assert torch.equal(dense, expected)  # every token at its original position, padding 0


def test_unpadded_path_refuses_training_mode():
    model = _model(TRBertForSequenceClassification).train()
    ids, mask, _, _ = _flat(0)
    with pytest.raises(ValueError, match="inference"):
        model(ids, mask, policy=Threshold(), path="unpadded")


def _arrays(make_batch, seed):
    ids, mask, types, extra = make_batch(seed)
    arrays = {"input_ids": ids.numpy().astype(np.int32), "lengths": mask.sum(-1).numpy().astype(np.int32)}
    arrays["token_type_ids"] = types.numpy().astype(np.int32)
    for name, value in extra.get("head_inputs", {}).items():
        arrays[name] = value.numpy()
    return ids, mask, types, extra, arrays


@pytest.mark.parametrize("path", ["padded", "unpadded"])
def test_length_sorted_evaluation_restores_dataset_order(path):
    model = _model(TRBertForSequenceClassification)
    ids, mask, types, _, arrays = _arrays(lambda s: _flat(s, batch=11), 5)
    config = EvalConfig(per_gpu_eval_batch_size=4, inference_path=path)
    batched = predict(model, arrays, Threshold(), config, Precision(), World())
    with torch.no_grad():
        alone = [
            model(ids[i : i + 1, :n], mask[i : i + 1, :n], types[i : i + 1, :n], policy=Threshold())
            for i, n in enumerate(mask.sum(1).tolist())
        ]
    assert np.allclose(batched.logits, torch.cat([o.logits for o in alone]).numpy(), atol=1e-5)
    assert batched.path == path


@pytest.mark.parametrize("case", ["span-bert", "hotpot", "wikihop-windows", "choice-bert"])
def test_evaluation_takes_the_unpadded_path_for_every_head(case):
    cls, make_batch = CASES[case]
    model = _model(cls)
    *_, arrays = _arrays(lambda s: make_batch(s, batch=5), 1)
    results = {}
    for path in ("padded", "auto"):
        config = EvalConfig(per_gpu_eval_batch_size=2, inference_path=path)
        results[path] = predict(model, arrays, Threshold(), config, Precision(), World())
    assert results["auto"].path == "unpadded" and results["padded"].path == "padded"
    assert np.array_equal(results["auto"].kept, results["padded"].kept)
    assert np.allclose(results["auto"].logits, results["padded"].logits, atol=1e-5)


def test_equal_lengths_take_the_reshape_path_with_the_same_result():
    model = _model(TRBertForSequenceClassification)
    for selector in model.selectors:
        selector.out.bias.data.fill_(20.0)  # keep all: every example keeps the same count at every layer
    ids = torch.randint(5, 40, (5, 24))
    mask = torch.ones_like(ids, dtype=torch.bool)
    with torch.no_grad():
        model.attention_kernel = "padded"
        padded = model(ids, mask, policy=Threshold())
        unpadded = model(ids, mask, policy=Threshold(), path="unpadded")
    assert [k.tolist() for k in unpadded.kept] == [[24] * 5] * 2
    assert (unpadded.logits - padded.logits).abs().max() <= 1e-5


@pytest.mark.parametrize("selection", ["random", "attention"])
@pytest.mark.parametrize("case", ["classification-bert", "classification-distilbert", "span-bert", "wikihop-windows"])
def test_count_matched_baselines_keep_the_counts_asked_on_both_paths(case, selection):
    """Random drop and attention top-k keep exactly ``keep_counts`` tokens per row at each selector
    ([CLS] among them), and the unpadded path makes the same choice as the padded one."""
    cls, make_batch = CASES[case]
    model = _model(cls)
    ids, mask, types, extra = make_batch(2)
    lengths = mask.sum(-1)
    g = torch.Generator().manual_seed(4)
    first = 1 + (torch.rand(lengths.shape, generator=g) * lengths).long().clamp_max(lengths - 1)
    counts = torch.stack([first, (first + 1) // 2], -1)  # [B, (S,) 2]: fewer at the second selector
    options = dict(policy=Counted(counts, selection, torch.arange(ids.shape[0]) * 7), **extra)
    with torch.no_grad():
        padded = model(ids, mask, types, **options)
        unpadded = model(ids, mask, types, path="unpadded", **options)
    _assert_same(padded, unpadded)
    real = lengths > 1
    expected = [counts[..., 0], torch.minimum(counts[..., 1], counts[..., 0])]
    for kept, want in zip(padded.kept, expected, strict=False):
        assert torch.equal(kept[real], want[real])
    assert (padded.positions[..., 0] == 0).all()  # [CLS] always kept
