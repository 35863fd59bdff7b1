"""``python -m trbert tradeoff``: is TR-BERT worth it? The accuracy–cost curve against simple baselines.

From a fine-tuned model, its task and data: (1) TR-BERT points, per length penalty α the README's
stages (selector RL, then joint training with distillation) through the entry scripts' pipeline,
one checkpoint per α (a finished one of the same flags, data and baseline is reused); (2)
training-free baselines on the fine-tuned model at each point's cost: head truncation (FLOPs
matched), random drop and attention top-k (TR-BERT's token counts per example and selector layer);
(3) every point through the ``--do_eval`` path, timed against the full model, alternating. Writes
``tradeoff.json``, ``tradeoff.md`` and ``tradeoff.png`` (drawn by :mod:`.plots`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shlex
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..config import option
from ..core.flops import FlopsCounter, mflops
from ..core.policy import Counted, Policy, Threshold
from ..core.seeding import example_seeds
from ..errors import InputError
from ..store.checkpoint import REDUCTION_TYPE, backbone_of, find_artifact, read_manifest, weights_digest
from ..store.outputs import atomic_write, read_json, write_json
from ..store.resume import fixed_values
from ..tasks import family
from ..train.cli import RUN_FLAGS, Job, parse_args, parse_overrides
from ..train.distributed import progress, setup
from ..train.inference import full_macs, predict, report
from ..train.pipeline import eval_set, features, load_tokenizer, make_task, model_at, run
from ..train.stages import SCORES, TEACHER
from . import ModelCommand
from .plots import plot_tradeoff, require_matplotlib

logger = logging.getLogger(__name__)


@dataclass
class Point:
    """One point of the curve."""

    method: str  # full, tr-bert, truncation, random, attention
    setting: str  # alpha=1, k=48, ...
    metric: float
    mflops: float
    flops_speedup: float
    kept_fraction: list[float] = field(default_factory=list)
    metric_std: float = 0.0  # over seeds (random drop)
    speedup: dict[str, float] = field(default_factory=dict)  # measured, by batch size


@dataclass
class TradeoffOptions(ModelCommand):
    """``python -m trbert tradeoff``'s own flags (``--model_dir``: the fine-tuned baseline, whose stage
    files are made if missing); the entry script's flags (task, data, length...) follow."""

    output_dir: str = option(help="the folder the command writes (one TR-BERT model per alpha, the curve)",
                             required=True)  # fmt: skip
    alphas: list[float] = option((0.5, 1.0, 2.0, 4.0), "length penalties")
    seeds: int = option(3, "seeds of the random-drop baseline")
    timing_batches: list[int] = option((1, 64), "batch sizes timed")
    timing_examples: int = option(200, "dev examples timed per point")
    timing_repeats: int = option(3, "timed passes per point and batch size (median)")
    rl: str = option("", 'extra flags of the --train_rl runs, e.g. "--selector_learning_rate 1e-3"')
    joint: str = option("", 'extra flags of the --train_both runs, e.g. "--max_steps 150"')


@dataclass
class Sweep:
    """A sweep: its options and the evaluation job of the fine-tuned model (its task, data, length
    ...); every stage's job is that one, updated (``rl``/``joint``: flags of the two stages)."""

    options: TradeoffOptions
    job: Job
    rl: dict = field(default_factory=dict)
    joint: dict = field(default_factory=dict)


def fine_tuned(model_dir: Path, head: str) -> None:
    """Refuse, before anything is written, a model that is not a fine-tuned baseline for ``head``."""
    stage = read_manifest(model_dir).get("stage")
    if stage == "finetune":
        return
    if stage:
        raise InputError(f"{model_dir}: a {stage} checkpoint; tradeoff starts from the fine-tuned baseline")
    wanted = {"classification": "ForSequenceClassification", "span": "ForQuestionAnswering"}.get(head, "-")
    architectures = read_json(model_dir / "config.json", "model config").get("architectures") or []
    if not any(a.endswith(wanted) for a in architectures):
        raise InputError(f"{model_dir}: not a fine-tuned {head} model ({', '.join(architectures) or 'no head'}): "
                         "fine-tune it first (--do_train --model_type bert)")  # fmt: skip


