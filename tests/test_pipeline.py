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


def classify(data, *argv) -> int:
    common = [
        "--task_name",
        "imdb",
        "--data_dir",
        data,
        "--max_seq_length",
        "32",
        "--per_gpu_train_batch_size",
        "8",
        "--per_gpu_eval_batch_size",
        "8",
        "--num_train_epochs",
        "1",
        "--logging_steps",
        "2",
        "--learning_rate",
        "1e-3",
    ]
    return script("run_classification.py", *common, *argv)


def test_the_whole_pipeline_in_order(tmp_path, imdb_dir, tiny_bert_dir):
    bert, init, rl, both = (tmp_path / n for n in ("bert", "bert_init", "auto_rl", "auto_both"))
    assert (
        classify(
            imdb_dir, "--model_type", "bert", "--model_name_or_path", tiny_bert_dir, "--output_dir", bert, "--do_train"
        )
        == 0
    )
    assert (bert / "model.safetensors").is_file() and (bert / "training_args.json").is_file()
    assert json.loads((bert / "trbert_stage.json").read_text())["stage"] == "finetune"

    assert (
        classify(imdb_dir, "--model_type", "bert", "--model_name_or_path", bert, "--output_dir", bert, "--do_eval_grad")
        == 0
    )
    scores = np.load(bert / "token_scores.npy", allow_pickle=False)
    assert scores.shape == (48, 2, 32) and scores.dtype == np.float32 and scores.max() > 0

    assert script("trans_imdb_rank.py", "--model_dir", bert) == 0
    assert np.load(bert / "token_ranks.npy").shape == (48, 2, 32)
    assert (
        classify(
            imdb_dir,
            "--model_type",
            "initbert",
            "--model_name_or_path",
            bert,
            "--output_dir",
            init,
            "--do_train",
            "--train_init",
        )
        == 0
    )

    assert (
        classify(
            imdb_dir,
            "--model_type",
            "autobert",
            "--model_name_or_path",
            init,
            "--output_dir",
            rl,
            "--do_train",
            "--train_rl",
            "--alpha",
            "1",
            "--guide_rate",
            "0.5",
            "--save_steps",
            "3",
        )
        == 0
    )
    assert (rl / "checkpoint-3" / "model.safetensors").is_file()
    assert json.loads((rl / "trbert_stage.json").read_text())["baseline"] == str(bert.resolve())

    assert (
        classify(
            imdb_dir, "--model_type", "bert", "--model_name_or_path", bert, "--output_dir", bert, "--do_eval_logits"
        )
        == 0
    )
    assert np.load(bert / "teacher_logits.npy").shape == (48, 2)

    assert (
        classify(
            imdb_dir,
            "--model_type",
            "autobert",
            "--model_name_or_path",
            rl,
            "--output_dir",
            both,
            "--do_train",
            "--train_both",
            "--train_teacher",
            "--alpha",
            "1",
        )
        == 0
    )
    assert (both / "runs" / "train_both").is_dir()  # TensorBoard scalars

    assert (
        classify(
            imdb_dir,
            "--model_type",
            "autobert",
            "--model_name_or_path",
            both,
            "--output_dir",
            both,
            "--do_eval",
            "--per_gpu_eval_batch_size",
            "1",
        )
        == 0
    )
    assert (
        classify(imdb_dir, "--model_type", "bert", "--model_name_or_path", bert, "--output_dir", bert, "--do_eval") == 0
    )
    tr = json.loads((both / "eval_results.json").read_text())
    full = json.loads((bert / "eval_results.json").read_text())
    assert 0 <= tr["acc"] <= 1 and tr["examples"] == 16 and len(tr["kept_fraction"]) == 2
    assert tr["mflops"] < tr["full_model_mflops"] == full["mflops"] and tr["flops_speedup"] > 1

    assert (
        classify(
            imdb_dir,
            "--model_type",
            "autobert",
            "--model_name_or_path",
            rl,
            "--output_dir",
            rl,
            "--do_eval",
            "--eval_all_checkpoints",
            "--batch_uniform_selection",
        )
        == 0
    )
    assert json.loads((rl / "checkpoint-3" / "eval_results.json").read_text())["selection"] == "uniform"


