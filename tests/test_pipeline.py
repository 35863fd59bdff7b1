"""Every stage of the original README, in order, through run_classification.py; and bad input."""

import json
import runpy
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def script(name: str, *argv) -> int:
    """Run a root entry script in-process, as ``python name argv...``; returns its exit code."""
    old = sys.argv
    sys.argv = [name, *map(str, argv)]
    try:
        with pytest.raises(SystemExit) as done:
            runpy.run_path(str(ROOT / name), run_name="__main__")
    finally:
        sys.argv = old
    return done.value.code


COMMON = (
    "--task_name imdb --data_dir {data} --max_seq_length 32 --per_gpu_train_batch_size 8 --per_gpu_eval_batch_size 8"
    " --num_train_epochs 1 --logging_steps 2 --learning_rate 1e-3"
)


def every_stage(script_name: str, flags: str, tmp_path, data, lm, rl_flags: str, joint_flags: str):
    """Copy ``data``, run the six stages of an entry script in order with ``flags``; returns the
    paths (``bert``, ``rl``, ``both``) and the TR-BERT and baseline ``eval_results.json``."""
    p = {"data": tmp_path / "data", "lm": lm, "cache": tmp_path / "cache"}
    shutil.copytree(data, p["data"])
    p.update({n: tmp_path / n for n in ("bert", "rl", "both")})
    common = (
        "--data_dir {data} --per_gpu_train_batch_size 8 --per_gpu_eval_batch_size 8 --num_train_epochs 1"
        " --logging_steps 2 --learning_rate 1e-3 --features_cache_dir {cache} " + flags
    )
    for command in (
        "--model_type bert --model_name_or_path {lm} --output_dir {bert} --do_train",
        "--model_type bert --model_name_or_path {bert} --output_dir {bert} --do_eval_grad --do_eval_logits",
        "--model_type autobert --model_name_or_path {bert} --output_dir {rl} --do_train --train_rl " + rl_flags,
        "--model_type autobert --model_name_or_path {rl} --output_dir {both} --do_train --train_both " + joint_flags,
        "--model_type autobert --model_name_or_path {both} --output_dir {both} --do_eval",
        "--model_type bert --model_name_or_path {bert} --output_dir {bert} --do_eval",
    ):
        assert script(script_name, *f"{common} {command}".format(**p).split()) == 0, command
    tr, full = (json.loads((p[k] / "eval_results.json").read_text()) for k in ("both", "bert"))
    assert tr["mflops"] < tr["full_model_mflops"] == full["mflops"] and len(tr["kept_fraction"]) == 2
    return p, tr, full


def stage(command: str, **paths) -> int:
    """``run_classification.py`` with the common flags and ``command`` (``{name}`` = ``paths[name]``)."""
    return script("run_classification.py", *f"{COMMON} {command}".format(**paths).split())


@pytest.mark.parametrize("precision", ["", "--bf16"])
def test_the_whole_pipeline_in_order(tmp_path, imdb_dir, tiny_bert_dir, precision):
    """Every stage in order (in float32, and under bfloat16 autocast on the CPU)."""

    def run(command: str, **paths) -> int:
        return stage(f"{command} {precision}", **paths)

    p = {"data": imdb_dir, "lm": tiny_bert_dir}
    p.update({n: tmp_path / n for n in ("bert", "bert_init", "auto_rl", "auto_both")})
    bert, rl, both = p["bert"], p["auto_rl"], p["auto_both"]
    assert run("--model_type bert --model_name_or_path {lm} --output_dir {bert} --do_train", **p) == 0
    assert (bert / "model.safetensors").is_file() and (bert / "training_args.json").is_file()
    assert json.loads((bert / "trbert_stage.json").read_text())["stage"] == "finetune"

    assert run("--model_type bert --model_name_or_path {bert} --output_dir {bert} --do_eval_grad", **p) == 0
    scores = np.load(bert / "token_scores.npy", allow_pickle=False)
    assert scores.shape == (48, 2, 32) and scores.dtype == np.float32 and scores.max() > 0

    assert script("trans_imdb_rank.py", "--model_dir", bert) == 0
    assert np.load(bert / "token_ranks.npy").shape == (48, 2, 32)
    assert (
        run("--model_type initbert --model_name_or_path {bert} --output_dir {bert_init} --do_train --train_init", **p)
        == 0
    )

    rl_command = "--do_train --train_rl --alpha 1 --guide_rate 0.5 --save_steps 3"
    assert run("--model_type autobert --model_name_or_path {bert_init} --output_dir {auto_rl} " + rl_command, **p) == 0
    assert (rl / "checkpoint-3" / "model.safetensors").is_file()
    assert json.loads((rl / "trbert_stage.json").read_text())["baseline"] == str(bert.resolve())

    assert run("--model_type bert --model_name_or_path {bert} --output_dir {bert} --do_eval_logits", **p) == 0
    assert np.load(bert / "teacher_logits.npy").shape == (48, 2)

    joint = "--do_train --train_both --train_teacher --alpha 1"
    assert run("--model_type autobert --model_name_or_path {auto_rl} --output_dir {auto_both} " + joint, **p) == 0
    assert (both / "runs" / "train_both").is_dir()  # TensorBoard scalars

    evaluate = "--model_type autobert --model_name_or_path {auto_both} --output_dir {auto_both} --do_eval"
    assert run(evaluate + " --per_gpu_eval_batch_size 1", **p) == 0
    assert run("--model_type bert --model_name_or_path {bert} --output_dir {bert} --do_eval", **p) == 0
    tr = json.loads((both / "eval_results.json").read_text())
    full = json.loads((bert / "eval_results.json").read_text())
    assert 0 <= tr["acc"] <= 1 and tr["examples"] == 16 and len(tr["kept_fraction"]) == 2
    assert tr["mflops"] < tr["full_model_mflops"] == full["mflops"] and tr["flops_speedup"] > 1

    every = "--do_eval --eval_all_checkpoints --batch_uniform_selection"
    assert run("--model_type autobert --model_name_or_path {auto_rl} --output_dir {auto_rl} " + every, **p) == 0
    assert json.loads((rl / "checkpoint-3" / "eval_results_uniform.json").read_text())["selection"] == "uniform"


