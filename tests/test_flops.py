"""The closed-form FLOPs counter: the original's table, the paper's example, and real counts."""

import numpy as np
import torch
from conftest import tiny_bert_config
from torch.utils.flop_counter import FlopCounterMode
from transformers import BertConfig

from trbert import FlopsCounter, TRBertForSequenceClassification, layer_macs, mflops


def test_layer_macs_match_the_original_table():
    assert layer_macs(1, 768, 3072) == 7_079_424
    assert layer_macs(128, 768, 3072) == 931_135_488
    assert layer_macs(384, 768, 3072) == 2_944_401_408
    assert layer_macs(512, 768, 3072) == 4_026_531_840
    assert layer_macs(1024, 768, 3072) == 8_858_370_048
    n = np.arange(1025)
    assert np.array_equal(layer_macs(n, 768, 3072), 7_077_888 * n + 1_536 * n * n)


def test_bert_base_full_and_reduced_examples_of_the_spec():
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


def test_a_skipped_selector_keeps_the_previous_count():
    counter = FlopsCounter.from_config(BertConfig(num_labels=2))
    assert counter.reduced([10], [[1]]) == counter.reduced([10], [[1], [1]]) - 1 * (768 * 32 + 32)


def test_exact_count_matches_torch_flop_counter():
    torch.manual_seed(0)
    config = tiny_bert_config(num_labels=3)
    config._attn_implementation = "eager"  # attention as plain matmuls, which the counter sees
    model = TRBertForSequenceClassification(config).eval()
    model.selectors[0].out.bias.data.fill_(0.0)  # about half the tokens survive selector 0
    ids = torch.randint(5, config.vocab_size, (1, 40))
    mask = torch.ones_like(ids)
    with torch.no_grad(), FlopCounterMode(display=False) as counted:
        out = model(ids, mask, selection="threshold")
    kept = [[int(k)] for k in out.kept]
    assert kept[0][0] < 40  # the reduction really happened
    exact = FlopsCounter.from_config(config).reduced([40], kept, exact=True)[0]
    assert counted.get_total_flops() == 2 * exact
    with torch.no_grad(), FlopCounterMode(display=False) as counted_full:
        model(ids, mask)
    assert counted_full.get_total_flops() == 2 * FlopsCounter.from_config(config).full([40], exact=True)[0]
