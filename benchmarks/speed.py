"""Inference speed of TR-BERT paths against stock BERT (not part of the test suite).

    python benchmarks/speed.py                               # CPU, float32, the full grid
    python benchmarks/speed.py --head span --lengths 384 512 1024   # span QA (residual restore)
    python benchmarks/speed.py --device cuda --dtype bf16    # GPU with autocast

For BERT-base and DistilBERT configs (random weights), a head (``--head``: sequence
classification; span QA with the residual restore; multiple choice, one selection shared by the
4 options of a question), lengths (positions grown past 512 as the models do) and batch sizes,
it times, alternating within every repeat after warm-up, and reports medians of:
  (a) stock   : transformers' model of that head (``Bert``/``DistilBert`` + ``ForSequenceClassification``,
                ``ForQuestionAnswering``, ``ForMultipleChoice``), SDPA, padded;
  (b) original: our model with the original's batched selection (every row keeps the batch's
                largest count), padded tensors;
  (c) unpadded: our model, each example keeps its own tokens, no padding anywhere;
  (d) keep-all: (c) with selectors that keep every token (the overhead of selection).
Peak memory: on CUDA the allocator's peak. On CPU (Linux) the resident memory one call adds
(kernel high-water mark reset before it), each variant in a fresh process of its own after a
small warm-up call: in a process that ran other variants first, glibc's heap keeps the holes they
left and a call re-touches them, which moved the numbers by tens of MiB with the order of the
variants. ``--memory live`` also makes glibc map every block over 128 KiB on its own and unmap it
on free (``MALLOC_MMAP_THRESHOLD_``): the peak of live memory, free of heap fragmentation
(``none``: not measured, saving a call per variant).
Keep schedule: each selector is a fixed random projection thresholded at the median of what it
sees on the benchmark batch: 50% kept after layer 1, 25% after layer n/2 (the same decisions on
every path); the kept counts give the FLOPs speed-up. ``--lengths_mode full``: every row is T
tokens (no input padding); ``mixed``: true lengths vary, FLOPs count them, padded paths pay for
padding. Multiple choice: B questions of 4 rows ``[passage+question | option]``, the option the
last eighth. Writes JSON, Markdown and PNG; ``--append`` merges cells into an existing table (a
grid run in pieces); every row records the load average before and after it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import transformers
from torch import nn

import trbert
from trbert.core.policy import BatchUniform, Threshold
from trbert.errors import InputError
from trbert.tools.plots import require_matplotlib

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the benchmarks' shared helpers

from rss import reset_peak, status_kib  # noqa: E402

MODELS = {"bert-base": "Bert", "distilbert": "DistilBert"}  # stock classes: transformers.<Bert><Head>
HEADS = {"classification": "ForSequenceClassification", "span": "ForQuestionAnswering", "choice": "ForMultipleChoice"}
OPTIONS = 4  # option rows per question (multiple choice)
DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class HalfSelector(nn.Module):
    """Keeps the tokens whose hidden state projects above ``offset`` on a fixed random direction;
    :func:`synthetic_cell` sets ``offset`` to the median of what the selector sees (keep half)."""

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


def build(name: str, head: str, length: int, device):
    """Stock and our model of ``head`` with the same random weights, positions grown to ``length``."""
    family = MODELS[name] + HEADS[head]
    stock_cls, ours_cls = getattr(transformers, family), getattr(trbert, f"TR{family}")  # ours: same weights' names
    config = getattr(transformers, f"{MODELS[name]}Config")(num_labels=2)
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    ours = ours_cls(config).eval()
    ours.extend_positions(length)
    stock = stock_cls(ours.config).eval()
    stock.load_state_dict(ours.state_dict(), strict=False)
    return stock.to(device), ours.to(device)


def make_inputs(head: str, length: int, batch: int, mode: str, device):
    """Token ids, mask and the head's extra inputs; ``mixed``: true lengths uniform in [T/8, T],
    the first example full. Multiple choice: ``[B, 4, T]`` sharing everything before the option."""
    g = torch.Generator().manual_seed(batch)
    lengths = torch.full((batch,), length)
    if mode == "mixed":
        lengths = torch.randint(max(2, length // 8), length + 1, (batch,), generator=g)
        lengths[0] = length
    ids = torch.randint(1000, 20000, (batch, length), generator=g)
    ids[:, 0] = 101
    mask = torch.arange(length)[None, :] < lengths[:, None]
    if head != "choice":
        return ids.to(device), mask.long().to(device), {}
    question_end = lengths - lengths // 8
    options = torch.randint(1000, 20000, (batch, OPTIONS, length), generator=g)
    shared = torch.arange(length)[None, None, :] < question_end[:, None, None]
    ids = torch.where(shared, ids[:, None, :], options)
    mask = mask[:, None, :].expand(-1, OPTIONS, -1).long()
    return ids.to(device), mask.to(device), {"head_inputs": {"question_end": question_end.to(device)}}


def selector_set(model, keep_all: bool = False) -> nn.ModuleList:
    hidden = model.config.hidden_size
    return nn.ModuleList(HalfSelector(hidden, w, keep_all) for w in range(len(model.selectors))).to(model.device)


@dataclass
class Cell:
    """A cell of the grid: models, batches ``[(ids, mask, extra)]``, selector sets (``True``: keep-all), row lengths."""

    name: str
    length: int
    batch: int
    stock: nn.Module
    ours: nn.Module
    inputs: list
    selectors: dict
    lengths: torch.Tensor


def synthetic_cell(name, length, batch, args, device, offsets=None) -> Cell:
    """Random weights and inputs; selector ``w`` keeps half of the tokens that reach it (50% after
    the first, 25% after the second), or takes the ``offsets`` of an earlier calibration."""
    stock, ours = build(name, args.head, length, device)
    ours.attention_kernel = args.attention_kernel
    ids, mask, extra = make_inputs(args.head, length, batch, args.lengths_mode, device)
    ours.selectors = selector_set(ours)
    for w, selector in enumerate(ours.selectors):
        if offsets is None:  # packed: only real tokens are seen
            ours(ids, mask, policy=Threshold(), path="unpadded", **extra)
        selector.offset = float(selector.seen.median()) if offsets is None else offsets[w]
    selectors = {False: ours.selectors, True: selector_set(ours, keep_all=True)}
    return Cell(name, length, batch, stock, ours, [(ids, mask, extra)], selectors, mask.sum(-1).flatten().cpu())


def cpu_peak_mib(fn) -> float | None:
    """Peak resident memory added by one call (Linux): reset the kernel's high-water mark
    (``/proc/self/clear_refs``), run, read ``VmHWM``. None where that is not possible."""
    try:
        before, reset = reset_peak()
    except (OSError, KeyError):
        return None
    if not reset:
        return None
    fn()
    return (status_kib("VmHWM") - before) / 1024


def timed(fn, device):
    """Seconds of one call, on CUDA its peak allocated memory (MiB), and its outputs."""
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    outs = fn()
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start, torch.cuda.max_memory_allocated() / 2**20 if cuda else None, outs


VARIANTS = {  # (stock model, our model, ids, mask, extra inputs of our head) -> outputs
    "stock": lambda stock, ours, ids, mask, extra: stock(input_ids=ids, attention_mask=mask),
    "original": lambda stock, ours, ids, mask, extra: ours(ids, mask, policy=BatchUniform(), **extra),
    "unpadded": lambda stock, ours, ids, mask, extra: ours(ids, mask, policy=Threshold(), path="unpadded", **extra),
    "keep_all": lambda stock, ours, ids, mask, extra: ours(ids, mask, policy=Threshold(), path="unpadded", **extra),
}


def caller(cell: Cell, variant: str, inputs=None):
    def run():
        cell.ours.selectors = cell.selectors[variant == "keep_all"]
        return [VARIANTS[variant](cell.stock, cell.ours, *batch) for batch in inputs or cell.inputs]

    return run


def time_variants(cell: Cell, args, device):
    """Median milliseconds and peak MiB of every variant over all the cell's batches, alternating
    the variants within every repeat; plus the kept counts ``[S, rows]`` of the selection."""
    times, memory, outs = {v: [] for v in VARIANTS}, {v: None for v in VARIANTS}, {}
    autocast = torch.autocast(device.type, dtype=DTYPES[args.dtype], enabled=DTYPES[args.dtype] is not None)
    with torch.inference_mode(), autocast:
        for repeat in range(args.warmup + args.repeats):
            for variant in VARIANTS:
                seconds, peak, outs[variant] = timed(caller(cell, variant), device)
                if repeat >= args.warmup:
                    times[variant].append(seconds)
                    memory[variant] = peak if memory[variant] is None else max(memory[variant], peak)
    # a selector skipped for lack of tokens (only [CLS] left) keeps the previous count
    last = range(len(cell.selectors[False]))
    per_batch = [[o.kept[min(w, len(o.kept) - 1)].flatten().cpu() for w in last] for o in outs["unpadded"]]
    kept = torch.stack([torch.cat(column) for column in zip(*per_batch, strict=True)])
    return {v: 1000 * statistics.median(t) for v, t in times.items()}, memory, kept


def cpu_peaks(cell: Cell, args) -> dict:
    """Each variant's peak (see the module docstring), measured by this script in a child process of its own."""
    offsets = [s.offset for s in cell.selectors[False]] if not args.checkpoint else None
    child = [sys.executable, __file__, "--memory_child", json.dumps(offsets), "--batches", str(cell.batch)]
    child += ["--head", args.head, "--lengths_mode", args.lengths_mode, "--dtype", args.dtype]
    child += ["--attention_kernel", args.attention_kernel]
    if args.checkpoint:
        child += ["--checkpoint", args.checkpoint, "--data_dir", args.data_dir, "--task_name", args.task_name]
        child += ["--max_seq_length", str(args.max_seq_length)]
    else:
        child += ["--models", cell.name, "--lengths", str(cell.length)]
    env = {**os.environ, **({"MALLOC_MMAP_THRESHOLD_": str(128 * 1024)} if args.memory == "live" else {})}
    peaks = {}
    for variant in VARIANTS:
        done = subprocess.run([*child, "--variant", variant], env=env, capture_output=True, text=True, check=True)
        peaks[variant] = json.loads(done.stdout.splitlines()[-1])
    return peaks


