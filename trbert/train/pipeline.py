"""Running one invocation: train a stage, write token scores / teacher logits, evaluate.

What this file is: the glue between the command line (a :class:`trbert.cli.Job`), files
(:mod:`trbert.checkpoint`, :mod:`trbert.outputs`, :mod:`trbert.data`) and the loop
(:mod:`trbert.loop`, :mod:`trbert.inference`). All input is read and checked before the output
directory is touched, so bad input leaves nothing behind; while a run writes, it holds the output
directory's lock.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import random
import sys
from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer

from ..core.policy import BatchUniform, Threshold
from ..errors import InputError, exit_code
from ..store.checkpoint import (
    MANIFEST,
    TRAINED_SELECTORS,
    baseline_digest,
    baseline_of,
    find_artifact,
    has_selectors,
    load_model,
    model_config,
    read_manifest,
    save_checkpoint,
    weights_digest,
)
from ..store.outputs import (
    OutputLock,
    StageFile,
    clean_leftovers,
    load_array,
    read_json,
    replace_run,
    write_json,
    write_results,
)
from ..store.resume import STATE, Saver, fixed_values, read_training_state, resolve, step_checkpoints, step_of
from ..tasks import FAMILIES
from .cli import Job, parse_args
from .data import load_features
from .distributed import World, all_succeed, barrier, setup, teardown
from .health import selector_health, warn_if_untrained
from .inference import EvalSet, evaluate, output_shape, predict, quantized, score_shape, token_scores
from .loop import Validation, train
from .stages import SCORES, STAGES, TEACHER, StepContext, kind_of

logger = logging.getLogger("trbert")


def summary_writer_class():
    """TensorBoard's writer: tensorboardX (a dependency), else torch's own where only TensorBoard is
    installed (as on some GPU images); checked before any work."""
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise InputError(
                "TensorBoard logging needs tensorboardX (a dependency): pip install tensorboardX"
            ) from None
    return SummaryWriter


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_tokenizer(job: Job, path: str):
    options = {"do_lower_case": True} if job.run.do_lower_case else {}
    name = job.run.tokenizer_name or path
    if Path(path).is_dir():
        model_config(path)  # one clear message if the model's config is missing or broken (before the tokenizer)
    try:
        return AutoTokenizer.from_pretrained(name, cache_dir=job.run.cache_dir or None, **options)
    except (OSError, ValueError) as e:
        raise InputError(f"{name}: no tokenizer found ({e})") from None


def make_task(job: Job):
    return FAMILIES[job.family].build(job.task, job.run.task_name, job.train.seed)


def features(job: Job, task, split: str, tokenizer, world: World | None = None):
    """A split's features; under torchrun rank 0 builds the cache while the others wait, then read it."""
    run = job.run

    def load(overwrite: bool):
        cache = run.features_cache_dir or None
        return load_features(task, run.data_dir, split, tokenizer, run.max_seq_length, cache, overwrite)

    if world is None or not world.active:
        return load(run.overwrite_cache)
    if not world.is_main:
        if not all_succeed(True, world):
            raise InputError(f"{task.name} {split}: the features could not be built (rank 0 says why)")
        return load(False)
    try:
        built = load(run.overwrite_cache)
    except BaseException:
        all_succeed(False, world)
        raise
    all_succeed(True, world)
    return built


def eval_set(job: Job, task, tokenizer, world: World | None = None) -> EvalSet:
    split = "test" if job.run.do_test else "dev"
    arrays, _ = features(job, task, split, tokenizer, world)
    return EvalSet(split, arrays, list(task.read(job.run.data_dir, split)))


def model_at(job: Job, task, path: str, world: World, tokenizer=None):
    """The model in ``path`` for ``job``'s task and type, on the rank's device; with ``tokenizer``,
    checked to have an embedding for every token id the tokenizer makes."""
    hub = {"cache_dir": job.run.cache_dir} if job.run.cache_dir else {}
    model = load_model(path, job.run.model_type, task.num_labels, task.head, **hub)
    if tokenizer is not None and len(tokenizer) > model.config.vocab_size:
        raise InputError(
            f"{path}: the tokenizer ({job.run.tokenizer_name or path}) has {len(tokenizer)} tokens, the model "
            f"embeds {model.config.vocab_size}: use the model's own tokenizer"
        )
    old = model.extend_positions(job.run.max_seq_length)
    if old < job.run.max_seq_length:
        logger.info(
            "%s: position embeddings extended from %d to %d (learned ones repeated)", path, old, job.run.max_seq_length
        )
    model.example_dropout = job.train.example_seeded_dropout
    return model.to(world.device)


