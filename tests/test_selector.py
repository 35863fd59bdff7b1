"""Selection semantics: [CLS] kept, padding dropped, thresholds, batch handling, order, guidance."""

import torch

from trbert.core.policy import BatchUniform, Counted, Sample, Site, Threshold
from trbert.core.selector import (
    additive_mask,
    compact,
    gather_tokens,
    guided_target,
    keep_probabilities,
    sample_keep,
    selection_nll,
)

ALIVE = torch.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 1, 0, 0, 0]], dtype=torch.bool)
PROB = torch.tensor([[0.1, 0.9, 0.2, 0.6, 0.7, 0.0], [0.2, 0.4, 0.3, 0.0, 0.0, 0.0]])


def site(prob=PROB, alive=ALIVE, w=0) -> Site:
    """A site whose keep probabilities are ``prob`` (the selector is never asked)."""
    at = Site(w, alive, torch.arange(alive.shape[1]).expand_as(alive), alive.shape[1], logits=None)
    at.__dict__["prob"] = prob * alive
    return at


def test_probabilities_are_zero_on_dead_positions():
    p = keep_probabilities(torch.full((2, 6), 5.0), ALIVE)
    assert torch.all(p[~ALIVE] == 0) and torch.all(p[ALIVE] > 0.99)


def test_threshold_keeps_cls_and_above_threshold_only():
    keep = Threshold().keep(site())
    assert keep.tolist() == [[True, True, False, True, True, False], [True, False, False, False, False, False]]


def test_padding_is_never_kept_even_with_high_probability():
    everything = site(torch.ones(2, 6))
    assert not Threshold().keep(everything)[~ALIVE].any()
    assert not Sample(torch.arange(2)).keep(everything)[~ALIVE].any()
    assert not Counted(torch.full((2, 1), 6), "random", torch.arange(2)).keep(everything)[~ALIVE].any()


def test_batch_uniform_gives_every_row_the_largest_count():
    keep = BatchUniform().keep(site())
    # row 0 keeps 4 (CLS + three above 0.5); row 1 has only CLS above threshold but takes its top 3
    # (all its alive positions), as the original's top-k would
    assert keep.sum(1).tolist() == [4, 3]
    assert keep[1].tolist() == [True, True, True, False, False, False]


def test_batch_of_one_is_the_same_either_way():
    for row in range(2):
        one = site(PROB[row : row + 1], ALIVE[row : row + 1])
        assert torch.equal(Threshold().keep(one), BatchUniform().keep(one))


def test_counted_keeps_cls_and_exactly_the_count():
    keep = Counted(torch.tensor([[3], [2]]), "random", torch.arange(2)).keep(site())
    assert keep.sum(1).tolist() == [3, 2] and keep[:, 0].all()


def test_compact_keeps_original_order_and_marks_fillers():
    keep = Threshold().keep(site())
    index, valid = compact(keep)
    assert index[0].tolist() == [0, 1, 3, 4]
    assert index[1, 0] == 0 and valid[1].tolist() == [True, False, False, False]
    x = torch.arange(12.0).view(2, 6, 1)
    assert gather_tokens(x, index)[0, :, 0].tolist() == [0.0, 1.0, 3.0, 4.0]


def test_guided_target_takes_round_sum_p_top_guide_scores():
    prob = torch.tensor([[0.5, 0.5, 0.5, 0.5, 0.0]])  # sum 2.0 -> 2 tokens
    alive = torch.tensor([[1, 1, 1, 1, 0]], dtype=torch.bool)
    guide = torch.tensor([[0.0, 3.0, 1.0, 2.0, 9.0]])  # the dead position's big score is ignored
    assert guided_target(prob, guide, alive).tolist() == [[False, True, False, True, False]]
    policy = Sample(torch.arange(1), guide[:, None], torch.tensor([True]))
    assert policy.keep(site(prob, alive)).tolist() == [[True, True, False, True, False]]  # target plus [CLS]


def test_sampling_frequency_follows_probability():
    prob = torch.full((4000, 3), 0.3)
    keep = sample_keep(prob, torch.rand(4000, 3, generator=torch.Generator().manual_seed(0)))
    assert abs(keep.float().mean().item() - 0.3) < 0.03
    seeded = Sample(torch.arange(4000)).keep(site(prob, torch.ones(4000, 3, dtype=torch.bool)))
    assert seeded[:, 0].all() and abs(seeded[:, 1:].float().mean().item() - 0.3) < 0.03


def test_selection_nll_by_hand():
    prob = torch.tensor([[0.8, 0.25, 0.5]])
    keep = torch.tensor([[True, False, True]])
    alive = torch.tensor([[True, True, False]])
    expected = -(torch.log(torch.tensor(0.8 + 1e-6)) + torch.log(torch.tensor(0.75 + 1e-6))) / 2
    assert torch.allclose(selection_nll(prob, keep, alive), expected[None])


def test_additive_mask_shape_and_values():
    m = additive_mask(ALIVE, torch.float32)
    assert m.shape == (2, 1, 1, 6)
    assert m[0, 0, 0, 0] == 0 and m[0, 0, 0, 5] == torch.finfo(torch.float32).min
