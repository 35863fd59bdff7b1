"""Inference speed of TR-BERT paths against stock BERT (not part of the test suite).

    python benchmarks/speed.py                               # CPU, float32, the full grid
    python benchmarks/speed.py --device cuda --dtype bf16    # GPU with autocast

For BERT-base and DistilBERT configs (random weights), sequence lengths and batch sizes of the
grid, it times, alternating within every repeat after warm-up, and reports medians of:
  (a) stock   : transformers' BertForSequenceClassification / DistilBert..., SDPA, padded;
  (b) original: our model with the original's batched selection (every row keeps the batch's
                largest count), padded tensors;
  (c) unpadded: our model, each example keeps its own tokens, no padding anywhere;
  (d) keep-all: (c) with selectors that keep every token (the overhead of selection).
Peak memory: on CUDA the allocator's peak; on CPU the peak resident memory one call adds
(Linux: the kernel's high-water mark, reset before the call).
Keep schedule: each selector is a fixed random projection thresholded at the median of what it
sees on the benchmark batch, so it keeps half of its tokens: 50% after layer 1, 25% after layer
n/2 (the same decisions on every path); the kept counts measured give the FLOPs speed-up. With ``--lengths_mode full`` (default) every row has the full length (no
input padding), so the FLOPs speed-up is the whole of what reduction can give; with ``mixed`` the
true lengths vary, FLOPs count true lengths, and the padded paths pay for their padding. Writes a JSON table and a PNG chart.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import platform
import statistics
import time
from pathlib import Path

import torch
import transformers
from torch import nn
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
)

from trbert import FlopsCounter, TRBertForSequenceClassification, TRDistilBertForSequenceClassification

MODELS = {
    "bert-base": (BertConfig, BertForSequenceClassification, TRBertForSequenceClassification),
    "distilbert": (DistilBertConfig, DistilBertForSequenceClassification, TRDistilBertForSequenceClassification),
}
DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class HalfSelector(nn.Module):
    """Keeps the tokens whose hidden state projects above ``offset`` on a fixed random direction;
    :func:`calibrate` sets ``offset`` to the median of what the selector sees (keep half)."""

    def __init__(self, hidden: int, seed: int, keep_all: bool = False):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("direction", torch.randn(hidden, generator=g) / hidden**0.5)
        self.offset, self.keep_all, self.seen = 0.0, keep_all, None

    def forward(self, x):
        if self.keep_all:
            return torch.full(x.shape[:-1], 20.0, device=x.device)
        projection = x.float() @ self.direction
        self.seen = projection
        return 20.0 * (projection - self.offset)


def calibrate(model, ids, mask) -> None:
    """Selector ``w`` keeps half of the tokens that reach it: 50% after the first, 25% after the second."""
    for selector in model.selectors:
        model(ids, mask, selection="threshold", unpadded=True)  # packed: only real tokens are seen
        selector.offset = float(selector.seen.median())


def build(name: str, device):
    config_cls, stock_cls, ours_cls = MODELS[name]
    config = config_cls(num_labels=2)
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    stock = stock_cls(config).eval().to(device)
    ours = ours_cls(config).eval().to(device)
    ours.load_state_dict(stock.state_dict(), strict=False)
    return stock, ours


def selector_set(model, keep_all: bool = False) -> nn.ModuleList:
    hidden = model.config.hidden_size
    return nn.ModuleList(HalfSelector(hidden, w, keep_all) for w in range(len(model.selectors))).to(model.device)


def install_selectors(model, ids, mask) -> dict[bool, nn.ModuleList]:
    """Calibrated half-keeping selectors and keep-all ones, to swap in per variant."""
    model.selectors = selector_set(model)
    calibrate(model, ids, mask)
    return {False: model.selectors, True: selector_set(model, keep_all=True)}


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def cpu_peak_mib(fn) -> float | None:
    """Peak resident memory added by one call (Linux): reset the kernel's high-water mark
    (``/proc/self/clear_refs``), run, read ``VmHWM``. None where that is not possible."""
    try:
        gc.collect()
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        Path("/proc/self/clear_refs").write_text("5")
        before = _status_kib("VmRSS")
        fn()
        return (_status_kib("VmHWM") - before) / 1024
    except (OSError, KeyError, AttributeError):
        return None


def timed(fn, device) -> tuple[float, float | None]:
    """Seconds of one call and, on CUDA, its peak allocated memory (MiB)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
        return time.perf_counter() - start, torch.cuda.max_memory_allocated() / 2**20
    return time.perf_counter() - start, None