def policy_for(job: Job):
    """What evaluation runs: the full model for a baseline type, else the threshold (or the
    original's batch-uniform selection)."""
    if kind_of(job.run.model_type) != "auto":
        return None
    return BatchUniform() if job.evaluation.batch_uniform_selection else Threshold()


def check_output_dir(job: Job) -> None:
    """Refuse to overwrite a finished model or an unfinished run's step checkpoints by accident."""
    out, run = Path(job.run.output_dir), job.run
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: a file, not a folder; --output_dir names the folder the model goes into")
    if run.resume_from_checkpoint or run.overwrite_output_dir or not out.is_dir():
        return
    if step_checkpoints(out):
        raise InputError(
            f"{out}: an unfinished run left step checkpoints here: continue it with --resume_from_checkpoint latest,"
            " or start over with --overwrite_output_dir"
        )
    leftovers = {"runs", ".trbert.lock"}  # what a run that failed before its first checkpoint leaves
    if any(p.name not in leftovers and not p.name.startswith((".saving-", "checkpoint-")) for p in out.iterdir()):
        raise InputError(
            f"{out}: output directory is not empty (use --overwrite_output_dir or --resume_from_checkpoint)"
        )


def stage_inputs(job: Job, stage, fingerprint: dict, arrays: dict, model) -> None:
    """Add the stage files this stage reads to ``arrays``, each checked: same dataset, full shape,
    made by the fine-tuned model the starting checkpoint descends from."""
    start = job.run.model_name_or_path
    made_by = baseline_digest(start) or weights_digest(baseline_of(start))  # as recorded when it was made
    for artifact in stage.needs(job.reduction):
        path = getattr(job.run, artifact.path_flag) or find_artifact(start, artifact.filename)
        if not path:
            raise InputError(
                f"{stage.name} needs {artifact.filename}, which is neither next to {start} nor next to its fine-tuned"
                f" baseline; it is made by {artifact.made_by} (or pass --{artifact.path_flag})"
            )
        shape = score_shape(model, arrays) if artifact.key in ("guide", "ranks") else output_shape(model, arrays)
        arrays[artifact.key] = load_array(path, fingerprint, artifact, shape, made_by)


def identity(job: Job, fingerprint: dict) -> dict:
    """What a resumed run must share with the run it continues."""
    configs = (job.run, job.train, job.reduction, job.precision, job.task)
    start = job.run.model_name_or_path
    return {"arguments": fixed_values(*configs), "dataset": fingerprint, "source": weights_digest(start) or start}


def run_training(job: Job, task, world: World) -> None:
    stage, out = STAGES[job.stage], Path(job.run.output_dir)
    SummaryWriter = summary_writer_class()  # noqa: N806
    check_output_dir(job)
    resume = job.run.resume_from_checkpoint
    start = resolve(resume, out) if resume else job.run.model_name_or_path
    tokenizer = load_tokenizer(job, job.run.model_name_or_path)
    model = model_at(job, task, str(start), world, tokenizer)
    arrays, fingerprint = features(job, task, "train", tokenizer, world)
    who = identity(job, fingerprint)
    state = read_training_state(start, {**who, "stage": stage.name, "world_size": world.size}) if resume else None
    stage_inputs(job, stage, fingerprint, arrays, model)
    needs_dev = job.train.evaluate_during_training or job.run.do_eval
    validation = (
        Validation(eval_set(job, task, tokenizer, world), job.evaluation, policy_for(job)) if needs_dev else None
    )
    set_seed(job.train.seed + world.rank)  # ordinary dropout: a different stream per rank
    barrier(world)  # every rank has read and checked its input before anything is written
    with writing(out, world):
        if world.is_main:
            clean_leftovers(out)
            if job.run.overwrite_output_dir and state is None:
                replace_run(out)
        writer = SummaryWriter(str(out / "runs" / stage.name)) if world.is_main else None
        saver = Saver(
            out, tokenizer, job.flags(), stage.name, job.run.model_name_or_path, who, job.train.save_total_limit
        )
        ctx = StepContext(job.train, job.reduction, job.run.max_seq_length, total_steps=0)
        validate = validation if job.train.evaluate_during_training else None
        train(model, task, arrays, stage, ctx, job.precision, world, saver, writer, validate, state)
        if world.is_main:
            writer.close()
            save_checkpoint(model, tokenizer, out, job.flags(), stage.name, job.run.model_name_or_path, fingerprint)
            if stage.trains in ("selectors", "all"):
                health = selector_health(model, with_scores(job, arrays, fingerprint, model), world)
                warn_if_untrained(health, f"{out} ({stage.name})")
                write_json(out / "selector_health.json", health)
        barrier(world)


