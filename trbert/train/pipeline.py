"""Running one invocation (a parsed :class:`~trbert.train.cli.Job`): train a stage, write token scores
/ teacher logits, evaluate. All input is read and checked before the output directory is touched, so
bad input leaves nothing behind; while a run writes, rank 0 holds the output directory's lock.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
from functools import partial
from pathlib import Path

import numpy as np
from transformers import AutoTokenizer, set_seed
from transformers import logging as hf_logging

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
from .loop import plan, train
from .stages import SCORES, STAGES, TEACHER, StepContext, kind_of

logger = logging.getLogger("trbert")


def summary_writer_class():
    """TensorBoard's writer: tensorboardX, else torch's own (some GPU images); checked before any work."""
    for module in ("tensorboardX", "torch.utils.tensorboard"):
        with contextlib.suppress(ImportError):
            return importlib.import_module(module).SummaryWriter
    raise InputError("TensorBoard logging needs tensorboardX (a dependency): pip install tensorboardX")


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
    run, world, built = job.run, world or World(), None
    inputs = (task, run.data_dir, split, tokenizer, run.max_seq_length, run.features_cache_dir or None)
    if world.is_main:
        try:
            built = load_features(*inputs, run.overwrite_cache)
        except BaseException:
            all_succeed(False, world)
            raise
    if not all_succeed(True, world):
        raise InputError(f"{task.name} {split}: the features could not be built (rank 0 says why)")
    return built if world.is_main else load_features(*inputs, False)


def eval_set(job: Job, task, tokenizer, world: World | None = None) -> EvalSet:
    split = "test" if job.run.do_test else "dev"
    return EvalSet(split, features(job, task, split, tokenizer, world)[0], list(task.read(job.run.data_dir, split)))


def model_at(job: Job, task, path: str, world: World, tokenizer=None):
    """The model in ``path`` on the rank's device; with ``tokenizer``, checked to embed every id it makes."""
    hub = {"cache_dir": job.run.cache_dir} if job.run.cache_dir else {}
    model = load_model(path, job.run.model_type, task.num_labels, task.head, **hub)
    if tokenizer is not None and len(tokenizer) > model.config.vocab_size:
        raise InputError(
            f"{path}: the tokenizer ({job.run.tokenizer_name or path}) has {len(tokenizer)} tokens, the model "
            f"embeds {model.config.vocab_size}: use the model's own tokenizer"
        )
    length = job.run.max_seq_length
    if (old := model.extend_positions(length)) < length:
        logger.info("%s: position embeddings extended from %d to %d (learned ones repeated)", path, old, length)
    model.example_dropout = job.train.example_seeded_dropout
    return model.to(world.device)


def policy_for(job: Job):
    """What evaluation runs: the full model for a baseline type, else the threshold (or batch-uniform)."""
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
        arrays[artifact.key] = load_array(path, fingerprint, artifact, shape_of(artifact, model, arrays), made_by)


def shape_of(artifact, model, arrays: dict) -> tuple[int, ...]:
    return output_shape(model, arrays) if artifact is TEACHER else score_shape(model, arrays)


def run_training(job: Job, task, world: World) -> None:
    stage, out, source = STAGES[job.stage], Path(job.run.output_dir), job.run.model_name_or_path
    SummaryWriter = summary_writer_class()  # noqa: N806
    check_output_dir(job)
    resume = job.run.resume_from_checkpoint
    start = resolve(resume, out) if resume else source
    tokenizer = load_tokenizer(job, source)
    model = model_at(job, task, str(start), world, tokenizer)
    arrays, fingerprint = features(job, task, "train", tokenizer, world)
    plan(job.train, len(arrays["lengths"]), world)  # refuses an accumulation no epoch fills, before any write
    configs = (job.run, job.train, job.reduction, job.precision, job.task)  # who: what a resume must share
    who = {"arguments": fixed_values(*configs), "dataset": fingerprint, "source": weights_digest(source) or source}
    state = read_training_state(start, {**who, "stage": stage.name, "world_size": world.size}) if resume else None
    stage_inputs(job, stage, fingerprint, arrays, model)
    during = job.train.evaluate_during_training  # the dev set is read (and checked) now also for --do_eval
    dev = eval_set(job, task, tokenizer, world) if during or job.run.do_eval else None
    validate = partial(evaluate, data=dev, policy=policy_for(job), cfg=job.evaluation) if during else None
    set_seed((job.train.seed + world.rank) % 2**32)  # ordinary dropout: a different stream per rank
    barrier(world)  # every rank has read and checked its input before anything is written
    with locked(out, world):
        if world.is_main and job.run.overwrite_output_dir and state is None:
            replace_run(out)
        writer = SummaryWriter(str(out / "runs" / stage.name)) if world.is_main else None
        saver = Saver(out, tokenizer, job.flags(), stage.name, source, who, job.train.save_total_limit)
        ctx = StepContext(job.train, job.reduction, job.run.max_seq_length, total_steps=0)
        train(model, task, arrays, stage, ctx, job.precision, world, saver, writer, validate, state)
        if world.is_main:
            writer.close()
            save_checkpoint(model, tokenizer, out, job.flags(), stage.name, source, fingerprint)
            if stage.trains in ("selectors", "all"):
                health = selector_health(model, with_scores(job, arrays, fingerprint, model), world)
                warn_if_untrained(health, f"{out} ({stage.name})")
                write_json(out / "selector_health.json", health)
        barrier(world)