def test_distilbert_stages(tmp_path, imdb_dir, tiny_distilbert_dir):
    base, rl = tmp_path / "distilbert", tmp_path / "distil_rl"
    run = lambda *a: classify(imdb_dir, *a)  # noqa: E731
    assert (
        run(
            "--model_type",
            "distilbert",
            "--model_name_or_path",
            tiny_distilbert_dir,
            "--output_dir",
            base,
            "--do_train",
        )
        == 0
    )
    assert run("--model_type", "distilbert", "--model_name_or_path", base, "--output_dir", base, "--do_eval_grad") == 0
    assert (
        run(
            "--model_type",
            "distilautobert",
            "--model_name_or_path",
            base,
            "--output_dir",
            rl,
            "--do_train",
            "--train_rl",
        )
        == 0
    )
    assert (
        run("--model_type", "distilautobert", "--model_name_or_path", rl, "--output_dir", rl, "--do_eval", "--bf16")
        == 0
    )
    assert json.loads((rl / "eval_results.json").read_text())["flops_speedup"] > 1


@pytest.fixture(scope="module")
def baseline(tmp_path_factory, tiny_bert_dir):
    """A fine-tuned tiny baseline with token scores, shared by the bad-input tests."""
    root = tmp_path_factory.mktemp("baseline")
    data = root / "imdb"
    data.mkdir()
    for split in ("train", "dev"):
        (data / f"{split}.jsonl").write_text((ROOT / "tests" / "fixtures" / "imdb" / f"{split}.jsonl").read_text())
    bert = root / "bert"
    assert (
        classify(
            data,
            "--model_type",
            "bert",
            "--model_name_or_path",
            tiny_bert_dir,
            "--output_dir",
            bert,
            "--do_train",
            "--max_steps",
            "1",
        )
        == 0
    )
    return data, bert


def _refused(capsys, out: Path, message: str, data, *argv):
    assert classify(data, "--output_dir", out, *argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists(), "nothing may be written on bad input"


BAD_INPUT = [
    # (message expected on stderr, data directory ("data" or "empty"), arguments; {bert} = the baseline)
    ("unknown --task_name", "data", "--task_name sst9 --model_type bert --model_name_or_path {bert} --do_train"),
    ("train.jsonl: data file not found", "empty", "--model_type bert --model_name_or_path {bert} --do_train"),
    ("made by --do_eval_grad", "data", "--model_type autobert --model_name_or_path {bert} --do_train --train_rl"),
    (
        "train_rl needs --model_type autobert, distilautobert",
        "data",
        "--model_type bert --model_name_or_path {bert} --do_train --train_rl",
    ),
    (
        "made by --do_eval_logits",
        "data",
        "--model_type autobert --model_name_or_path {bert} --do_train --train_both --train_teacher",
    ),
    ("not a model checkpoint", "data", "--model_type bert --model_name_or_path {empty} --do_train"),
]


@pytest.mark.parametrize("message,data,argv", BAD_INPUT)
def test_bad_input_is_refused_before_anything_is_written(tmp_path, capsys, baseline, message, data, argv):
    dirs = {"data": baseline[0], "empty": tmp_path, "bert": baseline[1]}
    _refused(capsys, tmp_path / "out", message, dirs[data], *argv.format(**dirs).split())


def test_stage_files_from_another_dataset_are_refused(tmp_path, capsys, baseline):
    data, bert = baseline[0], tmp_path / "bert"
    shutil.copytree(baseline[1], bert)
    assert (
        classify(data, "--model_type", "bert", "--model_name_or_path", bert, "--output_dir", bert, "--do_eval_grad")
        == 0
    )
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((5, 2, 32), dtype=np.float32))
    _refused(
        capsys,
        tmp_path / "out",
        "wrong.npy: token_scores.npy has 5 rows but the training set has 48",
        data,
        "--model_type",
        "autobert",
        "--model_name_or_path",
        bert,
        "--do_train",
        "--train_rl",
        "--score_path",
        wrong,
    )
    _refused(
        capsys,
        tmp_path / "out",
        "made for another dataset (max_seq_length differs",
        data,
        "--max_seq_length",
        "24",
        "--model_type",
        "autobert",
        "--model_name_or_path",
        bert,
        "--do_train",
        "--train_rl",
    )


def test_a_full_output_directory_is_not_overwritten(tmp_path, capsys, baseline):
    data, bert = baseline
    before = sorted(p.name for p in bert.iterdir())
    assert classify(data, "--model_type", "bert", "--model_name_or_path", bert, "--output_dir", bert, "--do_train") == 2
    assert "not empty" in capsys.readouterr().err
    assert sorted(p.name for p in bert.iterdir()) == before
