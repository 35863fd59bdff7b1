"""``run_classification.py --dataset_name``: datasets saved with ``save_to_disk`` in the test (no
network), their split mapping, labels, feature cache and stage files; and the missing package."""

import json
import sys

import datasets  # the hub extra; the test extra installs it too
import numpy as np
import pytest
from conftest import FIXTURES
from test_pipeline import script

from trbert.errors import InputError
from trbert.tasks.hub import carve
from trbert.train.cli import parse_args
from trbert.train.pipeline import make_task

datasets.disable_progress_bars()
COMMON = "--max_seq_length 32 --per_gpu_train_batch_size 8 --per_gpu_eval_batch_size 8 --logging_steps 1"


def fixture_rows(split: str) -> list[dict]:
    return [json.loads(line) for line in (FIXTURES / "imdb" / f"{split}.jsonl").read_text().splitlines()]


def save_three_classes(folder, changed: str = "") -> dict:
    """train / validation / test with a three-class ``ClassLabel`` (labels: row number mod 3);
    ``changed`` replaces the first training text. Returns the split sizes."""
    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["a", "b", "c"])}
    )
    splits = {}
    for name, rows in (
        ("train", fixture_rows("train")),
        ("validation", fixture_rows("dev")),
        ("test", fixture_rows("test")),
    ):
        texts = [r["text"] for r in rows]
        if name == "train" and changed:
            texts[0] = changed
        splits[name] = datasets.Dataset.from_dict({"text": texts, "label": [i % 3 for i in range(len(rows))]}, features)
    datasets.DatasetDict(splits).save_to_disk(str(folder))
    return {name: len(split) for name, split in splits.items()}


def save_train_only(folder) -> int:
    """One split, other column names, string labels ("bad"/"good"), no validation split."""
    rows = fixture_rows("train") + fixture_rows("dev")
    sentiment = ["good" if r["label"] else "bad" for r in rows]
    data = {
        "review": [r["text"] for r in rows],
        "sentiment": sentiment,
        "stars": [4.5] * len(rows),
        "lang": ["en"] * len(rows),
    }
    datasets.DatasetDict(train=datasets.Dataset.from_dict(data)).save_to_disk(str(folder))
    return len(rows)


def run(command: str, **paths) -> int:
    return script("run_classification.py", *f"{COMMON} {command}".format(**paths).split())


def cache_folders(cache) -> dict:
    """``{feature folder name: (rows, fingerprint)}``."""
    out = {}
    for meta_file in sorted(cache.glob("*/meta.json")):
        meta = json.loads(meta_file.read_text())
        out[meta_file.parent.name] = (meta["arrays"]["lengths"]["shape"][0], meta["fingerprint"])
    return out


def test_a_saved_dataset_through_finetune_eval_and_the_rl_stage(tmp_path, capsys, tiny_bert_dir):
    """validation -> dev; num_labels from the ClassLabel; features cached once and rebuilt when the
    dataset changes; token scores of a hub dataset feed --train_rl, and are refused once it changed."""
    p = {n: tmp_path / n for n in ("hub", "cache", "bert", "rl", "rl2")}
    p["lm"] = tiny_bert_dir
    sizes = save_three_classes(p["hub"])
    data = "--dataset_name {hub} --features_cache_dir {cache} "
    assert (
        run(
            data + "--model_type bert --model_name_or_path {lm} --output_dir {bert} --do_train --max_steps 2 --do_eval",
            **p,
        )
        == 0
    )
    assert len(json.loads((p["bert"] / "config.json").read_text())["id2label"]) == 3
    assert json.loads((p["bert"] / "eval_results.json").read_text())["examples"] == sizes["validation"]
    built = cache_folders(p["cache"])
    assert sorted(rows for rows, _ in built.values()) == sorted([sizes["train"], sizes["validation"]])
    fingerprint = next(iter(built.values()))[1]
    assert fingerprint["task"] == "disk-hub" and fingerprint["labels"] == ["a", "b", "c"]
    stamps = {f: (p["cache"] / f / "meta.json").stat().st_mtime_ns for f in built}

    evaluate = data + "--model_type bert --model_name_or_path {bert} --output_dir {bert}"
    assert run(evaluate + " --do_eval --do_eval_grad", **p) == 0  # the cached features are read, not rebuilt
    assert cache_folders(p["cache"]) == built
    assert {f: (p["cache"] / f / "meta.json").stat().st_mtime_ns for f in built} == stamps
    assert np.load(p["bert"] / "token_scores.npy").shape[0] == sizes["train"]
    assert run(evaluate + " --do_eval --do_test", **p) == 0
    assert json.loads((p["bert"] / "eval_results_test.json").read_text())["examples"] == sizes["test"]

    rl = data + "--model_type autobert --model_name_or_path {bert} --do_train --train_rl --max_steps 2 --output_dir "
    assert run(rl + "{rl}", **p) == 0 and (p["rl"] / "model.safetensors").is_file()

    before = cache_folders(p["cache"])  # train, validation, test
    save_three_classes(p["hub"], changed="a different first review")  # same path, other content
    capsys.readouterr()
    assert run(rl + "{rl2}", **p) == 2  # the scores were made for the old training split
    assert "token_scores.npy made for another dataset (source_sha256 differs" in capsys.readouterr().err
    rebuilt = cache_folders(p["cache"])
    assert len(rebuilt) == len(before) + 1 and before.items() <= rebuilt.items()  # a new train folder
    assert not (p["rl2"] / "model.safetensors").exists()


