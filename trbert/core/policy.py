"""Selection policies: how a selector's keep probabilities become keep decisions.

The one keep rule (:meth:`Policy.keep`) and the policies a forward is given. A policy sees a :class:`Site` (``R`` rows,
``W`` columns): the tokens in front of one selector as the asking loop lays them out (the padded loop's current
columns, the packed loop's original positions), so both loops and the shared-choice heads decide through the one rule.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cached_property

import torch

from .seeding import uniform, window_seeds
from .selector import THRESHOLD, count_keep, guided_target, keep_probabilities, sample_keep

COUNTED = ("random", "attention")  # the scores a counted baseline ranks tokens by


@dataclass
class Site:
    """The tokens in front of selector ``w``: ``alive [R, W]`` those it may keep (not padding, dropped or protected),
    ``positions [R, W]`` their original positions (below the input's ``width``); the selector's logits and the attention
    [CLS] paid each position in the previous layer (``[R, W]``) are computed when a policy asks."""

    w: int
    alive: torch.Tensor
    positions: torch.Tensor
    width: int
    logits: Callable[[], torch.Tensor]
    cls_attention: Callable[[], torch.Tensor] | None = None

    @cached_property
    def prob(self) -> torch.Tensor:
        """Keep probabilities ``[R, W]`` float32, 0 where not alive."""
        return keep_probabilities(self.logits(), self.alive)


class Policy:
    """How a site's tokens are chosen. ``packable``: the unpadded loop can run it; ``samples``: its decisions are
    sampled (the forward returns their log-likelihood); ``runs_selectors``: FLOPs charge the selectors."""

    name = "policy"
    packable = False
    samples = False
    runs_selectors = True

    def for_batch(self, batch: dict) -> Policy:
        """The policy for one batch of a pass over a split (a dataset-level baseline makes its own)."""
        return self

    def keep(self, site: Site) -> torch.Tensor:
        """The keep rule of every path (padded, unpadded, shared choice): the policy's choice among
        the alive positions, [CLS] always kept. ``[R, W]`` bool. Not overridden."""
        keep = self.choose(site) & site.alive
        keep[:, 0] = site.alive[:, 0]
        return keep

    def choose(self, site: Site) -> torch.Tensor:
        """The positions to keep ``[R, W]`` bool (:meth:`keep` adds [CLS] and drops the dead)."""
        raise NotImplementedError

    def windows(self, b: int, s: int) -> Policy:
        """The policy for examples of ``s`` windows run as ``b * s`` rows."""
        return self

    def options(self) -> Policy:
        """The policy for one shared decision per question of several option rows."""
        return self


class Threshold(Policy):
    """Inference: keep a token when its probability reaches 0.5; each row on its own (docs/differences.md F1)."""

    name = "threshold"
    packable = True

    def choose(self, site: Site) -> torch.Tensor:
        return site.prob >= THRESHOLD


class BatchUniform(Policy):
    """The original's batched inference (docs/differences.md F1): every row keeps as many positions as
    the row with the most above-threshold tokens, its most probable ones ([CLS] first)."""

    name = "uniform"

    def choose(self, site: Site) -> torch.Tensor:
        count = Threshold().keep(site).sum(1)
        score = site.prob.clone()
        score[:, 0] = 3.0
        top = score.topk(int(count.max()), dim=1).indices
        return torch.zeros_like(site.alive).scatter_(1, top, True)


class Probe(Policy):
    """Keep everything: the selector warm start regresses the probabilities a tracer records."""

    name = "probe"

    def choose(self, site: Site) -> torch.Tensor:
        return site.alive


@dataclass
class Sample(Policy):
    """RL: ``a ~ Bernoulli(p)`` from per-row ``seeds [R]`` (noise keyed by the row's columns), or on ``guided_rows [R]``
    the imitation target from the token scores ``guide [R, selectors, T]`` (docs/differences.md K3)."""

    seeds: torch.Tensor
    guide: torch.Tensor | None = None
    guided_rows: torch.Tensor | None = None
    name = "sample"
    samples = True

    def choose(self, site: Site) -> torch.Tensor:
        target, prob = None, site.prob  # computed (and cached) with gradient: the NLL reads it too
        if self.guide is not None and self.guided_rows is not None:
            with torch.no_grad():
                guide = self.guide[:, site.w].gather(1, site.positions)
                target = guided_target(prob.detach(), guide, site.alive)
        noise = uniform(self.seeds, -1 - site.w, tuple(site.alive.shape[1:]))  # by column of the padded loop
        return sample_keep(prob, noise, target, self.guided_rows)

    def windows(self, b: int, s: int) -> Sample:
        guided = None if self.guided_rows is None else self.guided_rows.repeat_interleave(s)
        return Sample(window_seeds(self.seeds, b, s), None if self.guide is None else self.guide.flatten(0, 1), guided)

    def options(self) -> Sample:
        """The question's guide is the sum of its option rows' scores (docs/differences.md F15)."""
        return replace(self, guide=None if self.guide is None else self.guide.sum(1))


@dataclass
class Counted(Policy):
    """A training-free baseline keeping ``counts [R, selectors]`` tokens per row: at ``random`` (from ``seeds [R]``,
    keyed by original position) or those [CLS] paid the most ``attention`` in the previous layer."""

    counts: torch.Tensor
    score: str = "random"
    seeds: torch.Tensor | None = None
    packable = True
    runs_selectors = False

    def __post_init__(self):
        if self.score not in COUNTED:
            raise ValueError(f"Counted score must be one of {COUNTED}, got {self.score!r}")
        self.name = self.score

    def choose(self, site: Site) -> torch.Tensor:
        if self.score == "random":
            score = uniform(self.seeds, 7 + site.w, (site.width,)).gather(1, site.positions)
        else:
            score = site.cls_attention()
        return count_keep(score, site.alive, self.counts[:, site.w].to(site.alive.device))

    def windows(self, b: int, s: int) -> Counted:
        return replace(self, counts=self.counts.flatten(0, 1), seeds=window_seeds(self.seeds, b, s))
