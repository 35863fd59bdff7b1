"""Running one invocation: train a stage, write token scores / teacher logits, evaluate.

What this file is: the glue between flags (:mod:`trbert.cli`), files (:mod:`trbert.checkpoint`,
:mod:`trbert.data`) and the loop (:mod:`trbert.loop`). All input is read and checked before the
output directory is touched, so bad input leaves nothing behind.
"""

from __future__ import annotations

import logging
import random
import sys
from pathlib import Path

import numpy as np
import torch
from tensorboardX import SummaryWriter
from transformers import AutoTokenizer

from .checkpoint import check_rows, find_artifact, load_array, load_model, save_array, save_checkpoint, write_json
from .cli import parse_args
from .data import load_features
from .distributed import World, barrier, broadcast_parameters, rng_states, setup, teardown
from .errors import InputError, exit_code
from .loop import evaluate, teacher_logits, token_scores, train
from .resume import prune, read_training_state, resolve, step_of, write_training_state
from .stages import SCORES, TEACHER, model_kind, needed_artifacts, training_stage
from .tasks import make_task

logger = logging.getLogger("trbert")


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_tokenizer(args, path: str):
    options = {"do_lower_case": True} if args.do_lower_case else {}
    try:
        return AutoTokenizer.from_pretrained(args.tokenizer_name or path, cache_dir=args.cache_dir or None, **options)
    except (OSError, ValueError) as e:
        raise InputError(f"{args.tokenizer_name or path}: no tokenizer found ({e})") from None


def _features(args, task, split, tokenizer):
    return load_features(
        task,
        args.data_dir,
        split,
        tokenizer,
        args.max_seq_length,
        args.features_cache_dir or None,
        args.overwrite_cache,
    )


def _model(args, task, path, world: World):
    hub = {"cache_dir": args.cache_dir} if args.cache_dir else {}
    model = load_model(path, args.model_type, task.num_labels, task.family, task.head, **hub)
    old = model.extend_positions(args.max_seq_length)
    if old < args.max_seq_length:
        logger.info(
            "%s: position embeddings extended from %d to %d (learned ones repeated)", path, old, args.max_seq_length
        )
    model.example_dropout = args.example_seeded_dropout
    return model.to(world.device)


def _resume_state(args, stage, out: Path, world: World):
    """The step checkpoint ``--resume_from_checkpoint`` names and its checked state (or ``None, None``)."""
    if not args.resume_from_checkpoint:
        if out.is_dir() and any(out.iterdir()) and not args.overwrite_output_dir:
            raise InputError(
                f"{out}: output directory is not empty (use --overwrite_output_dir or --resume_from_checkpoint)"
            )
        return None, None
    folder = resolve(args.resume_from_checkpoint, out)
    return folder, read_training_state(folder, args, stage.name, world.size)