def memory_child(cell: Cell, args) -> None:
    """In the child: a small warm-up call (kernels, caches), then the measured call, of one variant."""
    ids, mask, extra = cell.inputs[0]
    small = {k: {n: v[:1].clamp(max=24) for n, v in h.items()} for k, h in extra.items()}
    autocast = torch.autocast("cpu", dtype=DTYPES[args.dtype], enabled=DTYPES[args.dtype] is not None)
    with torch.inference_mode(), autocast:
        caller(cell, args.variant, [(ids[:1, ..., :32], mask[:1, ..., :32], small)])()
        print(json.dumps(cpu_peak_mib(caller(cell, args.variant))))


def summarize(cell: Cell, kept, ms, memory, load) -> dict:
    counter = trbert.FlopsCounter.from_config(cell.ours.config)
    lengths = cell.lengths
    flops_speedup = float(counter.full(lengths).sum() / counter.reduced(lengths, kept).sum())
    row = {
        "load": [load, os.getloadavg()[0]],  # 1-minute load average before and after the cell
        "model": cell.name,
        "length": cell.length,
        "batch": cell.batch,
        "kept_fraction": [float((k.float() / lengths).mean()) for k in kept],
        "flops_speedup": flops_speedup,
        "ms": ms,
        "examples_per_s": {v: 1000 * len(lengths) / t for v, t in ms.items()},
        "peak_mib": memory,
        "speedup": {v: ms["stock"] / t for v, t in ms.items() if v != "stock"},
    }
    row["measured_over_flops"] = {v: s / flops_speedup for v, s in row["speedup"].items() if v != "keep_all"}
    return row