VARIANTS = {  # (stock model, our model, ids, mask) -> outputs
    "stock": lambda stock, ours, ids, mask: stock(input_ids=ids, attention_mask=mask),
    "original": lambda stock, ours, ids, mask: ours(ids, mask, selection="uniform"),
    "unpadded": lambda stock, ours, ids, mask: ours(ids, mask, selection="threshold", unpadded=True),
    "keep_all": lambda stock, ours, ids, mask: ours(ids, mask, selection="threshold", unpadded=True),
}


def time_variants(stock, ours, inputs, selectors, args, device):
    """Median milliseconds and peak MiB of every variant over all ``inputs`` [(ids, mask), ...],
    alternating the variants within every repeat; plus the kept counts ``[S, N]`` of the selection."""

    def call(variant):
        def run():
            ours.selectors = selectors[variant == "keep_all"]
            return [VARIANTS[variant](stock, ours, ids, mask) for ids, mask in inputs]

        return run

    times = {v: [] for v in VARIANTS}
    memory = {v: None for v in VARIANTS}
    autocast = torch.autocast(device.type, dtype=DTYPES[args.dtype], enabled=DTYPES[args.dtype] is not None)
    with torch.inference_mode(), autocast:
        for repeat in range(args.warmup + args.repeats):
            for variant in VARIANTS:
                seconds, peak = timed(call(variant), device)
                if repeat >= args.warmup:
                    times[variant].append(seconds)
                    memory[variant] = peak if memory[variant] is None else max(memory[variant], peak)
        if device.type == "cpu":  # one more call per variant, outside the timings
            memory = {variant: cpu_peak_mib(call(variant)) for variant in VARIANTS}
        ours.selectors = selectors[False]
        outs = [ours(ids, mask, selection="threshold", unpadded=True) for ids, mask in inputs]
    # a selector skipped for lack of tokens (only [CLS] left) keeps the previous count
    per_batch = [[o.kept[min(w, len(o.kept) - 1)].cpu() for w in range(len(ours.selectors))] for o in outs]
    kept = torch.stack([torch.cat(column) for column in zip(*per_batch, strict=True)])
    return {v: 1000 * statistics.median(t) for v, t in times.items()}, memory, kept


def summarize(name, length, batch, config, lengths, kept, ms, memory) -> dict:
    counter = FlopsCounter.from_config(config)
    flops_speedup = float(counter.full(lengths).sum() / counter.reduced(lengths, kept).sum())
    row = {
        "model": name,
        "length": length,
        "batch": batch,
        "kept_fraction": [float((k.float() / lengths).mean()) for k in kept],
        "flops_speedup": flops_speedup,
        "ms": ms,
        "examples_per_s": {v: 1000 * len(lengths) / t for v, t in ms.items()},
        "peak_mib": memory,
        "speedup": {v: ms["stock"] / t for v, t in ms.items() if v != "stock"},
    }
    row["measured_over_flops"] = {v: s / flops_speedup for v, s in row["speedup"].items() if v != "keep_all"}
    return row


