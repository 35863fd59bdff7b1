"""The command line of every entry script, parsed once into a typed :class:`Job`, checked on parse;
:meth:`Job.updated` makes further stages' jobs by flag name (a command never builds a command line).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass, field

import torch

from ..config import EvalConfig, Precision, ReductionConfig, RunArgs, TrainConfig
from ..core.packed import HAS_VARLEN
from ..errors import InputError
from ..tasks import family
from .stages import STAGES, kind_of

SECTIONS = {"run": RunArgs, "train": TrainConfig, "reduction": ReductionConfig, "evaluation": EvalConfig,
            "precision": Precision}  # fmt: skip
SEED_RANGE = 2**32  # numpy's and torch's seeds


@dataclass
class Job:
    """One invocation of an entry script, as typed configs (``task``: the family's own flags)."""

    family: str
    run: RunArgs
    train: TrainConfig
    reduction: ReductionConfig
    evaluation: EvalConfig
    precision: Precision
    task: object
    unresolved: tuple[str, ...] = field(default=(), repr=False)  # flags the family resolves per stage

    def configs(self) -> dict:
        return {name: getattr(self, name) for name in (*SECTIONS, "task")}

    def flags(self) -> dict:
        """Every flag and its value (written as ``training_args.json`` next to checkpoints)."""
        values = {k: v for c in self.configs().values() for k, v in dataclasses.asdict(c).items()}
        return {"family": self.family, **values}

    @property
    def stage(self) -> str:
        """The stage ``--do_train`` runs: train_both > train_rl > train_init > finetune (as the original)."""
        return next((name for name in ("train_both", "train_rl", "train_init") if getattr(self.run, name)), "finetune")

    def command_line(self) -> str:
        """The entry-script flags that differ from their defaults: the command a user would type (logs)."""
        defaults = family(self.family).defaults
        values = [(f, getattr(c, f.name)) for c in self.configs().values() for f in dataclasses.fields(c)]
        changed = [(f.name, v) for f, v in values if v is not None and v != defaults.get(f.name, f.default)]
        return " ".join(f"--{name}" if v is True else f"--{name} {v}" for name, v in changed)

    def updated(self, **values) -> Job:
        """This job with the flags ``values`` (by name) changed, checked and resolved as a parsed one."""
        names = {f.name: section for section, c in self.configs().items() for f in dataclasses.fields(c)}
        if unknown := sorted(set(values) - set(names)):
            raise InputError(f"{', '.join('--' + n for n in unknown)}: not a flag of the {self.family} scripts")
        changes: dict[str, dict] = {}
        for name, value in ({name: None for name in self.unresolved} | values).items():  # unresolved: resolved anew
            changes.setdefault(names[name], {})[name] = value
        sections = {s: dataclasses.replace(getattr(self, s), **v) for s, v in changes.items()}
        unresolved = tuple(n for n in self.unresolved if n not in values)  # a value given now is kept from now on
        return _checked(dataclasses.replace(self, **sections, unresolved=unresolved))


def add_fields(parser, cls, defaults: dict | None = None, aliases: dict | None = None, given=(), suppress=False):
    """The fields of dataclass ``cls`` as flags of the same names. ``defaults``: other defaults;
    ``given``: fields the caller supplies (never required); ``suppress``: only flags given appear."""
    defaults, aliases = defaults or {}, aliases or {}
    for f in dataclasses.fields(cls):
        meta, names = f.metadata, [f"--{f.name}", *([aliases[f.name]] if f.name in aliases else [])]
        shared = dict(default=argparse.SUPPRESS if suppress else defaults.get(f.name, f.default), help=meta.get("help"))
        if f.type in (bool, "bool"):
            parser.add_argument(*names, action="store_true", **shared)
            continue
        kind = f.type.__name__ if isinstance(f.type, type) else str(f.type)  # int, or "int" (postponed)
        many = kind.startswith("list[")
        parse = {"int": int, "float": float}.get(kind[5:-1] if many else kind, str)
        required = bool(meta.get("required")) and f.name not in defaults and f.name not in given and not suppress
        parser.add_argument(
            *names, type=parse, nargs="*" if many else None, choices=meta.get("choices"), required=required, **shared
        )


def build_parser(family_name: str = "classification", prog: str | None = None, given=(), suppress=False):
    chosen = family(family_name)
    parser = argparse.ArgumentParser(prog=prog, description=f"TR-BERT {family_name} pipeline")
    for cls in (*SECTIONS.values(), chosen.config):
        add_fields(parser, cls, chosen.defaults, chosen.aliases, given, suppress)
    return parser


# the flags that choose what a run does: refused by the commands that run their own stages (tradeoff, show)
RUN_FLAGS = ("do_train", "do_eval_grad", "do_eval_logits", "train_rl", "train_both", "train_teacher", "train_init",
             "overwrite_output_dir", "resume_from_checkpoint")  # fmt: skip


def parse_args(argv=None, family_name: str = "classification", prog: str | None = None, given=None, reserved=()) -> Job:
    """An entry script's command line as a checked Job; ``given``: flags the caller supplies itself
    (a command's: its model and output folder) and ``reserved`` flags it sets later, refused on its command line."""
    given, chosen = given or {}, family(family_name)
    namespace = build_parser(family_name, prog, given).parse_args(argv)
    shared = {f.name: f.default for cls in SECTIONS.values() for f in dataclasses.fields(cls)}
    if clash := sorted(
        n for n in {*given, *reserved} if getattr(namespace, n) != chosen.defaults.get(n, shared.get(n))
    ):
        raise InputError(f"{prog or family_name}: {', '.join('--' + n for n in clash)} is set by the command itself")
    vars(namespace).update(given)
    namespace.task_name = (namespace.task_name or "").lower()
    configs = {name: _fill(cls, namespace) for name, cls in (*SECTIONS.items(), ("task", chosen.config))}
    unresolved = tuple(n for n, v in vars(namespace).items() if v is None and n in chosen.defaults)
    return _checked(Job(family_name, **configs, unresolved=unresolved))


def _fill(cls, namespace: argparse.Namespace):
    return cls(**{f.name: getattr(namespace, f.name) for f in dataclasses.fields(cls)})


def parse_overrides(tokens: list[str], family_name: str, where: str) -> dict:
    """A fragment of entry-script flags (e.g. ``--selector_learning_rate 1e-3``) as ``{flag: value}``."""
    try:
        namespace, rest = build_parser(family_name, where, suppress=True).parse_known_args(tokens)
    except SystemExit:
        raise InputError(f"{where}: {' '.join(tokens)!r} holds a flag of the wrong form (see above)") from None
    if rest:
        raise InputError(f"{where}: not flags of the {family_name} scripts: {' '.join(rest)}")
    return vars(namespace)


def _checked(job: Job) -> Job:
    """Validated, then the family's stage-dependent defaults filled in."""
    validate(job)
    if (resolve := family(job.family).resolve) is not None:
        job.train, job.reduction = resolve(job.stage, job.train, job.reduction, job.task)
    numbers(job)
    return job


# integer flags that must be positive (where the script has them)
POSITIVE = ("per_gpu_train_batch_size", "per_gpu_eval_batch_size", "gradient_accumulation_steps", "max_seq_length",
            "max_query_length", "n_best_size", "max_answer_length", "max_segment", "max_num_answers",
            "max_num_candidates", "max_qa_length")  # fmt: skip


def validate(job: Job) -> None:
    """Reject combinations the pipeline cannot run, before anything is read or written."""
    run, kind = job.run, kind_of(job.run.model_type)
    # --data_dir and --task_name are required unless the family reads a hub dataset (--dataset_name)
    hub = getattr(job.task, "dataset_name", None)  # None: the family has no such flag
    missing = ", ".join(f"--{name}" for name in ("data_dir", "task_name") if not hub and not getattr(run, name))
    also = " (or --dataset_name)" if hub is not None else ""
    cuda = torch.cuda.is_available() and not run.no_cuda
    rules = [
        (hub and run.data_dir, "--data_dir and --dataset_name name two datasets: give one"),
        (missing, f"the following arguments are required: {missing}{also}"),
        (run.train_rl and run.train_both, "--train_rl and --train_both are two stages: run them one after the other"),
        (not run.do_train and (run.train_rl or run.train_both or run.train_init),
         "--train_rl / --train_both / --train_init go with --do_train"),
        ((run.do_eval_grad or run.do_eval_logits) and kind != "plain",
         "--do_eval_grad / --do_eval_logits run on the fine-tuned baseline: use --model_type bert or distilbert"),
        (run.resume_from_checkpoint and not run.do_train, "--resume_from_checkpoint goes with --do_train"),
        (job.reduction.train_teacher and not run.train_both, "--train_teacher goes with --train_both"),
        (not (run.do_train or run.do_eval or run.do_eval_grad or run.do_eval_logits),
         "nothing to do: give --do_train, --do_eval, --do_eval_grad or --do_eval_logits"),
        (job.precision.fp16 and job.precision.bf16, "choose one of --fp16 and --bf16"),
        (job.evaluation.quantize != "none" and (run.do_train or run.do_eval_grad or run.do_eval_logits),
         "--quantize int8 is for --do_eval alone (training and the stage files run the float model)"),
        (job.evaluation.quantize != "none" and (job.precision.fp16 or job.precision.bf16),
         "--quantize int8 runs float32 activations: drop --fp16 / --bf16"),
        (job.evaluation.quantize != "none" and cuda, "--quantize int8 runs on the CPU: add --no_cuda"),
        (job.evaluation.attention_kernel == "varlen" and not (cuda and HAS_VARLEN and (job.precision.fp16 or job.precision.bf16)),
         "--attention_kernel varlen runs on CUDA in --fp16 / --bf16 (torch >= 2.9): use auto or padded here"),
        (run.do_train and kind not in STAGES[job.stage].kinds,
         f"{job.stage} needs --model_type {', '.join(STAGES[job.stage].model_types())}, not {run.model_type}"),
    ]  # fmt: skip
    _refuse(message for broken, message in rules if broken)


def numbers(job: Job) -> None:
    """Every numeric flag in its range (after the family filled in its defaults)."""
    train, reduction = job.train, job.reduction
    inert = {f.name for c in job.configs().values() for f in dataclasses.fields(c) if f.metadata.get("inert")}
    values = {k: v for k, v in job.flags().items() if k not in inert}  # inert flags are never checked
    _refuse(f"--{name} must be at least 1" for name in POSITIVE if name in values and values[name] < 1)
    floats = {k: v for k, v in values.items() if isinstance(v, float)}
    _refuse(f"--{k} {v}: must be a finite number" for k, v in floats.items() if not math.isfinite(v))
    shortest = family(job.family).min_length(job.task)
    rules = [
        (train.learning_rate > 0, "--learning_rate must be positive"),
        (train.selector_learning_rate is None or train.selector_learning_rate > 0,
         "--selector_learning_rate must be positive"),
        (train.max_steps > 0 or train.num_train_epochs >= 1,
         "--num_train_epochs must be at least 1 (whole epochs are run), or give --max_steps"),
        (0 <= train.seed < SEED_RANGE, f"--seed must lie in 0..{SEED_RANGE - 1}"),
        (train.save_total_limit >= 0, "--save_total_limit must be 0 (keep all) or more"),
        (train.weight_decay >= 0 and train.adam_epsilon > 0 and train.max_grad_norm > 0,
         "--weight_decay must be 0 or more, --adam_epsilon and --max_grad_norm positive"),
        (reduction.alpha >= 0, "--alpha (the length penalty) must be 0 or more"),
        (0 <= reduction.guide_rate <= 1, "--guide_rate is a fraction of the steps: 0 to 1"),
        (reduction.temperature > 0, "--temperature must be positive"),
        (reduction.beta >= 0, "--beta must be 0 or more"),
        (job.run.max_seq_length >= shortest,
         f"--max_seq_length {job.run.max_seq_length} is too short for the {job.family} inputs (at least {shortest})"),
        # (WikiHop's --doc_stride is, as in the original, an overlap: 0 and up, any negative value one window)
        (job.family == "wikihop" or values.get("doc_stride", 1) >= 1 or values["doc_stride"] == -1,
         "--doc_stride must be at least 1, or -1 (windows without overlap)"),
    ]  # fmt: skip
    _refuse(message for holds, message in rules if not holds)


def _refuse(messages) -> None:
    """Raise the first of ``messages`` (what is wrong), if any."""
    for message in messages:
        raise InputError(message)