def _reusable(job: Job, baseline: str | None, dataset: dict) -> bool:
    """A finished point is reused only when its stage, every flag that shapes training (those a resume keeps), its
    training data, the weights it started from and those of the fine-tuned model it descends from match; else it is
    trained again."""
    folder = Path(job.run.output_dir)
    manifest = read_manifest(folder)
    if manifest.get("stage") != job.stage:
        return False
    made = read_json(folder / "training_args.json", "training arguments")
    inputs = {k: getattr(job.run, k) for k in ("score_path", "teacher_npy_path", "rank_path")}  # stage files given
    now = json.loads(json.dumps(fixed_values(*job.configs().values()) | inputs, default=str))
    why = [f"--{k}" for k in sorted(now) if made.get(k) != now[k]]
    why += ["the training data"] * (manifest.get("dataset") != dataset)
    why += ["the fine-tuned model's weights"] * (manifest.get("baseline_sha256") != baseline)
    why += ["the starting model's weights"] * (
        manifest.get("source_sha256") != weights_digest(job.run.model_name_or_path)
    )
    if why:
        logger.info("%s: trained again (%s differ from the sweep's)", folder, ", ".join(why))
    return not why


def train_points(sweep: Sweep) -> dict[float, Path]:
    """Stage files of the fine-tuned model (made if missing), then RL and joint training per α; every
    job is checked before the first runs."""
    job, base = sweep.job, sweep.job.run.model_name_or_path
    auto = REDUCTION_TYPE[job.run.model_type]
    plan = {}
    for alpha in sweep.options.alphas:
        rl, both = (str(Path(sweep.options.output_dir) / f"alpha_{alpha:g}" / name) for name in ("rl", "both"))
        common = dict(model_type=auto, alpha=alpha, do_train=True, do_eval=False, overwrite_output_dir=True)
        plan[alpha] = [
            job.updated(**common, model_name_or_path=base, output_dir=rl, train_rl=True, **sweep.rl),
            job.updated(**common, model_name_or_path=rl, output_dir=both, train_both=True, train_teacher=True,
                        **sweep.joint),
        ]  # fmt: skip
    missing = {flag: True for flag, art in (("do_eval_grad", SCORES), ("do_eval_logits", TEACHER))
               if not find_artifact(base, art.filename)}  # fmt: skip
    if missing:
        run(job.updated(do_eval=False, **missing))
    _, dataset = features(job, make_task(job), "train", load_tokenizer(job, base))
    baseline = weights_digest(base)
    for stages in plan.values():
        for stage in stages:
            if not _reusable(stage, baseline, dataset):
                run(stage)
    return {alpha: Path(stages[-1].run.output_dir) for alpha, stages in plan.items()}


def truncated(features: dict, k: int, sep_id: int) -> dict:
    """Every row cut to its first ``k`` tokens, the last of them replaced by [SEP] where a row was
    cut (what a shorter ``--max_seq_length`` gives); cut positions leave the answer candidates."""
    out = {**features, "lengths": np.minimum(features["lengths"], k)}
    cut = np.asarray(features["lengths"]) > k
    ids = np.array(features["input_ids"])
    ids[..., k:] = 0
    ids[..., k - 1] = np.where(cut, sep_id, ids[..., k - 1])
    out["input_ids"] = ids
    for name in ("offsets", "origin"):  # character spans / words of the text tokens: none past the cut
        if name in features:
            out[name] = np.array(features[name])
            out[name][..., k - 1 :, :] = -1
    if "sent_starts" in features:  # HotpotQA sentences that do not end before the cut are gone
        gone = np.asarray(features["sent_ends"]) >= k - 1
        for name in ("sent_starts", "sent_ends"):
            out[name] = np.where(gone, -1, features[name])
    return out


def matching_length(counter: FlopsCounter, lengths: np.ndarray, target: float) -> int:
    """The ``k`` whose truncated inputs (every window cut to ``k`` tokens) cost the full model
    closest to ``target`` MACs per example; ``lengths [N]`` or ``[N, S]`` windows."""

    def cost(k: int) -> float:
        return float(np.mean(full_macs(counter, np.minimum(lengths, k))))

    lo, hi = 2, int(lengths.max())
    while lo < hi:  # the largest k at most the target
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if cost(mid) <= target else (lo, mid - 1)
    return min((lo, lo + 1), key=lambda k: abs(cost(k) - target))


class CountedDrop(Policy):
    """A training-free baseline over a split: row ``i`` keeps ``counts[i]`` tokens at each selector
    layer (``[N, (S,) selectors]``), at random (seeded per example from ``seed``) or by attention."""

    packable, runs_selectors = True, False

    def __init__(self, score: str, counts: np.ndarray, seed: int = 0):
        self.name, self.counts, self.seed = score, counts, seed

    def for_batch(self, batch: dict) -> Counted:
        counts = torch.as_tensor(self.counts[batch["index"].cpu().numpy()], device=batch["input_ids"].device)
        return Counted(counts, self.name, example_seeds(self.seed, 0, batch["index"]))