def measure(name, length, batch, args, device):
    """Random weights and inputs, the calibrated half-keeping schedule."""
    stock, ours = build(name, device)
    ids = torch.randint(1000, 20000, (batch, length), device=device)
    ids[:, 0] = 101
    mask = torch.ones_like(ids)
    if args.lengths_mode == "mixed":  # true lengths uniform in [T/8, T]; the first row is full
        g = torch.Generator().manual_seed(batch)
        lengths = torch.randint(max(2, length // 8), length + 1, (batch,), generator=g)
        lengths[0] = length
        mask = (torch.arange(length)[None, :] < lengths[:, None]).long().to(device)
    selectors = install_selectors(ours, ids, mask)
    ms, memory, kept = time_variants(stock, ours, [(ids, mask)], selectors, args, device)
    return summarize(name, length, batch, ours.config, mask.sum(1).cpu(), kept, ms, memory)


def measure_checkpoint(batch, args, device):
    """A trained TR-BERT checkpoint on its task's dev set in dataset order (batches trimmed to
    their longest example): real selections and lengths."""
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    from trbert.checkpoint import load_model
    from trbert.data import batches, load_features
    from trbert.tasks import get_task

    task = get_task(args.task_name)
    model_type = (
        "distilautobert" if AutoConfig.from_pretrained(args.checkpoint).model_type == "distilbert" else "autobert"
    )
    ours = load_model(args.checkpoint, model_type, task.num_labels).eval().to(device)
    stock = AutoModelForSequenceClassification.from_pretrained(args.checkpoint, attn_implementation="sdpa")
    tokenizer = AutoTokenizer.from_pretrained(args.checkpoint)
    arrays, _ = load_features(task, args.data_dir, "dev", tokenizer, args.max_seq_length)
    inputs = [(b["input_ids"].to(device), b["attention_mask"].long().to(device)) for b in batches(arrays, batch)]
    selectors = {False: ours.selectors, True: selector_set(ours, keep_all=True)}
    ms, memory, kept = time_variants(stock.eval().to(device), ours, inputs, selectors, args, device)
    lengths = torch.from_numpy(arrays["lengths"]).long()
    name = f"trained {Path(args.checkpoint).name}"
    return summarize(name, args.max_seq_length, batch, ours.config, lengths, kept, ms, memory)


def render(rows: list[dict], out_png: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['model']}\nT{r['length']} B{r['batch']}" for r in rows]
    x = range(len(rows))
    fig, ax = plt.subplots(figsize=(max(8, len(rows) * 0.9), 4.5))
    width = 0.27
    ax.bar([i - width for i in x], [r["flops_speedup"] for r in rows], width, label="FLOPs speed-up")
    ax.bar(list(x), [r["speedup"]["unpadded"] for r in rows], width, label="measured: unpadded (ours)")
    ax.bar([i + width for i in x], [r["speedup"]["original"] for r in rows], width, label="measured: original-style")
    ax.axhline(1.0, color="gray", lw=0.8)
    ax.set_xticks(list(x), labels, fontsize=7)
    ax.set_ylabel("speed-up over stock BERT (SDPA, padded)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)


def _mib(value) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def table(rows: list[dict]) -> str:
    head = "| model | T | B | kept | FLOPs x | stock ms | original ms | unpadded ms | keep-all ms | original x | unpadded x | unpadded / FLOPs | keep-all overhead | ex/s stock | ex/s unpadded | peak MiB stock / unpadded |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        ms, sp = r["ms"], r["speedup"]
        lines.append(
            f"| {r['model']} | {r['length']} | {r['batch']} | {', '.join(f'{k:.2f}' for k in r['kept_fraction'])} "
            f"| {r['flops_speedup']:.2f} | {ms['stock']:.1f} | {ms['original']:.1f} | {ms['unpadded']:.1f} | {ms['keep_all']:.1f} "
            f"| {sp['original']:.2f} | {sp['unpadded']:.2f} | {r['measured_over_flops']['unpadded']:.2f} "
            f"| {100 * (ms['keep_all'] / ms['stock'] - 1):+.1f}% | {r['examples_per_s']['stock']:.1f} "
            f"| {r['examples_per_s']['unpadded']:.1f} | {_mib(r['peak_mib']['stock'])} / {_mib(r['peak_mib']['unpadded'])} |"
        )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32", choices=sorted(DTYPES))
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--lengths", nargs="+", type=int, default=[128, 512])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8, 32])
    parser.add_argument(
        "--lengths_mode",
        default="full",
        choices=["full", "mixed"],
        help="full: every row T tokens; mixed: true lengths uniform in [T/8, T], padded to T",
    )
    parser.add_argument("--checkpoint", help="a trained TR-BERT checkpoint: time it on its dev set instead")
    parser.add_argument("--data_dir", help="with --checkpoint: the task's data directory")
    parser.add_argument("--task_name", default="imdb", help="with --checkpoint")
    parser.add_argument("--max_seq_length", type=int, default=64, help="with --checkpoint")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/speed_cpu_fp32")
    args = parser.parse_args()
    transformers.logging.set_verbosity_error()
    device = torch.device(args.device)
    if args.checkpoint:
        cells = [lambda b=b: measure_checkpoint(b, args, device) for b in args.batches]
    else:
        cells = [
            lambda n=n, t=t, b=b: measure(n, t, b, args, device)
            for n in args.models
            for t in args.lengths
            for b in args.batches
        ]
    rows = []
    for cell in cells:
        rows.append(cell())
        print(table(rows[-1:]).splitlines()[-1], flush=True)
    machine = (
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
        if device.type == "cpu"
        else torch.cuda.get_device_name()
    )
    title = (
        f"{machine}; torch {torch.__version__}; {args.dtype}; {args.lengths_mode} lengths; medians of {args.repeats}"
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"setting": title, "rows": rows}, indent=2))
    out.with_suffix(".md").write_text(f"{title}\n\n{table(rows)}\n")
    render(rows, out.with_suffix(".png"), title)
    print(f"\n{title}\n\n{table(rows)}")


if __name__ == "__main__":
    main()
