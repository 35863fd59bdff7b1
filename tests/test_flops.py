"""The closed-form FLOPs counter: the original's table, the paper's example, and real counts."""

import numpy as np
import torch
from conftest import tiny_bert_config
from torch.utils.flop_counter import FlopCounterMode
from transformers import BertConfig

from trbert import FlopsCounter, TRBertForQuestionAnswering, TRBertForSequenceClassification, layer_macs, mflops
from trbert.core.policy import Threshold


def test_layer_macs_match_the_original_table():
    assert layer_macs(1, 768, 3072) == 7_079_424
    assert layer_macs(128, 768, 3072) == 931_135_488
    assert layer_macs(384, 768, 3072) == 2_944_401_408
    assert layer_macs(512, 768, 3072) == 4_026_531_840
    assert layer_macs(1024, 768, 3072) == 8_858_370_048
    n = np.arange(1025)
    assert np.array_equal(layer_macs(n, 768, 3072), 7_077_888 * n + 1_536 * n * n)


def test_bert_base_full_and_reduced_examples_of_the_paper_accounting():
    counter = FlopsCounter.from_config(BertConfig(num_labels=2))
    assert counter.placement == (1, 6)
    assert round(mflops(counter.full([512])), 3) == 96_636.767
    assert round(mflops(counter.reduced([512], [[256], [128]])), 3) == 38_371.618


def test_counts_are_per_example_whatever_the_batch():
    counter = FlopsCounter.from_config(BertConfig(num_labels=2))
    lengths, kept = [512, 100], [[256, 50], [128, 10]]
    both = counter.reduced(lengths, kept)
    assert both[0] == counter.reduced([512], [[256], [128]])[0]
    assert both[1] == counter.reduced([100], [[50], [10]])[0]


def test_a_selector_that_sees_only_cls_is_not_run_and_costs_nothing():
    counter = FlopsCounter.from_config(BertConfig(num_labels=2))
    selector = 768 * 32 + 32
    # selector 0 keeps only [CLS]: selector 1 is skipped, the count carries over, nothing is charged for it
    for exact in (False, True):
        assert counter.reduced([10], [[1]], exact) == counter.reduced([10], [[1], [1]], exact)
    # against the formula: layer 0 on 10 tokens, selector 0 charged on what it keeps (1), then 11 layers on 1
    assert (
        counter.reduced([10], [[1], [1]])[0]
        == layer_macs(10, 768, 3072) + selector + 11 * layer_macs(1, 768, 3072) + 768 * 2
    )
    assert counter.reduced([1], [[1], [1]])[0] == counter.full([1])[0]  # a one-token input is never scored


def test_exact_count_matches_torch_flop_counter():
    torch.manual_seed(0)
    config = tiny_bert_config(num_labels=3)
    config._attn_implementation = "eager"  # attention as plain matmuls, which the counter sees
    model = TRBertForSequenceClassification(config).eval()
    model.selectors[0].out.bias.data.fill_(0.0)  # about half the tokens survive selector 0
    ids = torch.randint(5, config.vocab_size, (1, 40))
    mask = torch.ones_like(ids)
    with torch.no_grad(), FlopCounterMode(display=False) as counted:
        out = model(ids, mask, policy=Threshold())
    kept = [[int(k)] for k in out.kept]
    assert kept[0][0] < 40  # the reduction really happened
    exact = FlopsCounter.from_config(config).reduced([40], kept, exact=True)[0]
    assert counted.get_total_flops() == 2 * exact
    with torch.no_grad(), FlopCounterMode(display=False) as counted_full:
        model(ids, mask, policy=None)
    assert counted_full.get_total_flops() == 2 * FlopsCounter.from_config(config).full([40], exact=True)[0]


def test_exact_count_of_a_token_level_head_matches_torch_flop_counter():
    """The span head scores every position (after the restore) and has no pooler."""
    torch.manual_seed(0)
    config = tiny_bert_config()
    config._attn_implementation = "eager"
    config.tr_head = "span"
    model = TRBertForQuestionAnswering(config).eval()
    model.selectors[0].out.bias.data.fill_(0.0)
    ids = torch.randint(5, config.vocab_size, (1, 40))
    with torch.no_grad(), FlopCounterMode(display=False) as counted:
        out = model(ids, torch.ones_like(ids), policy=Threshold())
    counter = FlopsCounter.from_config(config)
    assert counted.get_total_flops() == 2 * counter.reduced([40], [[int(k)] for k in out.kept], exact=True)[0]
    with torch.no_grad(), FlopCounterMode(display=False) as counted_full:
        model(ids, torch.ones_like(ids), policy=None)
    assert counted_full.get_total_flops() == 2 * counter.full([40], exact=True)[0]
