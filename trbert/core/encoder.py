"""Token reduction on stock BERT / DistilBERT: the two encoder loops with selectors.

With :mod:`.backbones` and :mod:`.heads`, the only place that touches transformers internals. A model (:mod:`.heads`)
adds ``selectors`` (one :class:`Selector` per selection layer) to the stock backbone and head; its forward walks the
stock embeddings and layers and, before each selection layer, lets a :mod:`.policy` decide which tokens go on:

* ``path="padded"``: ``[B, T, d]`` tensors, kept tokens gathered to the front of each row (training, sampling, the
  original's batch-uniform inference);
* ``path="unpadded"``: inference on packed tokens (:mod:`.packed`), each example carrying only its own kept tokens; the
  same selections and outputs at the cost of the tokens actually kept.

Token-level heads get every position back (the residual restore, docs/differences.md K9); examples of several windows
run their windows as rows. Tracing is an object the caller passes in (:class:`Trace`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers.utils import ModelOutput

from .packed import ATTENTION, keep_tokens, pack, unpack
from .policy import Policy, Site, Threshold
from .seeding import install_example_dropout, seeded_dropout, window_seeds
from .selector import Selector, additive_mask, compact, gather_tokens, restore_tokens, selection_nll

MASKED = -1e4  # logit of positions a token-level head does not score (padding, empty slots)


CHECKPOINT = object()  # the policy of a plain call: the checkpoint's own (``config.tr_selection``)
PATHS = ("padded", "unpadded")


def selector_layers(config) -> list[int]:
    """Layers whose *input* a selector sees: ``[1, n // 2]``, duplicates removed (docs/differences.md K11, F3)."""
    n = config.num_hidden_layers
    layers = getattr(config, "tr_selector_layers", None) or [1, n // 2]
    return sorted({i for i in layers if 0 < i < n})


@dataclass
class ReductionOutput(ModelOutput):
    """A transformers ``ModelOutput``. ``logits [B, C]`` (token-level heads ``[B, C, T]``; span heads also
    ``start_logits``/``end_logits [B, T]``); ``kept`` one ``[B]`` count per selector that ran (tokens processed after
    it, [CLS] included); ``positions [B, k]`` the original positions of the tokens that reached the last layer (-1:
    filler); ``select_nll [B]`` summed over selectors (a sampling policy only); ``hidden_states`` when asked for."""

    logits: torch.Tensor | None = None
    start_logits: torch.Tensor | None = None
    end_logits: torch.Tensor | None = None
    positions: torch.Tensor | None = None
    select_nll: torch.Tensor | None = None
    kept: list[torch.Tensor] | None = None
    hidden_states: list[torch.Tensor] | None = None

    def tensors_only(self) -> ReductionOutput:
        """For transformers' pipelines, which split every tensor item row by row: the lists as attributes only."""
        out = ReductionOutput(**{k: v for k, v in self.items() if torch.is_tensor(v)})
        for name in ("kept", "hidden_states"):
            object.__setattr__(out, name, getattr(self, name))
        return out


class Trace:
    """What a forward given this object records: ``depth [B, T]`` how many selectors each position passed (all of them:
    it reached the last layer; -1: padding) and ``probs``, one per selector of the model, the keep probabilities
    ``[B, T]`` (NaN where not scored, all NaN for a selector that did not run). Windows fold to ``[B, S, T]``."""

    def __init__(self):
        self.depth, self.probs = None, []

    def start(self, alive: torch.Tensor, selectors: int) -> None:
        self.depth = alive.long() - 1
        self.probs = [torch.full(alive.shape, float("nan"), device=alive.device) for _ in range(selectors)]

    def passed(self, level: int, positions: torch.Tensor, keep: torch.Tensor) -> None:
        """``keep [R, W]`` tokens at ``positions`` passed ``level`` selectors (unkept: [CLS]'s, which always passes)."""
        self.depth.scatter_(1, positions.masked_fill(~keep, 0), level)

    def record(self, w: int, prob: torch.Tensor, alive, positions, keep) -> None:
        nan = prob.new_full((*self.depth.shape, 1), float("nan"), dtype=torch.float32)
        self.probs[w] = restore_tokens(nan, positions, prob[..., None], alive)[..., 0]
        self.passed(w + 1, positions, keep)

    def fold(self, b: int, s: int) -> None:
        self.depth = self.depth.view(b, s, -1)
        self.probs = [p.view(b, s, -1) for p in self.probs]


class TokenReductionMixin:
    """The encoder loops with token selection, shared by the BERT and DistilBERT models."""

    example_dropout = False  # dropout masks from the per-row ``seeds`` of the forward (see .seeding)
    restores_tokens = False  # token-level heads: every original position gets an output (docs/differences.md K9)
    head_inputs: tuple[str, ...] = ()  # batch arrays the head reads besides the sequence
    span_outputs = False  # span heads: ``start_logits`` / ``end_logits`` as transformers' QA models return them
    window_nll = "sum"  # selection log-likelihood of several windows: "sum" or "mean" over the real ones (N17)
    token_outputs = pooled_outputs = 0  # head outputs per position / on a pooled vector, if not on [CLS] (FLOPs)
    original_names: dict[str, str] = {}  # head parameters of the original release -> ours (checkpoint loading)
    attention_kernel = "auto"  # of the unpadded path: see .packed.ATTENTION

    def _init_reduction(self, config, num_labels: int) -> None:
        """The end of a model's ``__init__``: its logits' width, its selectors, then transformers' ``post_init``."""
        self.num_labels = num_labels
        config.tr_selector_layers = selector_layers(config)
        self.selectors = nn.ModuleList(Selector(config.hidden_size) for _ in config.tr_selector_layers)
        install_example_dropout(self)
        self.post_init()

    def _selector_at(self) -> dict[int, int]:
        """``{layer index: selector index}`` for the layers whose input a selector sees."""
        return {layer: w for w, layer in enumerate(self.config.tr_selector_layers)}

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, policy=CHECKPOINT, path=None,
                tracer: Trace | None = None, head_inputs=None, seeds=None, output_hidden_states=False):  # fmt: skip
        """The reduction forward. ``policy``: a :class:`Policy`, or None for the stock computation; not given (a plain
        transformers call, e.g. by a pipeline): the checkpoint's own, tensors only. ``path``: ``padded`` or
        ``unpadded``; not given: unpadded for a plain call in eval mode without gradient or layer outputs, else padded.
        ``seeds [B]``: dropout seeds if ``example_dropout``. Inputs ``[B, S, T]`` run their ``S`` windows as rows."""
        plain = policy is CHECKPOINT  # the threshold once the selectors were trained, else the stock forward
        if plain:
            policy = Threshold() if getattr(self.config, "tr_selection", "off") == "threshold" else None
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        if path is None:
            fast = plain and not self.training and not torch.is_grad_enabled() and not output_hidden_states
            path = "unpadded" if fast and (policy is None or policy.packable) else "padded"
        if path not in PATHS or (path == "unpadded" and (self.training or not (policy is None or policy.packable))):
            raise ValueError(f"path {path!r}: padded, or unpadded for inference with a packable policy")
        run = self._windows if input_ids.dim() == 3 else self._rows
        out = run(input_ids, mask, token_type_ids, policy, path, tracer, head_inputs, seeds, output_hidden_states)
        if self.span_outputs:
            out["start_logits"], out["end_logits"] = out.logits[..., 0, :], out.logits[..., 1, :]
        return out.tensors_only() if plain else out

    def _rows(self, input_ids, attention_mask, token_type_ids, policy, path, tracer, head_inputs, seeds, hidden):
        alive = attention_mask.bool()
        out = ReductionOutput(input_ids.new_empty(0), kept=[], hidden_states=[] if hidden else None)
        if tracer is not None:
            tracer.start(alive, len(self.selectors))
        if path == "unpadded":
            with torch.no_grad():
                self._unpadded(input_ids, alive, token_type_ids, policy, tracer, head_inputs or {}, out)
        else:
            with seeded_dropout(self, seeds if self.training and self.example_dropout else None):
                self._padded(input_ids, alive, token_type_ids, policy, tracer, head_inputs or {}, out)
        if tracer is not None:  # the tokens of the last layer passed every selector
            tracer.passed(len(self.selectors), out.positions.clamp_min(0), out.positions >= 0)
        return out

    def _decide(self, policy: Policy, site: Site):
        """``(keep [R, W], probabilities to trace (a function), log-likelihood [R] of sampled
        decisions or None)`` at ``site``: a hook for shared selections."""
        keep = policy.keep(site)
        nll = selection_nll(site.prob, keep, site.alive) if policy.samples else None
        return keep, lambda: site.prob, nll

    def _padded(self, input_ids, mask, token_type_ids, policy, tracer, head_inputs, out: ReductionOutput):
        """Into ``out``: the stock layers on ``[B, T, d]`` with selection before the selector layers, survivors gathered
        to the front of each row (``[B, k, d]``); token-level heads read the restore buffer."""
        x = self._embed(input_ids, token_type_ids)
        if out.hidden_states is not None:
            out.hidden_states.append(x)
        width, alive = x.shape[1], mask
        orig = torch.arange(width, device=x.device).expand(x.shape[0], -1)
        restored = torch.zeros_like(x) if self.restores_tokens else None
        where, before = self._selector_at(), None
        for i, layer in enumerate(self._layers()):
            w = where.get(i)
            if w is not None and policy is not None and x.shape[1] > 1:
                site = Site(w, alive, orig, width, lambda x=x, w=w: self.selectors[w](x),
                            lambda b=before, a=alive: self._cls_attention(*b, a))  # fmt: skip
                keep, prob, nll = self._decide(policy, site)
                if nll is not None:
                    out.select_nll = nll if out.select_nll is None else out.select_nll + nll
                if restored is not None:  # dropped tokens keep the state they had (no gradient: K9)
                    restored = restore_tokens(restored, orig, x.detach(), alive & ~keep)
                if tracer is not None:
                    tracer.record(w, prob(), alive, orig, keep)
                index, alive = compact(keep)
                x, orig = gather_tokens(x, index), orig.gather(1, index)
                out.kept.append(alive.sum(1))
            before = (layer, x)
            x = layer(x, additive_mask(alive, x.dtype))
            if out.hidden_states is not None:
                out.hidden_states.append(x)
        if policy is not None and policy.samples and out.select_nll is None:
            out.select_nll = x.new_zeros(x.shape[0], dtype=torch.float32)
        if restored is not None:  # survivors: their last-layer state, with gradient
            out.logits = self._head(restore_tokens(restored, orig, x, alive), mask, **head_inputs)
        else:
            out.logits = self._head(x[:, 0])
        out["positions"] = orig.masked_fill(~alive, -1)

    def _unpadded(self, input_ids, alive, token_type_ids, policy, tracer, head_inputs, out: ReductionOutput):
        """Inference on packed tokens ``[N, d]`` into ``out``, decided on by original position ``[B, T]``; token-level
        heads read a dense restore made after the last layer (dropped tokens with their state when dropped)."""
        attend = ATTENTION[self.attention_kernel]
        packing, position = pack(alive)
        types = None if token_type_ids is None else token_type_ids[packing.row, position][None]
        x = self._embed(input_ids[packing.row, position][None], types, position[None])[0]
        grid = torch.arange(alive.shape[1], device=alive.device).expand_as(alive)
        dropped, where, before = [], self._selector_at(), None
        for i, layer in enumerate(self._layers()):
            w = where.get(i)
            if w is not None and policy is not None and packing.width > 1:

                def dense(values, p=packing, at=position):  # [N] at their original positions -> [B, T]
                    return values.new_zeros(alive.shape, dtype=torch.float32).index_put_((p.row, at), values.float())

                present = dense(torch.ones_like(position)).bool()
                site = Site(w, present, grid, alive.shape[1], lambda x=x, w=w, dense=dense: dense(self.selectors[w](x)),
                            lambda b=before, dense=dense: dense(self._packed_cls_attention(*b)))  # fmt: skip
                keep_dense, prob, _ = self._decide(policy, site)
                if tracer is not None:
                    tracer.record(w, prob(), present, grid, keep_dense)
                keep = keep_dense[packing.row, position]
                if self.restores_tokens:
                    dropped.append((x[~keep], packing.row[~keep], position[~keep]))
                x, position, packing = x[keep], position[keep], keep_tokens(packing, keep)
                out.kept.append(packing.counts)
            before = (layer, x, packing)
            x = self._packed_layer(layer, x, packing, attend)
        if self.restores_tokens:
            out.logits = self._head(unpack([*dropped, (x, packing.row, position)], alive), alive, **head_inputs)
        else:
            out.logits = self._head(x[packing.starts])
        out["positions"] = position.new_full((alive.shape[0], packing.width if out.kept else alive.shape[1]), -1)
        out.positions[packing.row, packing.slot if out.kept else position] = position  # by slot once a selector ran

    def _windows(self, input_ids, attention_mask, token_type_ids, policy, path, tracer, head_inputs, seeds, hidden):
        """Examples of ``S`` windows ``[B, S, T]`` (TriviaQA, WikiHop): every window is a row with its own selection;
        outputs fold back per example — ``logits [B, S, ...]``, ``kept`` ``[B, S]`` per selector, ``select_nll [B]``
        summed (``window_nll = "mean"``: averaged) over the real windows (more than [CLS]; docs/differences.md N17)."""
        b, s = input_ids.shape[:2]
        policy = policy if policy is None else self._window_policy(policy, b, s)
        rows = [None if t is None else t.flatten(0, 1) for t in (input_ids, attention_mask, token_type_ids)]
        out = self._rows(*rows, policy, path, tracer, head_inputs, window_seeds(seeds, b, s), hidden)
        real = attention_mask[:, :, 1:].any(-1)
        out.logits, out.positions = out.logits.view(b, s, *out.logits.shape[1:]), out.positions.view(b, s, -1)
        out.kept = [k.view(b, s) for k in out.kept]
        if out.select_nll is not None:
            out.select_nll = (out.select_nll.view(b, s) * real).sum(1)
            if self.window_nll == "mean":
                out.select_nll = out.select_nll / real.sum(1).clamp_min(1)
        if tracer is not None:
            tracer.fold(b, s)
        return out

    def _window_policy(self, policy: Policy, b: int, s: int) -> Policy:
        """The policy for the windows of ``b`` examples (a hook: shared selections decide per example)."""
        return policy.windows(b, s)

    def extend_positions(self, length: int) -> int:
        """Grow the learned position embeddings to ``length`` by repeating the learned ones (the
        standard way to read longer inputs, e.g. the original's BERT-1024). Returns the old count."""
        embeddings = self._embed_module()
        old = embeddings.position_embeddings
        if length <= old.num_embeddings:
            return old.num_embeddings
        grown = nn.Embedding(length, old.embedding_dim).to(old.weight.device, old.weight.dtype)
        with torch.no_grad():
            grown.weight.copy_(old.weight[torch.arange(length) % old.num_embeddings])
        embeddings.position_embeddings = grown
        for name in ("position_ids", "token_type_ids"):  # the stock buffers are as long as the table
            if hasattr(embeddings, name):
                fill = torch.arange(length) if name == "position_ids" else torch.zeros(length, dtype=torch.long)
                embeddings.register_buffer(name, fill[None].to(old.weight.device), persistent=False)
        self.config.max_position_embeddings = length
        return old.num_embeddings

    def selector_parameters(self) -> list[nn.Parameter]:
        return list(self.selectors.parameters())