def test_distilbert_stages(tmp_path, imdb_dir, tiny_distilbert_dir):
    p = {"data": imdb_dir, "lm": tiny_distilbert_dir, "base": tmp_path / "distilbert", "rl": tmp_path / "distil_rl"}
    assert stage("--model_type distilbert --model_name_or_path {lm} --output_dir {base} --do_train", **p) == 0
    assert stage("--model_type distilbert --model_name_or_path {base} --output_dir {base} --do_eval_grad", **p) == 0
    rl = "--model_type distilautobert --model_name_or_path {base} --output_dir {rl} --do_train --train_rl"
    assert stage(rl, **p) == 0
    assert stage("--model_type distilautobert --model_name_or_path {rl} --output_dir {rl} --do_eval --bf16", **p) == 0
    assert json.loads((p["rl"] / "eval_results_bf16.json").read_text())["flops_speedup"] > 1  # trained in fp32


@pytest.fixture(scope="module")
def baseline(tmp_path_factory, tiny_bert_dir):
    """A fine-tuned tiny baseline, shared by the bad-input tests."""
    root = tmp_path_factory.mktemp("baseline")
    data = root / "imdb"
    data.mkdir()
    for split in ("train", "dev"):
        (data / f"{split}.jsonl").write_text((ROOT / "tests" / "fixtures" / "imdb" / f"{split}.jsonl").read_text())
    bert = root / "bert"
    command = "--model_type bert --model_name_or_path {lm} --output_dir {bert} --do_train --max_steps 1"
    assert stage(command, data=data, lm=tiny_bert_dir, bert=bert) == 0
    return data, bert


def _refused(capsys, message: str, command: str, **paths):
    """The command exits with 2, says ``message`` on stderr without a traceback, writes nothing."""
    assert stage(command + " --output_dir {out}", **paths) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not paths["out"].exists(), "nothing may be written on bad input"


# fmt: off
BAD_INPUT = [
    # (message expected on stderr, data directory: the fixture's or an empty one, arguments)
    ("unknown --task_name", "data", "--task_name sst9 --model_type bert --model_name_or_path {bert} --do_train"),
    ("train.jsonl: data file not found", "empty", "--model_type bert --model_name_or_path {bert} --do_train"),
    ("made by --do_eval_grad", "data", "--model_type autobert --model_name_or_path {bert} --do_train --train_rl"),
    ("train_rl needs --model_type autobert, distilautobert", "data", "--model_type bert --model_name_or_path {bert} --do_train --train_rl"),
    ("made by --do_eval_logits", "data", "--model_type autobert --model_name_or_path {bert} --do_train --train_both --train_teacher"),
    ("not a usable model checkpoint", "data", "--model_type bert --model_name_or_path {empty} --do_train"),
]
# fmt: on


@pytest.mark.parametrize("message,data,command", BAD_INPUT)
def test_bad_input_is_refused_before_anything_is_written(tmp_path, capsys, baseline, message, data, command):
    paths = {"empty": tmp_path, "bert": baseline[1], "out": tmp_path / "out"}
    _refused(capsys, message, command, data=baseline[0] if data == "data" else tmp_path, **paths)


def test_stage_files_from_another_dataset_are_refused(tmp_path, capsys, baseline):
    p = {"data": baseline[0], "bert": tmp_path / "bert", "wrong": tmp_path / "wrong.npy", "out": tmp_path / "out"}
    shutil.copytree(baseline[1], p["bert"])
    assert stage("--model_type bert --model_name_or_path {bert} --output_dir {bert} --do_eval_grad", **p) == 0
    np.save(p["wrong"], np.zeros((5, 2, 32), dtype=np.float32))
    rl = "--model_type autobert --model_name_or_path {bert} --do_train --train_rl"
    _refused(
        capsys, "wrong.npy: token_scores.npy has 5 rows but the training set has 48", rl + " --score_path {wrong}", **p
    )
    # the COMMON length is 32; a later --max_seq_length wins
    _refused(capsys, "made for another dataset (max_seq_length differs", rl + " --max_seq_length 24", **p)


def test_a_full_output_directory_is_not_overwritten(capsys, baseline):
    data, bert = baseline
    before = sorted(p.name for p in bert.iterdir())
    assert (
        stage("--model_type bert --model_name_or_path {bert} --output_dir {bert} --do_train", data=data, bert=bert) == 2
    )
    assert "not empty" in capsys.readouterr().err
    assert sorted(p.name for p in bert.iterdir()) == before
