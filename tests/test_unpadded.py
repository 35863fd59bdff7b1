"""The unpadded inference path equals the padded one; length-sorted evaluation restores order."""

import numpy as np
import pytest
import torch
from conftest import tiny_bert_config, tiny_distilbert_config

from trbert import TRBertForSequenceClassification, TRDistilBertForSequenceClassification
from trbert.config import EvalConfig, Precision
from trbert.distributed import World
from trbert.inference import predict
from trbert.packed import keep_tokens, pack

MODELS = [
    (tiny_bert_config, TRBertForSequenceClassification),
    (tiny_distilbert_config, TRDistilBertForSequenceClassification),
]


def _model(make_config, cls, seed=0):
    torch.manual_seed(seed)
    model = cls(make_config()).eval()
    for selector in model.selectors:  # decisive, varied selections
        torch.nn.init.normal_(selector.out.weight, std=2.0)
    return model


def _batch(seed, batch=7, width=40, vocab=40):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (batch, width), generator=g)
    lengths = torch.randint(2, width + 1, (batch,), generator=g)
    lengths[0] = width
    return ids, torch.arange(width)[None, :] < lengths[:, None]


@pytest.mark.parametrize("make_config,cls", MODELS)
@pytest.mark.parametrize("kernel", ["padded", "jagged"])
@pytest.mark.parametrize("selection", ["threshold", "off"])
def test_unpadded_equals_padded(make_config, cls, kernel, selection):
    model = _model(make_config, cls)
    for seed in range(3):
        ids, mask = _batch(seed)
        types = (torch.arange(ids.shape[1]) > 6).long().expand_as(ids) if make_config is tiny_bert_config else None
        with torch.no_grad():
            padded = model(ids, mask, types, selection=selection)
            unpadded = model(ids, mask, types, selection=selection, unpadded=True, attention=kernel)
        assert [k.tolist() for k in unpadded.kept] == [k.tolist() for k in padded.kept]
        assert torch.equal(unpadded.positions, padded.positions)  # the same tokens, in the same order
        assert (unpadded.logits - padded.logits).abs().max() <= 1e-5


def test_packing_bookkeeping():
    alive = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    packing, position = pack(alive)
    assert packing.counts.tolist() == [3, 2, 4] and packing.width == 4
    assert packing.starts.tolist() == [0, 3, 5] and position.tolist() == [0, 1, 2, 0, 1, 0, 1, 2, 3]
    kept = keep_tokens(packing, torch.tensor([1, 0, 1, 1, 0, 1, 0, 0, 1], dtype=torch.bool))
    assert kept.counts.tolist() == [2, 1, 2] and kept.slot.tolist() == [0, 1, 0, 0, 1]


def test_unpadded_path_refuses_training_mode():
    model = _model(tiny_bert_config, TRBertForSequenceClassification).train()
    ids, mask = _batch(0)
    with pytest.raises(ValueError, match="inference"):
        model(ids, mask, selection="threshold", unpadded=True)


@pytest.mark.parametrize("path", ["padded", "unpadded"])
def test_length_sorted_evaluation_restores_dataset_order(path):
    model = _model(tiny_bert_config, TRBertForSequenceClassification)
    ids, mask = _batch(5, batch=11)
    arrays = {"input_ids": ids.numpy().astype(np.int32), "lengths": mask.sum(1).numpy().astype(np.int32)}
    config = EvalConfig(per_gpu_eval_batch_size=4, inference_path=path)
    batched = predict(model, arrays, "threshold", config, Precision(), World())
    with torch.no_grad():
        alone = [
            model(ids[i : i + 1, : int(mask[i].sum())], mask[i : i + 1, : int(mask[i].sum())], selection="threshold")
            for i in range(11)
        ]
    assert np.allclose(batched.logits, torch.cat([o.logits for o in alone]).numpy(), atol=1e-5)
    assert batched.path == path


def test_equal_lengths_take_the_reshape_path_with_the_same_result():
    model = _model(tiny_bert_config, TRBertForSequenceClassification)
    for selector in model.selectors:
        selector.out.bias.data.fill_(20.0)  # keep all: every example keeps the same count at every layer
    ids = torch.randint(5, 40, (5, 24))
    mask = torch.ones_like(ids, dtype=torch.bool)
    with torch.no_grad():
        padded = model(ids, mask, selection="threshold")
        unpadded = model(ids, mask, selection="threshold", unpadded=True, attention="padded")
    assert [k.tolist() for k in unpadded.kept] == [[24] * 5] * 2
    assert (unpadded.logits - padded.logits).abs().max() <= 1e-5