def measure(make_cell, args, device) -> dict:
    load, cell = os.getloadavg()[0], make_cell()
    ms, memory, kept = time_variants(cell, args, device)
    cpu = device.type == "cpu" and args.memory != "none"
    return summarize(cell, kept, ms, cpu_peaks(cell, args) if cpu else memory, load)


def checkpoint_cell(batch, args, device, offsets=None) -> Cell:
    """A trained TR-BERT checkpoint on its task's dev set in dataset order (batches trimmed to
    their longest example): real selections and lengths."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from trbert.store.checkpoint import backbone_of, load_model
    from trbert.tasks import get_task
    from trbert.train.data import batches, load_features

    task = get_task(args.task_name)
    model_type = "distil" * (backbone_of(args.checkpoint) == "distilbert") + "autobert"
    ours = load_model(args.checkpoint, model_type, task.num_labels).eval().to(device)
    ours.attention_kernel = args.attention_kernel
    stock = AutoModelForSequenceClassification.from_pretrained(args.checkpoint, attn_implementation="sdpa")
    tokenizer = AutoTokenizer.from_pretrained(args.checkpoint)
    arrays, _ = load_features(task, args.data_dir, "dev", tokenizer, args.max_seq_length)
    inputs = [(b["input_ids"].to(device), b["attention_mask"].long().to(device), {}) for b in batches(arrays, batch)]
    selectors = {False: ours.selectors, True: selector_set(ours, keep_all=True)}
    lengths = torch.from_numpy(arrays["lengths"]).long()
    name = f"trained {Path(args.checkpoint).name}"
    return Cell(name, args.max_seq_length, batch, stock.eval().to(device), ours, inputs, selectors, lengths)


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
    ax.set_ylabel("speed-up over stock (SDPA, padded)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)


def _mib(peaks: dict | None) -> str:
    return " / ".join(
        "n/a" if not peaks or peaks[v] is None else f"{peaks[v]:.0f}" for v in ("stock", "unpadded", "keep_all")
    )


def table(rows: list[dict]) -> str:
    head = "| model | T | B | kept | FLOPs x | stock ms | original ms | unpadded ms | keep-all ms | original x | unpadded x | unpadded / FLOPs | keep-all overhead | ex/s stock | ex/s unpadded | peak MiB stock / unpadded / keep-all | load |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        ms, sp = r["ms"], r["speedup"]
        lines.append(
            f"| {r['model']} | {r['length']} | {r['batch']} | {', '.join(f'{k:.2f}' for k in r['kept_fraction'])} "
            f"| {r['flops_speedup']:.2f} | {ms['stock']:.1f} | {ms['original']:.1f} | {ms['unpadded']:.1f} | {ms['keep_all']:.1f} "
            f"| {sp['original']:.2f} | {sp['unpadded']:.2f} | {r['measured_over_flops']['unpadded']:.2f} "
            f"| {100 * (ms['keep_all'] / ms['stock'] - 1):+.1f}% | {r['examples_per_s']['stock']:.1f} "
            f"| {r['examples_per_s']['unpadded']:.1f} | {_mib(r['peak_mib'])} | {' / '.join(f'{x:.1f}' for x in r.get('load', []))} |"
        )
    return "\n".join(lines)


def default_out(args) -> str:
    head = "" if args.head == "classification" or args.checkpoint else f"_{args.head}"
    mixed = "_mixed" if args.lengths_mode == "mixed" else ""
    return f"benchmarks/results/speed_{torch.device(args.device).type}_{args.dtype}{head}{mixed}"


def merge(old: list[dict], new: list[dict]) -> list[dict]:
    """The rows of an earlier run with ``new`` added; a new cell replaces an old one of the same
    (model, T, B). Sorted by model, T, B."""
    cells = {(r["model"], r["length"], r["batch"]): r for r in [*old, *new]}
    return [cells[k] for k in sorted(cells)]


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32", choices=sorted(DTYPES))
    parser.add_argument("--head", default="classification", choices=list(HEADS))
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--lengths", nargs="+", type=int, default=[128, 512])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8, 32])
    modes = "full: every row T tokens; mixed: true lengths uniform in [T/8, T], padded to T"
    parser.add_argument("--lengths_mode", default="full", choices=["full", "mixed"], help=modes)
    parser.add_argument("--checkpoint", help="a trained TR-BERT checkpoint: time it on its dev set instead")
    parser.add_argument("--data_dir", help="with --checkpoint: the task's data directory")
    parser.add_argument("--task_name", default="imdb", help="with --checkpoint")
    parser.add_argument("--max_seq_length", type=int, default=64, help="with --checkpoint")
    parser.add_argument(
        "--attention_kernel",
        default="auto",
        choices=["auto", "padded", "jagged", "varlen"],
        help="of the unpadded path",
    )
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", help="output stem; default benchmarks/results/speed_<device>_<dtype>[_<head>][_mixed]")
    parser.add_argument("--append", action="store_true", help="merge the cells into the table at --out")
    parser.add_argument(
        "--memory", default="rss", choices=["rss", "live", "none"], help="CPU peak: glibc as is, live memory, none"
    )
    parser.add_argument("--memory_child", help=argparse.SUPPRESS)  # selector offsets (JSON): a peak-memory child
    parser.add_argument("--variant", choices=list(VARIANTS), help=argparse.SUPPRESS)  # ...and its variant
    return parser.parse_args()


def main():
    args = arguments()
    if args.memory_child is None:
        try:  # before the first timing, not after the last
            require_matplotlib()
        except InputError as error:
            sys.exit(str(error))
    transformers.logging.set_verbosity_error()
    device = torch.device(args.device)
    if args.checkpoint:
        cells = [lambda b=b, o=None: checkpoint_cell(b, args, device, o) for b in args.batches]
    else:
        grid = [(n, t, b) for n in args.models for t in args.lengths for b in args.batches]
        cells = [lambda c=c, o=None: synthetic_cell(*c, args, device, o) for c in grid]
    if args.memory_child is not None:
        return memory_child(cells[0](o=json.loads(args.memory_child)), args)
    out = Path(args.out or default_out(args))
    rows = []
    for make_cell in cells:
        rows.append(measure(make_cell, args, device))
        print(table(rows[-1:]).splitlines()[-1], flush=True)
    if args.append and out.with_suffix(".json").is_file():
        rows = merge(json.loads(out.with_suffix(".json").read_text())["rows"], rows)
    cpu = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    machine = cpu if device.type == "cpu" else torch.cuda.get_device_name()
    head = "" if args.checkpoint else f"{args.head} head; "
    memory = f"; CPU peak memory: {args.memory}" if device.type == "cpu" else ""
    title = f"{machine}; torch {torch.__version__}; {head}{args.dtype}; {args.lengths_mode} lengths; medians of {args.repeats}{memory}"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"setting": title, "rows": rows}, indent=2))
    out.with_suffix(".md").write_text(f"{title}\n\n{table(rows)}\n")
    render(rows, out.with_suffix(".png"), title)
    print(f"\n{title}\n\n{table(rows)}")


if __name__ == "__main__":
    main()