def with_scores(job: Job, arrays: dict, fingerprint: dict, model) -> dict:
    """The training features with the fine-tuned model's token scores, where they can be found
    (the health report then says how the kept tokens rank by importance)."""
    if "guide" in arrays:
        return arrays
    path = job.run.score_path or find_artifact(job.run.model_name_or_path, SCORES.filename)
    try:
        return (
            {**arrays, "guide": load_array(path, fingerprint, SCORES, score_shape(model, arrays))} if path else arrays
        )
    except InputError:
        return arrays


def writing(folder, world: World):
    """The output directory's lock, held by rank 0 (the only rank that writes) while it writes."""
    return OutputLock(folder) if world.is_main else contextlib.nullcontext()


def write_training_set_output(job: Job, task, world: World, artifact) -> None:
    """``--do_eval_grad`` / ``--do_eval_logits``: per-row outputs of the model in output_dir over the
    training set, streamed by every rank into one file written in dataset order by rank 0."""
    out = Path(job.run.output_dir)
    if not (out / "config.json").is_file():
        raise InputError(f"{out}: no model here; {artifact.made_by[:-22].strip()} reads the model in --output_dir")
    tokenizer = load_tokenizer(job, str(out))
    model = model_at(job, task, str(out), world, tokenizer)
    arrays, fingerprint = features(job, task, "train", tokenizer, world)
    shape = score_shape(model, arrays) if artifact is SCORES else output_shape(model, arrays)
    with writing(out, world):
        if world.is_main:
            clean_leftovers(out)
        sink = StageFile(out / artifact.filename, shape) if world.is_main else None
        try:
            target = sink.array if sink is not None else None
            if artifact is SCORES:
                token_scores(model, task, arrays, job.evaluation, job.precision, world, out=target)
            else:
                predict(model, arrays, None, job.evaluation, job.precision, world, out=target)
        except BaseException:
            if sink is not None:
                sink.discard()
            raise
        if sink is not None:
            # what the rank builder needs: the rows' lengths and, for a shared selection, the selectable prefix
            kept = ("lengths", "question_end") if artifact is SCORES else ()
            extra = {k: np.asarray(arrays[k]).tolist() for k in kept if k in arrays}
            meta = {"dataset": fingerprint, "made_by": artifact.made_by, "model": str(out.resolve())}
            sink.commit({**meta, "model_sha256": weights_digest(out), **extra})
        barrier(world)


