"""The command line of every entry script, generated from the typed configs, validated on parse.

What this file is: :func:`build_parser` turns the fields of the shared configs
(:mod:`trbert.config`) and of the family's config (:mod:`trbert.tasks`) into the original flags,
with the family's defaults and other spellings; :func:`parse_args` returns a :class:`Job` of typed
configs after :func:`validate`. Only :mod:`trbert.pipeline` and the commands read a Job.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass

from ..config import EvalConfig, Precision, ReductionConfig, RunArgs, TrainConfig
from ..errors import InputError
from ..tasks import family
from .stages import STAGES, kind_of

TYPES = {"int": int, "float": float, "str": str, int: int, float: float, str: str}
SECTIONS = {"run": RunArgs, "train": TrainConfig, "reduction": ReductionConfig, "evaluation": EvalConfig}


@dataclass
class Job:
    """One invocation of an entry script, as typed configs."""

    family: str
    run: RunArgs
    train: TrainConfig
    reduction: ReductionConfig
    evaluation: EvalConfig
    precision: Precision
    task: object  # the family's config

    def flags(self) -> dict:
        """Every flag and its value (written as ``training_args.json`` next to checkpoints)."""
        configs = (self.run, self.train, self.reduction, self.evaluation, self.precision, self.task)
        return {"family": self.family, **{k: v for c in configs for k, v in dataclasses.asdict(c).items()}}

    @property
    def stage(self) -> str:
        """The stage ``--do_train`` runs: train_both > train_rl > train_init > finetune (as the original)."""
        for name in ("train_both", "train_rl", "train_init"):
            if getattr(self.run, name):
                return name
        return "finetune"


def _add(parser: argparse.ArgumentParser, f: dataclasses.Field, defaults: dict, aliases: dict) -> None:
    meta = f.metadata
    default = defaults.get(f.name, f.default)
    names = [f"--{f.name}", *([aliases[f.name]] if f.name in aliases else [])]
    if f.type in (bool, "bool"):
        parser.add_argument(*names, action="store_true", default=default, help=meta.get("help"))
        return
    parser.add_argument(
        *names,
        type=TYPES.get(f.type, TYPES.get(str(f.type).split(" ")[0], str)),
        default=default,
        choices=meta.get("choices"),
        required=bool(meta.get("required")) and f.name not in defaults,
        help=meta.get("help"),
    )


def build_parser(family_name: str = "classification", prog: str | None = None) -> argparse.ArgumentParser:
    chosen = family(family_name)
    parser = argparse.ArgumentParser(prog=prog, description=f"TR-BERT {family_name} pipeline")
    for cls in (RunArgs, TrainConfig, ReductionConfig, EvalConfig, Precision, chosen.config):
        for f in dataclasses.fields(cls):
            _add(parser, f, chosen.defaults, chosen.aliases)
    return parser


def _fill(cls, namespace: argparse.Namespace):
    return cls(**{f.name: getattr(namespace, f.name) for f in dataclasses.fields(cls)})


# integer flags that must be positive (where the script has them)
POSITIVE = (
    "per_gpu_train_batch_size",
    "per_gpu_eval_batch_size",
    "gradient_accumulation_steps",
    "max_seq_length",
    "max_query_length",
    "n_best_size",
    "max_answer_length",
    "max_segment",
    "max_num_answers",
    "max_num_candidates",
    "max_qa_length",
)


def required_inputs(job: Job) -> None:
    """``--data_dir`` and ``--task_name``, unless the family reads a hub dataset (``--dataset_name``)."""
    hub = getattr(job.task, "dataset_name", None)  # None: the family has no such flag
    if hub and job.run.data_dir:
        raise InputError("--data_dir and --dataset_name name two datasets: give one")
    missing = [f"--{name}" for name in ("data_dir", "task_name") if not hub and not getattr(job.run, name)]
    if missing:
        also = " (or --dataset_name)" if hub is not None else ""
        raise InputError(f"the following arguments are required: {', '.join(missing)}{also}")


def validate(job: Job) -> None:
    """Reject combinations the pipeline cannot run, before anything is read or written."""
    run, kind = job.run, kind_of(job.run.model_type)
    required_inputs(job)
    if run.train_rl and run.train_both:
        raise InputError("--train_rl and --train_both are two stages: run them one after the other")
    if run.do_train and kind not in STAGES[job.stage].kinds:
        raise InputError(
            f"{job.stage} needs --model_type {', '.join(STAGES[job.stage].model_types())}, not {run.model_type}"
        )
    if not run.do_train and (run.train_rl or run.train_both or run.train_init):
        raise InputError("--train_rl / --train_both / --train_init go with --do_train")
    for flag in ("do_eval_grad", "do_eval_logits"):
        if getattr(run, flag) and kind != "plain":
            raise InputError(f"--{flag} runs on the fine-tuned baseline: use --model_type bert or distilbert")
    if run.resume_from_checkpoint and not run.do_train:
        raise InputError("--resume_from_checkpoint goes with --do_train")
    if job.train.save_total_limit < 0:
        raise InputError("--save_total_limit must be 0 (keep all) or more")
    if job.reduction.train_teacher and not run.train_both:
        raise InputError("--train_teacher goes with --train_both")
    if not (run.do_train or run.do_eval or run.do_eval_grad or run.do_eval_logits):
        raise InputError("nothing to do: give --do_train, --do_eval, --do_eval_grad or --do_eval_logits")
    if job.precision.fp16 and job.precision.bf16:
        raise InputError("choose one of --fp16 and --bf16")
    if job.train.selector_learning_rate is not None and job.train.selector_learning_rate <= 0:
        raise InputError("--selector_learning_rate must be positive")
    values = job.flags()
    for name in POSITIVE:
        if name in values and values[name] < 1:
            raise InputError(f"--{name} must be at least 1")
    # (WikiHop's --doc_stride is, as in the original, an overlap: 0 and up, any negative value one window)
    if job.family != "wikihop" and "doc_stride" in values and values["doc_stride"] < 1 and values["doc_stride"] != -1:
        raise InputError("--doc_stride must be at least 1, or -1 (windows without overlap)")


def parse_args(argv=None, family_name: str = "classification", prog: str | None = None) -> Job:
    namespace = build_parser(family_name, prog).parse_args(argv)
    namespace.task_name = (namespace.task_name or "").lower()
    configs = {name: _fill(cls, namespace) for name, cls in SECTIONS.items()}
    job = Job(
        family_name, **configs, precision=_fill(Precision, namespace), task=_fill(family(family_name).config, namespace)
    )
    validate(job)
    resolve = family(family_name).resolve
    if resolve is not None:
        job.train, job.reduction = resolve(job.stage, job.train, job.reduction, job.task)
    return job
