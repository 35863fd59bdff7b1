"""The reduction models against stock transformers, and checkpoint loading of every kind."""

import logging

import pytest
import torch
from conftest import tiny_bert_config, tiny_distilbert_config
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import BertForSequenceClassification, DistilBertForSequenceClassification

from trbert import TRBertForSequenceClassification, TRDistilBertForSequenceClassification
from trbert.core.encoder import Trace
from trbert.core.policy import BatchUniform, Probe, Sample, Threshold
from trbert.errors import InputError
from trbert.store.checkpoint import load_model

PAIRS = [
    (tiny_bert_config, BertForSequenceClassification, TRBertForSequenceClassification),
    (tiny_distilbert_config, DistilBertForSequenceClassification, TRDistilBertForSequenceClassification),
]


def _inputs(vocab, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (4, 20), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 12:] = 0
    mask[2, 5:] = 0
    return ids, mask


@pytest.mark.parametrize("make_config,stock_cls,tr_cls", PAIRS)
def test_keep_all_equals_stock_model(make_config, stock_cls, tr_cls):
    torch.manual_seed(0)
    config = make_config(num_labels=3)
    stock = stock_cls(config).eval()
    model = tr_cls(config).eval()
    missing = model.load_state_dict(stock.state_dict(), strict=False).missing_keys
    assert all(k.startswith("selectors.") for k in missing)
    ids, mask = _inputs(config.vocab_size)
    with torch.no_grad():
        expected = stock(input_ids=ids, attention_mask=mask).logits
        assert (model(ids, mask).logits - expected).abs().max() <= 1e-5
        for selector in model.selectors:
            selector.out.bias.fill_(20.0)  # p ~ 1 everywhere: every token kept
        for policy in (Threshold(), BatchUniform()):
            out = model(ids, mask, policy=policy)
            assert (out.logits - expected).abs().max() <= 1e-5
            assert [k.tolist() for k in out.kept] == [mask.sum(1).tolist()] * 2


def test_drop_all_keeps_only_cls_and_skips_the_second_selector():
    torch.manual_seed(0)
    model = TRBertForSequenceClassification(tiny_bert_config()).eval()
    for selector in model.selectors:
        selector.out.bias.data.fill_(-20.0)
    ids, mask = _inputs(model.config.vocab_size)
    out = model(ids, mask, policy=Threshold())
    assert len(out.kept) == 1 and out.kept[0].tolist() == [1, 1, 1, 1]


def test_each_row_keeps_its_own_selection_in_a_batch():
    """docs/differences.md F1: a row's prediction does not depend on what else is in the batch."""
    torch.manual_seed(1)
    model = TRBertForSequenceClassification(tiny_bert_config()).eval()
    for selector in model.selectors:
        torch.nn.init.normal_(selector.out.weight, std=2.0)
    ids, mask = _inputs(model.config.vocab_size, seed=3)
    with torch.no_grad():
        batched = model(ids, mask, policy=Threshold())
        for row in batched.positions:  # docs/differences.md F2: kept tokens stay in their original order, [CLS] first
            kept = row[row >= 0]
            assert kept[0] == 0 and torch.all(kept[1:] > kept[:-1])
        for row in range(4):
            n = int(mask[row].sum())
            alone = model(ids[row : row + 1, :n], mask[row : row + 1, :n], policy=Threshold())
            assert torch.allclose(batched.logits[row], alone.logits[0], atol=1e-5)
            counts, own = [int(k[row]) for k in batched.kept], [int(k[0]) for k in alone.kept]
            # alone, a row left with [CLS] only skips the next selector; in a batch it keeps [CLS]
            assert counts == own + own[-1:] * (len(counts) - len(own))
            # batch of one: the original's batch-uniform selection is identical
            uniform = model(ids[row : row + 1, :n], mask[row : row + 1, :n], policy=BatchUniform())
            assert torch.equal(uniform.logits, alone.logits)


def test_sampling_returns_per_row_nll_and_gradients_reach_the_selectors():
    torch.manual_seed(0)
    model = TRBertForSequenceClassification(tiny_bert_config()).train()
    ids, mask = _inputs(model.config.vocab_size)
    out = model(ids, mask, policy=Sample(torch.arange(4)))
    assert out.select_nll.shape == (4,) and torch.all(out.select_nll > 0)
    out.select_nll.sum().backward()
    assert all(p.grad is not None for p in model.selector_parameters())


def test_probe_does_not_reduce_and_the_trace_holds_every_probability(tiny_bert_dir):
    torch.manual_seed(0)
    model = TRBertForSequenceClassification(tiny_bert_config()).eval()
    ids, mask = _inputs(model.config.vocab_size)
    trace = Trace()
    out = model(ids, mask, policy=Probe(), tracer=trace)
    assert len(trace.probs) == 2 and trace.probs[0].shape == ids.shape
    assert torch.equal(trace.probs[0].isnan(), ~mask.bool()) and (trace.depth == 2 * mask - 1 + mask).all()
    assert [k.tolist() for k in out.kept] == [mask.sum(1).tolist()] * 2
    assert torch.allclose(out.logits, model(ids, mask, policy=None).logits, atol=1e-6)