def evaluate_checkpoint(job: Job, task, path, world: World) -> dict | None:
    """``eval_results.json`` (and the task's prediction files) of the model in ``path``."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise InputError(
            f"{path}: no model to evaluate (no config.json); --do_eval evaluates the model saved in --output_dir"
        )
    check_selectors(job, path)
    tokenizer = load_tokenizer(job, str(path))
    data = eval_set(job, task, tokenizer, world)
    model = quantized(model_at(job, task, str(path), world, tokenizer), job.evaluation.quantize)
    with writing(path, world):
        if world.is_main:
            clean_leftovers(path)
        report, predictions = evaluate(model, task, data, policy_for(job), job.evaluation, job.precision, world)
        if world.is_main:
            report.update(checkpoint=str(path), evaluated_as=variant(job, path) or "itself")
            if isinstance(policy_for(job), Threshold):
                report["selector_health"] = selector_health(model, data.features, world)
                warn_if_untrained(report["selector_health"], str(path))
            write_results(path, report, predictions, variant(job, path))
            logger.info("%s on %s: %s", path, data.split, ", ".join(f"{k} = {v}" for k, v in report.items()))
    return report


def variant(job: Job, path) -> str:
    """What sets this evaluation apart from the checkpoint's own (its kind, at full precision, on dev):
    the results of another (the full model of a TR-BERT checkpoint, int8, fp16, the batch-uniform
    selection, test) go to their own files, ``eval_results_<variant>.json``, never over another's."""
    trained = read_manifest(path).get("stage") in TRAINED_SELECTORS
    args = Path(path) / "training_args.json"
    made = read_json(args, "training arguments") if args.is_file() else {}

    def precision(p) -> str:
        return "fp16" if p.get("fp16") else "bf16" if p.get("bf16") else "fp32"

    now = precision(dataclasses.asdict(job.precision))
    parts = [
        job.run.model_type if (kind_of(job.run.model_type) == "auto") != trained else "",
        "uniform" if job.evaluation.batch_uniform_selection and trained else "",
        job.evaluation.quantize if job.evaluation.quantize != "none" else "",
        now if now != precision(made) else "",  # the precision it was trained at is its own
        "test" if job.run.do_test else "",
    ]
    return "_".join(p for p in parts if p)


def check_selectors(job: Job, path: Path) -> None:
    """TR-BERT evaluation needs trained selectors; a baseline evaluation ignores them (said once)."""
    stage = read_manifest(path).get("stage")
    untrained = stage == "finetune" or (stage is None and not has_selectors(path))
    if kind_of(job.run.model_type) == "auto" and untrained:
        what = f"a {stage} checkpoint" if stage else "the checkpoint holds none"
        raise InputError(
            f"{path}: its selectors were never trained ({what}): evaluating it with --model_type "
            f"{job.run.model_type} would measure random selections; train them with --train_rl, "
            "or evaluate with --model_type bert / distilbert"
        )
    if kind_of(job.run.model_type) == "plain" and stage in TRAINED_SELECTORS:
        logger.warning(
            "%s: its trained selectors are ignored (--model_type %s runs the full model)", path, job.run.model_type
        )


def run_evaluation(job: Job, task, world: World) -> list[dict]:
    out = Path(job.run.output_dir)
    paths = [out]
    if job.run.eval_all_checkpoints:
        paths += sorted(
            (p for p in out.glob("checkpoint-*") if (p / STATE).is_file() or (p / MANIFEST).is_file()), key=step_of
        )
    reports, broken = [], []
    for path in paths:
        try:
            reports.append(evaluate_checkpoint(job, task, path, world))
        except InputError as e:
            if path == out:
                raise
            logger.error("%s", e)  # a truncated step checkpoint: the others are still evaluated
            broken.append(path.name)
    if broken:
        raise InputError(
            f"{out}: {', '.join(broken)} could not be evaluated (see above); the others' results are written"
        )
    return reports


def run(job: Job) -> list[dict]:
    task = make_task(job)
    world = setup(job.run.no_cuda, job.run.local_rank)
    try:
        set_seed(job.train.seed)
        if job.run.do_train:
            run_training(job, task, world)
        if job.run.do_eval_grad:
            write_training_set_output(job, task, world, SCORES)
        if job.run.do_eval_logits:
            write_training_set_output(job, task, world, TEACHER)
        return run_evaluation(job, task, world) if job.run.do_eval else []
    finally:
        teardown(world)


def setup_logging() -> None:
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S", level=logging.INFO
    )
    for noisy in ("transformers", "httpx", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def main(argv=None, family: str = "classification", prog: str | None = None) -> int:
    """Entry point of every ``run_*.py``: returns 0, or 2 after one clear message on bad input."""
    setup_logging()
    return exit_code(prog or "trbert", lambda: run(parse_args(argv, family, prog)))


if __name__ == "__main__":
    sys.exit(main())