class Bench:
    """The dev set, the fine-tuned model and its cost, for evaluating and timing configurations."""

    def __init__(self, sweep: Sweep):
        self.sweep, self.opts, self.job = sweep, sweep.options, sweep.job
        base = self.job.run.model_name_or_path
        self.task, self.world = make_task(self.job), setup(self.job.run.no_cuda)
        tokenizer = load_tokenizer(self.job, base)
        self.data, self.sep = eval_set(self.job, self.task, tokenizer), tokenizer.sep_token_id
        self.full = model_at(self.job, self.task, base, self.world, tokenizer)
        self.counter = FlopsCounter.from_config(self.full.config)
        self.full_mflops = mflops(full_macs(self.counter, self.data.features["lengths"]))
        self.config = dataclasses.replace(self.job.evaluation, per_gpu_eval_batch_size=64)

    def model(self, folder: Path):
        auto = self.job.updated(model_type=REDUCTION_TYPE[self.job.run.model_type])
        return model_at(auto, self.task, str(folder), self.world)

    def evaluate(self, model, policy, features: dict):
        """``(report, per-example kept counts [N, (S,) selectors])`` of one configuration."""
        data = dataclasses.replace(self.data, features=features)
        pred = predict(model, features, policy, self.config, self.job.precision, self.world)
        result, _ = report(model, self.task, data, pred, policy, self.config, self.world)
        return result, np.moveaxis(pred.kept, 0, -1)

    def timing(self, model, policy, features: dict) -> dict[str, float]:
        """Measured speed-up over the full model at each timing batch size: model times on the
        first ``timing_examples`` rows, the two models alternating, median of ``timing_repeats`` ratios."""
        rows = np.arange(min(self.opts.timing_examples, len(features["lengths"])))
        runs = [(self.full, self.data.features, None), (model, features, policy)]
        runs = [(net, {k: np.asarray(v)[rows] for k, v in arrays.items()}, chosen) for net, arrays, chosen in runs]
        out = {}
        for size in self.opts.timing_batches:
            config, times = dataclasses.replace(self.config, per_gpu_eval_batch_size=size), ([], [])
            for repeat in range(self.opts.timing_repeats + 1):  # the first pass warms up, untimed
                for (net, arrays, chosen), spent in zip(runs, times, strict=True):
                    seconds = predict(net, arrays, chosen, config, self.job.precision, self.world).seconds
                    spent += [seconds] if repeat else []
            out[str(size)] = float(statistics.median(times[0]) / max(statistics.median(times[1]), 1e-9))
        return out

    def point(self, method: str, setting: str, model, policies: list, features: dict):
        """Evaluate (one run per policy: the seeds of random drop), time, and log one point (the full
        model is the time reference: its speed-up is 1 by definition)."""
        runs = [self.evaluate(model, policy, features) for policy in policies]
        metric, first = [r[self.task.metric] for r, _ in runs], runs[0][0]
        full = {str(b): 1.0 for b in self.opts.timing_batches}
        speedup = full if method == "full" else self.timing(model, policies[0], features)
        # the FLOPs speed-up is against the full model on the whole inputs
        point = Point(method, setting, float(np.mean(metric)), first["mflops"], self.full_mflops / first["mflops"],
                      first["kept_fraction"], float(np.std(metric)), speedup)  # fmt: skip
        measured = ", ".join(f"b{k} {v:.2f}x" for k, v in speedup.items())
        cost = f"{point.flops_speedup:.2f}x FLOPs, measured {measured}"
        logger.info("%s %s: %s %.4f, %s", method, setting, self.task.metric, point.metric, cost)
        return point, runs[0][1]