def test_stock_checkpoint_loads_with_only_selectors_new(tiny_bert_dir, caplog):
    with caplog.at_level(logging.INFO):
        model = load_model(str(tiny_bert_dir), "autobert", num_labels=2)
    assert "token selectors 0, 1" in caplog.text and "newly initialised" in caplog.text
    stock = BertForSequenceClassification.from_pretrained(tiny_bert_dir, num_labels=2)
    ours = model.state_dict()
    assert all(torch.equal(v, ours[k]) for k, v in stock.state_dict().items() if not k.startswith("classifier"))


def test_round_trip_and_original_trbert_names(tmp_path):
    torch.manual_seed(0)
    model = TRBertForSequenceClassification(tiny_bert_config(num_labels=2))
    model.config.architectures = ["TRBertForSequenceClassification"]
    model.save_pretrained(tmp_path / "ours")
    again = load_model(str(tmp_path / "ours"), "autobert", num_labels=2)
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in model.state_dict().items())
    # the original release names the selectors bert.encoder.linear_1.{0,1} / linear_2.{0,1}
    renamed = {}
    for k, v in model.state_dict().items():
        k = k.replace("selectors.0.hidden", "bert.encoder.linear_1.0").replace(
            "selectors.1.hidden", "bert.encoder.linear_1.1"
        )
        k = k.replace("selectors.0.out", "bert.encoder.linear_2.0").replace(
            "selectors.1.out", "bert.encoder.linear_2.1"
        )
        renamed[k] = v.contiguous()
    (tmp_path / "orig").mkdir()
    model.config.save_pretrained(tmp_path / "orig")
    save_file(renamed, str(tmp_path / "orig" / "model.safetensors"), metadata={"format": "pt"})
    original = load_model(str(tmp_path / "orig"), "autobert", num_labels=2)
    assert all(torch.equal(v, original.state_dict()[k]) for k, v in model.state_dict().items())
    (tmp_path / "orig_bin").mkdir()  # the original release ships pytorch_model.bin (read with weights_only)
    model.config.save_pretrained(tmp_path / "orig_bin")
    torch.save(renamed, tmp_path / "orig_bin" / "pytorch_model.bin")
    from_bin = load_model(str(tmp_path / "orig_bin"), "autobert", num_labels=2)
    assert all(torch.equal(v, from_bin.state_dict()[k]) for k, v in model.state_dict().items())
    original.save_pretrained(tmp_path / "resaved")  # saved again under our names
    with safe_open(str(tmp_path / "resaved" / "model.safetensors"), "pt") as f:
        assert "selectors.0.hidden.weight" in f.keys() and not any("linear_1" in k for k in f.keys())


def test_checkpoints_of_the_wrong_kind_are_refused(tmp_path, tiny_bert_dir, tiny_distilbert_dir):
    with pytest.raises(InputError, match="distilbert checkpoint cannot be used with --model_type autobert"):
        load_model(str(tiny_distilbert_dir), "autobert", num_labels=2)
    with pytest.raises(InputError, match="not a usable model checkpoint"):
        load_model(str(tmp_path), "bert", num_labels=2)
    model = TRBertForSequenceClassification(tiny_bert_config(num_labels=5))
    model.config.architectures = ["TRBertForSequenceClassification"]
    model.save_pretrained(tmp_path / "five")
    with pytest.raises(InputError, match="5 labels, the task has 2"):
        load_model(str(tmp_path / "five"), "bert", num_labels=2)


def test_a_trace_holds_every_selector_also_one_that_did_not_run():
    """A 4-layer model, selectors before layers 1 and 2; the first drops everything but [CLS], so
    the second never runs: the trace still has one (all NaN) row of probabilities per selector and
    [CLS] passed both, so the token view's checks hold (depths 0..2 for 2 selectors)."""
    from trbert.tools.tokenview import ViewExample

    model = TRBertForSequenceClassification(tiny_bert_config()).eval()
    model.selectors[0].out.bias.data.fill_(-20.0)
    ids, mask = _inputs(model.config.vocab_size)
    trace = Trace()
    with torch.no_grad():
        out = model(ids, mask, policy=Threshold(), tracer=trace)
    assert len(out.kept) == 1 and len(trace.probs) == 2 and trace.probs[1].isnan().all()
    assert (trace.depth[:, 0] == 2).all() and set(trace.depth.unique().tolist()) == {-1, 0, 2}
    n = int(mask[0].sum())
    depth = trace.depth[0, :n].tolist()
    probs = [[None if p != p else float(p) for p in column] for column in torch.stack(trace.probs, 1)[0, :, :n].T]
    ViewExample(["t"] * n, depth, probs, [False] * n, "1", "1", [1 / n, 1 / n], 1.0, 2.0)