def with_scores(job: Job, arrays: dict, fingerprint: dict, model) -> dict:
    """The training features with the fine-tuned model's token scores where found (for the score gap)."""
    path = "guide" not in arrays and (job.run.score_path or find_artifact(job.run.model_name_or_path, SCORES.filename))
    with contextlib.suppress(InputError):  # unreadable: a report without score gaps
        if path:
            return {**arrays, "guide": load_array(path, fingerprint, SCORES, score_shape(model, arrays))}
    return arrays


@contextlib.contextmanager
def locked(folder, world: World):
    """Rank 0, the only rank that writes, holds the output directory's lock and clears leftovers first; where it
    cannot, every rank stops (not only rank 0, which would leave the others waiting in a collective)."""
    with contextlib.ExitStack() as stack:
        refused = None
        try:
            if world.is_main:
                stack.enter_context(OutputLock(folder))
                clean_leftovers(folder)
        except InputError as e:
            refused = e
        if not all_succeed(refused is None, world):
            raise refused or InputError(f"{folder}: rank 0 cannot write there (see its message)")
        yield


def write_training_set_output(job: Job, task, world: World, artifact) -> None:
    """``--do_eval_grad`` / ``--do_eval_logits``: per-row outputs of the model in output_dir over the
    training set, streamed by every rank into one file written in dataset order by rank 0."""
    out = Path(job.run.output_dir)
    if not (out / "config.json").is_file():
        raise InputError(f"{out}: no model here; {artifact.made_by.split(' on ')[0]} reads the model in --output_dir")
    tokenizer = load_tokenizer(job, str(out))
    model = model_at(job, task, str(out), world, tokenizer)
    arrays, fingerprint = features(job, task, "train", tokenizer, world)
    with locked(out, world):
        sink = StageFile(out / artifact.filename, shape_of(artifact, model, arrays)) if world.is_main else None
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
    policy = policy_for(job)
    with locked(path, world):
        report, predictions = evaluate(model, task, data, policy, job.evaluation, job.precision, world)
        if world.is_main:
            name = variant(job, path)
            report.update(checkpoint=str(path), evaluated_as=name or "itself")
            if isinstance(policy, Threshold):
                report["selector_health"] = selector_health(model, data.features, world)
                warn_if_untrained(report["selector_health"], str(path))
            write_results(path, report, predictions, name)
            logger.info("%s on %s: %s", path, data.split, ", ".join(f"{k} = {v}" for k, v in report.items()))
    return report


def variant(job: Job, path) -> str:
    """What sets this evaluation apart from the checkpoint's own (its kind and precision, on dev): others (the
    full model, int8, fp16, batch-uniform, test) go to ``eval_results_<variant>.json``, never over another's."""
    trained = read_manifest(path).get("stage") in TRAINED_SELECTORS
    args = Path(path) / "training_args.json"
    made = read_json(args, "training arguments") if args.is_file() else {}
    now, then = ("fp16" if p.get("fp16") else "bf16" if p.get("bf16") else "fp32" for p in (vars(job.precision), made))
    parts = [
        job.run.model_type if (kind_of(job.run.model_type) == "auto") != trained else "",
        "uniform" if job.evaluation.batch_uniform_selection and trained else "",
        job.evaluation.quantize if job.evaluation.quantize != "none" else "",
        now if now != then else "",  # the precision it was trained at is its own
        "test" if job.run.do_test else "",
    ]
    return "_".join(p for p in parts if p)


def check_selectors(job: Job, path: Path) -> None:
    """TR-BERT evaluation needs trained selectors; a baseline evaluation ignores them (said once)."""
    stage, model_type = read_manifest(path).get("stage"), job.run.model_type
    untrained = stage == "finetune" or (stage is None and not has_selectors(path))
    if kind_of(model_type) == "auto" and untrained:
        what = f"a {stage} checkpoint" if stage else "the checkpoint holds none"
        raise InputError(
            f"{path}: its selectors were never trained ({what}): evaluating it with --model_type {model_type} would"
            " measure random selections; train them with --train_rl, or evaluate with --model_type bert / distilbert"
        )
    if kind_of(model_type) == "plain" and stage in TRAINED_SELECTORS:
        logger.warning("%s: its trained selectors are ignored (--model_type %s runs the full model)", path, model_type)


def run_evaluation(job: Job, task, world: World) -> list[dict]:
    out = Path(job.run.output_dir)
    steps = out.glob("checkpoint-*") if job.run.eval_all_checkpoints else []
    paths = [out, *sorted((p for p in steps if (p / STATE).is_file() or (p / MANIFEST).is_file()), key=step_of)]
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
    task, world = make_task(job), setup(job.run.no_cuda, job.run.local_rank)
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
    hf_logging.disable_progress_bar()


def main(argv=None, family: str = "classification", prog: str | None = None) -> int:
    """Entry point of every ``run_*.py``: returns 0, or 2 after one clear message on bad input."""
    setup_logging()
    return exit_code(prog or "trbert", lambda: run(parse_args(argv, family, prog)))