def curve(sweep: Sweep, checkpoints: dict[float, Path]) -> list[Point]:
    """Every point: the full model, TR-BERT per α, and the baselines at each TR-BERT point's cost."""
    bench = Bench(sweep)
    features = bench.data.features
    full, _ = bench.point("full", "-", bench.full, [None], features)
    points = [full]
    for alpha, folder in progress(list(checkpoints.items()), "trade-off points"):
        model = bench.model(folder)
        tr, kept = bench.point("tr-bert", f"alpha={alpha:g}", model, [Threshold()], features)
        lengths = np.asarray(features["lengths"])
        k = matching_length(bench.counter, lengths, np.mean(full_macs(bench.counter, lengths)) / tr.flops_speedup)
        same = f"as alpha={alpha:g}"
        randoms = [CountedDrop("random", kept, seed) for seed in range(sweep.options.seeds)]
        points += [
            tr,
            bench.point("truncation", f"k={k}", bench.full, [None], truncated(features, k, bench.sep))[0],
            bench.point("random", same, bench.full, randoms, features)[0],
            bench.point("attention", same, bench.full, [CountedDrop("attention", kept)], features)[0],
        ]
    return points


def table(points: list[Point], metric: str) -> str:
    """The points as a markdown table."""
    batches = sorted({b for p in points for b in p.speedup}, key=int)
    head = ["method", "setting", metric, "MFLOPs", "FLOPs speed-up", "kept per selector"]
    head += [f"measured speed-up, batch {b}" for b in batches]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for p in points:
        value = f"{p.metric:.4f}" + (f" ± {p.metric_std:.4f}" if p.metric_std else "")
        kept = ", ".join(f"{k:.3f}" for k in p.kept_fraction) or "-"
        cells = [p.method, p.setting, value, f"{p.mflops:.1f}", f"{p.flops_speedup:.2f}x", kept]
        lines.append("| " + " | ".join(cells + [f"{p.speedup.get(b, float('nan')):.2f}x" for b in batches]) + " |")
    return "\n".join(lines) + "\n"


def write(sweep: Sweep, points: list[Point], metric: str, title: str) -> None:
    out = Path(sweep.options.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    points_ = [dataclasses.asdict(p) for p in points]
    payload = {"metric": metric, "title": title, "alphas": list(sweep.options.alphas), "points": points_}
    write_json(out / "tradeoff.json", payload)
    atomic_write(out / "tradeoff.md", lambda f: f.write(f"# {title}\n\n{table(points, metric)}".encode()))
    plot_tradeoff(payload, out / "tradeoff.png")
    logger.info("wrote %s/tradeoff.{json,md,png}", out)


def main(opts: TradeoffOptions, rest: list[str]) -> list[Point]:
    """Run a sweep: ``opts`` the command's own flags, ``rest`` the entry script's flags, parsed once."""
    model_dir, out = Path(opts.model_dir), Path(opts.output_dir)
    checks = [
        (family(opts.family).curve, f"the {opts.family} family has no accuracy-cost curve (several rows per example)"),
        (opts.alphas, "--alphas is empty: give at least one length penalty"),
        (len({f"{a:g}" for a in opts.alphas}) == len(opts.alphas), "--alphas: two values name one folder (alpha_<%g>)"),
        *((getattr(opts, f) >= 1, f"--{f} {getattr(opts, f)}: must be at least 1")
          for f in ("seeds", "timing_examples", "timing_repeats")),
        (opts.timing_batches and min(opts.timing_batches) >= 1, "--timing_batches: give batch sizes of at least 1"),
        ((model_dir / "config.json").is_file(), f"{model_dir}: no fine-tuned model here (config.json missing)"),
        (out.is_dir() or not out.exists(), f"{out}: a file, not a folder; --output_dir names the sweep's folder"),
    ]  # fmt: skip
    for holds, message in checks:
        if not holds:
            raise InputError(f"tradeoff: {message}")
    require_matplotlib()
    where = f"tradeoff ({opts.family})"
    given = dict(model_type=backbone_of(model_dir), model_name_or_path=str(model_dir), output_dir=str(model_dir))
    job = parse_args(rest, opts.family, where, given={**given, "do_eval": True}, reserved=(*RUN_FLAGS, "alpha"))
    fine_tuned(model_dir, make_task(job).head)
    stages = {name: parse_overrides(shlex.split(getattr(opts, name)), opts.family, f"{where} --{name}")
              for name in ("rl", "joint")}  # fmt: skip
    own = sorted({*stages["rl"], *stages["joint"]} & {*given, *RUN_FLAGS, "alpha", "do_eval"})
    if own:
        raise InputError(f"{where}: --rl / --joint: {', '.join('--' + n for n in own)} is set by the sweep itself")
    sweep, task = Sweep(opts, job, **stages), make_task(job)
    points = curve(sweep, train_points(sweep))
    write(sweep, points, task.metric, f"TR-BERT trade-off: {task.name}")
    return points
