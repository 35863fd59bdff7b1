"""The REINFORCE objective, rewards, distillation and warm-start losses against hand computations."""

import torch

from trbert.core.objective import (
    distillation,
    guided_rows,
    init_loss,
    length_fraction,
    rank_targets,
    reinforce_loss,
    rewards,
)


def test_reinforce_by_hand():
    # two examples (B=2), K=2 replicas, rows replica-major: [e0r0, e1r0, e0r1, e1r1]
    reward = torch.tensor([1.0, -2.0, 3.0, -2.0])
    nll = torch.tensor([0.5, 0.1, 0.2, 0.3])
    # baselines: e0 -> 2, e1 -> -2; advantages: [-1, 0, 1, 0]
    expected = (-1 * 0.5 + 0 * 0.1 + 1 * 0.2 + 0 * 0.3) / 4
    assert torch.isclose(reinforce_loss(reward, nll, replicas=2), torch.tensor(expected))


def test_identical_rewards_give_zero_loss_and_gradient():
    nll = torch.rand(16, requires_grad=True)
    loss = reinforce_loss(torch.full((16,), -0.7), nll, replicas=8)
    loss.backward()
    assert loss.item() == 0 and torch.all(nll.grad == 0)


def test_rewards_and_length_fraction():
    kept = [torch.tensor([4, 8]), torch.tensor([2, 4])]
    length = length_fraction(kept, 8.0)  # mean of (4/8, 2/8) and (8/8, 4/8)
    assert torch.allclose(length, torch.tensor([0.375, 0.75]))
    r = rewards(torch.tensor([0.5, 0.1]), length, alpha=2.0)
    assert torch.allclose(r, torch.tensor([-0.5 - 0.75, -0.1 - 1.5])) and not r.requires_grad
    per_row = length_fraction(kept, torch.tensor([4.0, 8.0]))  # true-length option
    assert torch.allclose(per_row, torch.tensor([0.75, 0.75]))


def test_guided_rows_are_replica_zero_while_guiding():
    assert guided_rows(3, True, replicas=2).tolist() == [True, True, True, False, False, False]
    assert not guided_rows(3, False, replicas=2).any()


def test_distillation_is_soft_cross_entropy_summed_over_weighted_groups():
    student, teacher = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 0.0]])
    expected = -0.5 * (torch.log_softmax(student, -1).sum())
    assert torch.allclose(distillation([(student[:, None], None)], [(teacher[:, None], None)]), expected[None])
    # two groups (a span's start and end), the second weighted by 0.25; temperature 2 softens both
    s, t = torch.tensor([[[1.0, 2.0], [0.0, 3.0]]]), torch.tensor([[[2.0, 0.0], [1.0, 1.0]]])
    ce = [-(torch.softmax(t[0, g] / 2, -1) * torch.log_softmax(s[0, g] / 2, -1)).sum() for g in (0, 1)]
    weights = torch.tensor([[1.0, 0.25]])
    assert torch.allclose(distillation([(s, weights)], [(t, None)], 2.0), (ce[0] + 0.25 * ce[1])[None])


def test_rank_targets():
    scores = torch.tensor([[[0.1, 0.9, 0.5, 7.0]]])  # one example, one selector, length 3
    assert torch.allclose(rank_targets(scores, torch.tensor([3])), torch.tensor([[[1 / 3, 1.0, 2 / 3, 0.0]]]))


def test_init_loss_is_a_token_mean_per_selector():
    probs = [torch.tensor([[0.5, 1.0, 0.0]]), torch.tensor([[0.0, 0.0, 0.0]])]
    targets = torch.tensor([[[1.0, 1.0, 1.0], [0.5, 0.5, 0.5]]])
    alive = torch.tensor([[True, True, False]])
    assert torch.isclose(init_loss(probs, targets, alive), torch.tensor(0.25 + 0.5))