def test_columns_string_labels_and_the_dev_carve_out(tmp_path, capsys, monkeypatch, tiny_bert_dir):
    """No validation split: dev is a fixed draw of train, whatever --seed; labels numbered in
    sorted order; features under the datasets cache without --features_cache_dir."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf"))
    p = {"hub": tmp_path / "hub", "lm": tiny_bert_dir, "bert": tmp_path / "bert"}
    n = save_train_only(p["hub"])
    data = "--dataset_name {hub} --text_column review --label_column sentiment --dev_fraction 0.25 "
    command = (
        data + "--model_type bert --model_name_or_path {lm} --output_dir {bert} --do_train --max_steps 2 --do_eval"
    )
    assert run(command, **p) == 0
    dev = round(n * 0.25)
    assert json.loads((p["bert"] / "eval_results.json").read_text())["examples"] == dev
    built = cache_folders(tmp_path / "hf" / "trbert_features")
    assert sorted(rows for rows, _ in built.values()) == [dev, n - dev]
    assert all(fp["labels"] == ["bad", "good"] for _, fp in built.values())

    job = parse_args(f"{data} --model_type bert --model_name_or_path x --output_dir y --do_eval".format(**p).split())
    tasks = [make_task(job)]
    job.train.seed = 7
    tasks.append(make_task(job))
    assert tasks[0].splits == tasks[1].splits  # the carve-out ignores --seed
    train_rows, dev_rows = tasks[0].splits["train"][1], tasks[0].splits["dev"][1]
    assert sorted(train_rows + dev_rows) == list(range(n)) and len(dev_rows) == dev
    labels = {y for _, y in tasks[0].read("", "dev")}
    assert labels == {0, 1} and tasks[0].num_labels == 2

    capsys.readouterr()
    assert run(data + "--model_type bert --model_name_or_path {bert} --output_dir {bert} --do_eval --do_test", **p) == 2
    assert "no test split (the dataset has train)" in capsys.readouterr().err


def test_carve_out_is_fixed_and_checked():
    assert carve(10, 0.3, "x") == carve(10, 0.3, "x")
    train, dev = carve(10, 0.3, "x")
    assert len(dev) == 3 and sorted(train + dev) == list(range(10)) and train == sorted(train)
    with pytest.raises(InputError, match="cannot hold out --dev_fraction 1.0 of 10"):
        carve(10, 1.0, "x")


def test_integer_labels_are_numbered_in_order_and_unlabelled_rows_refused(tmp_path):
    """1-based stars become 0..4; a row labelled -1 (an unlabelled test set) is refused by row."""
    train = datasets.Dataset.from_dict({"text": ["x y"] * 5, "stars": [5, 3, 1, 2, 4]})
    test = datasets.Dataset.from_dict({"text": ["x", "y"], "stars": [3, -1]})
    datasets.DatasetDict(train=train, test=test).save_to_disk(tmp_path / "a")
    args = f"--dataset_name {tmp_path / 'a'} --label_column stars --model_type bert --model_name_or_path x"
    task = make_task(parse_args(f"{args} --output_dir y --do_eval".split()))
    assert task.num_labels == 5 and task.labels == (1, 2, 3, 4, 5)
    read = [y for split in ("train", "dev") for _, y in task.read("", split)]
    assert sorted(read) == [0, 1, 2, 3, 4] and len(task.splits["dev"][1]) == 1
    with pytest.raises(InputError, match=r"\[test\] row 1: label -1 is not one of the labels \[1, 2, 3, 4, 5\]"):
        list(task.read("", "test"))


# fmt: off
BAD = [
    ("the following arguments are required: --data_dir, --task_name (or --dataset_name)", ""),
    ("--data_dir and --dataset_name name two datasets", "--dataset_name {hub} --data_dir {hub}"),
    ("no column 'body' (columns: review, sentiment, stars, lang)", "--dataset_name {hub} --text_column body"),
    ("label column 'stars' is Value('float64'", "--dataset_name {hub} --text_column review --label_column stars"),
    ("text column 'stars' is Value('float64'", "--dataset_name {hub} --text_column stars --label_column sentiment"),
    ("holds fewer than two classes", "--dataset_name {hub} --text_column review --label_column lang"),
    ("has no configurations", "--dataset_name {hub} --dataset_config plain_text"),
    ("nothing/here: no such folder", "--dataset_name {missing}"),
]
# fmt: on


@pytest.mark.parametrize("message,flags", BAD)
def test_bad_hub_input_is_one_message(tmp_path, capsys, tiny_bert_dir, message, flags):
    p = {
        "hub": tmp_path / "hub",
        "missing": tmp_path / "nothing" / "here",
        "lm": tiny_bert_dir,
        "out": tmp_path / "out",
    }
    save_train_only(p["hub"])
    command = flags + " --model_type bert --model_name_or_path {lm} --output_dir {out} --do_train --max_steps 1"
    assert run(command, **p) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and not p["out"].exists()


def test_without_the_datasets_package_it_names_the_extra(tmp_path, capsys, monkeypatch, tiny_bert_dir):
    monkeypatch.setitem(sys.modules, "datasets", None)  # `import datasets` now fails, as when not installed
    command = "--dataset_name {hub} --model_type bert --model_name_or_path {lm} --output_dir {out} --do_train"
    assert run(command, hub=tmp_path, lm=tiny_bert_dir, out=tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "--dataset_name needs the datasets package: pip install 'trbert[hub]'" in err and "Traceback" not in err