def run_training(args, task, world: World) -> None:
    stage = training_stage(args)
    out = Path(args.output_dir)
    resume_dir, state = _resume_state(args, stage, out, world)
    model = _model(args, task, str(resume_dir or args.model_name_or_path), world)
    tokenizer = load_tokenizer(args, args.model_name_or_path)
    arrays, fingerprint = _features(args, task, "train", tokenizer)
    for artifact in needed_artifacts(stage, args):
        path = getattr(args, artifact.path_flag) or find_artifact(args.model_name_or_path, artifact.filename)
        if not path:
            raise InputError(
                f"{stage.name} needs {artifact.filename}, which is neither next to {args.model_name_or_path} nor next to "
                f"its fine-tuned baseline; it is made by {artifact.made_by} (or pass --{artifact.path_flag})"
            )
        array = load_array(path, fingerprint, artifact.filename, artifact.made_by)
        check_rows(array, len(arrays["lengths"]), path, artifact.filename)
        arrays[artifact.key] = array
    broadcast_parameters(model, world)
    set_seed(args.seed + world.rank)  # ordinary dropout: a different stream per rank
    barrier(world)  # every rank has read and checked its input before anything is written
    writer = SummaryWriter(str(out / "runs" / stage.name)) if world.is_main else None
    settings = vars(args)

    def save_step(position, optimization) -> None:
        rng = rng_states(world)  # a collective: every rank takes part
        path = out / f"checkpoint-{position.step}"
        if world.is_main:

            def state(folder):
                write_training_state(folder, position, optimization, rng, args, stage.name, world.size)

            save_checkpoint(model, tokenizer, path, settings, stage.name, args.model_name_or_path, extra=state)
            prune(out, args.save_total_limit)
        barrier(world)
        if args.evaluate_during_training:
            results = evaluate_checkpoint(args, task, path, world, model=model)
            if writer is not None:
                for key in ("acc", "f1", "mflops", "flops_speedup"):
                    if isinstance(results.get(key), float):
                        writer.add_scalar(f"eval/{key}", results[key], position.step)
            model.train()

    train(args, model, task, arrays, stage, world, writer, save_step, resume=state)
    if world.is_main:
        writer.close()
        save_checkpoint(model, tokenizer, out, settings, stage.name, args.model_name_or_path)
    barrier(world)


def write_training_set_output(args, task, world: World, artifact) -> None:
    """``--do_eval_grad`` / ``--do_eval_logits``: per-row outputs of the model in output_dir,
    computed by every rank on its share and written once, in dataset order, by rank 0."""
    model = _model(args, task, args.output_dir, world)
    tokenizer = load_tokenizer(args, args.output_dir)
    arrays, fingerprint = _features(args, task, "train", tokenizer)
    if artifact is SCORES:
        array = token_scores(args, model, task, arrays, world)
        extra = {"lengths": arrays["lengths"].tolist()}
    else:
        array, extra = teacher_logits(args, model, arrays, world), {}
    meta = {"dataset": fingerprint, "made_by": artifact.made_by, "model": str(Path(args.output_dir).resolve()), **extra}
    if world.is_main:
        save_array(Path(args.output_dir) / artifact.filename, array, meta)
    barrier(world)


def selection_for(args) -> str:
    if model_kind(args.model_type) != "auto":
        return "off"
    return "uniform" if args.batch_uniform_selection else "threshold"


def evaluate_checkpoint(args, task, path, world: World, model=None) -> dict:
    split = "test" if args.do_test else "dev"
    tokenizer = load_tokenizer(args, str(path))
    arrays, _ = _features(args, task, split, tokenizer)
    model = model if model is not None else _model(args, task, str(path), world)
    results = evaluate(args, model, task, arrays, selection_for(args), world, split)
    results["checkpoint"] = str(path)
    results["split"] = split
    files = results.pop("_files", {})
    if world.is_main:
        for name, content in files.items():  # predictions in the official formats
            write_json(Path(path) / name, content)
        write_json(Path(path) / "eval_results.json", results)
    logger.info("%s on %s: %s", path, split, ", ".join(f"{k} = {v}" for k, v in results.items() if k != "checkpoint"))
    return results


def run_evaluation(args, task, world: World) -> list[dict]:
    out = Path(args.output_dir)
    paths = [out]
    if args.eval_all_checkpoints:
        paths += sorted(out.glob("checkpoint-*"), key=step_of)
    return [evaluate_checkpoint(args, task, p, world) for p in paths if (p / "config.json").is_file() or p == out]


def run(args) -> list[dict]:
    task = make_task(args, args.family)
    world = setup(args.no_cuda, args.local_rank)
    try:
        set_seed(args.seed)
        if args.do_train:
            run_training(args, task, world)
        if args.do_eval_grad:
            write_training_set_output(args, task, world, SCORES)
        if args.do_eval_logits:
            write_training_set_output(args, task, world, TEACHER)
        return run_evaluation(args, task, world) if args.do_eval else []
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
