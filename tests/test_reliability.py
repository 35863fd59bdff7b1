"""Reliability: nothing non-finite is saved as a finished stage, sweeps never mix runs, every bad
flag is refused before any work, I/O errors and leftovers are handled, results never overwrite
another evaluation's. Each case is a reproduction from the bug report, with its own expected message."""

import errno
import json
import shutil

import numpy as np
import pytest
import torch
from conftest import fixture_tokenizer, tiny_bert_config
from test_faults import FIXTURE, _refused, trained  # noqa: F401  (the module fixture)
from test_pipeline import stage
from test_tradeoff import _trbert

from trbert import TRBertForSequenceClassification
from trbert.errors import InputError
from trbert.store.checkpoint import save_checkpoint

TRAIN = "--model_type bert --model_name_or_path {lm} --output_dir {out} --do_train --max_steps 2"
RL = "--model_type autobert --model_name_or_path {bert} --output_dir {out} --do_train --train_rl --max_steps 2"
JOINT = "--model_type autobert --model_name_or_path {rl} --output_dir {out} --do_train --train_both --max_steps 2"


@pytest.mark.parametrize(
    "command, message",
    [
        (RL + " --alpha nan", "--alpha nan: must be a finite number"),
        (RL + " --alpha inf", "--alpha inf: must be a finite number"),
        (RL + " --alpha -5", "--alpha (the length penalty) must be 0 or more"),
        (RL + " --guide_rate 2", "--guide_rate is a fraction of the steps: 0 to 1"),
        (RL + " --guide_rate -1", "--guide_rate is a fraction of the steps: 0 to 1"),
        (JOINT + " --train_teacher --temperature 0", "--temperature must be positive"),
        (TRAIN + " --learning_rate -1", "--learning_rate must be positive"),
        (TRAIN + " --seed -1", "--seed must lie in 0..4294967295"),
        (TRAIN + " --max_seq_length 1", "--max_seq_length 1 is too short for the classification inputs"),
        (TRAIN.replace(" --max_steps 2", "") + " --num_train_epochs 0", "--num_train_epochs must be at least 1"),
        (TRAIN.replace(" --max_steps 2", "") + " --num_train_epochs 0.5", "--num_train_epochs must be at least 1"),
        (TRAIN + " --quantize int8", "--quantize int8 is for --do_eval alone"),
        (TRAIN.replace("--do_train", "--do_eval") + " --quantize int8 --bf16", "--quantize int8 runs float32"),
        (TRAIN + " --gradient_accumulation_steps 50", "so no optimizer step would run"),  # 6 batches an epoch
    ],
)
def test_bad_flags_are_refused_before_any_work(tmp_path, capsys, trained, command, message):  # noqa: F811
    _refused(capsys, message, command, **trained, out=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_diverging_stage_stops_at_the_step_and_saves_nothing(tmp_path, capsys, trained):  # noqa: F811
    """--learning_rate 1e6: the loss goes NaN; the stage stops naming the step, no model is saved."""
    out = tmp_path / "out"
    command = TRAIN.replace("{out}", str(out)) + " --learning_rate 1e6 --max_steps 6 --logging_steps 1 --save_steps 1"
    _refused(capsys, "the loss became NaN or infinite at optimizer step", command, **trained)
    assert not (out / "config.json").exists()  # its TensorBoard scalars stay; no model, no step checkpoint after it


@pytest.mark.parametrize(
    "name, command", [("token_scores.npy", RL), ("teacher_logits.npy", JOINT + " --train_teacher")]
)
def test_stage_files_with_nan_are_refused_on_read(tmp_path, capsys, trained, name, command):  # noqa: F811
    p = {**trained, "bert": tmp_path / "bert", "rl": tmp_path / "rl", "out": tmp_path / "out"}
    shutil.copytree(trained["bert"], p["bert"])
    shutil.copytree(trained["rl"], p["rl"])
    array = np.load(p["bert"] / name, mmap_mode="r+")
    array[3] = np.nan
    array.flush()
    manifest = json.loads((p["rl"] / "trbert_stage.json").read_text())  # the RL model descends from the copy
    manifest.update(baseline=str(p["bert"]))
    (p["rl"] / "trbert_stage.json").write_text(json.dumps(manifest))
    _refused(capsys, f"{name}: {name} holds NaN or infinite values (row 3)", command, **p)
    assert not p["out"].exists()


def test_weights_that_are_not_finite_are_never_saved(tmp_path):
    model = TRBertForSequenceClassification(tiny_bert_config())
    with torch.no_grad():
        model.classifier.weight[0, 0] = float("nan")
    with pytest.raises(InputError, match="not saved: 1 weight tensors hold NaN or infinite values"):
        save_checkpoint(model, fixture_tokenizer(), tmp_path / "m", {}, "finetune", None)
    assert not (tmp_path / "m").exists() and not list(tmp_path.iterdir())


def test_a_full_disk_during_save_is_one_message_and_loses_nothing(tmp_path, capsys, trained, monkeypatch):  # noqa: F811
    """The final save fails: one message; the step checkpoints saved before are intact (a resume
    continues from them) and no half-written folder is left."""
    out, calls = tmp_path / "out", []
    save = TRBertForSequenceClassification.save_pretrained

    def full_at_the_third(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return save(self, *args, **kwargs)

    monkeypatch.setattr(TRBertForSequenceClassification, "save_pretrained", full_at_the_third)
    command = TRAIN.replace("{out}", str(out)) + " --save_steps 1"
    _refused(capsys, "could not be written (No space left on device); what was saved before is unchanged",
             command, **trained)  # fmt: skip
    assert [p.name for p in sorted(out.glob("checkpoint-*"))] == ["checkpoint-1", "checkpoint-2"]
    assert not (out / "config.json").exists() and not list(tmp_path.glob(".saving-*"))


def test_leftovers_of_a_killed_stage_file_are_removed_on_start(tmp_path, trained):  # noqa: F811
    p = {**trained, "bert": tmp_path / "bert"}
    shutil.copytree(trained["bert"], p["bert"])
    (p["bert"] / ".tmp-k1ll3d.npy").write_bytes(b"\0" * 100)  # what kill -9 during --do_eval_grad leaves
    assert stage("--model_type bert --model_name_or_path {bert} --output_dir {bert} --do_eval_grad", **p) == 0
    assert not list(p["bert"].glob(".tmp-*"))


def test_a_retrained_baseline_is_caught_by_its_digest(tmp_path, capsys, trained):  # noqa: F811
    """Teacher logits of a baseline retrained in place are refused for an RL model of the old one."""
    p = {**trained, "bert": tmp_path / "bert", "rl": tmp_path / "rl", "out": tmp_path / "out"}
    shutil.copytree(trained["bert"], p["bert"])
    assert stage(RL.replace("{out}", "{rl}"), **p) == 0
    again = "--model_type bert --model_name_or_path {lm} --output_dir {bert} --do_train --max_steps 1 --seed 9"
    assert stage(again + " --overwrite_output_dir", **p) == 0
    assert stage("--model_type bert --model_name_or_path {bert} --output_dir {bert} --do_eval_logits", **p) == 0
    _refused(capsys, "teacher_logits.npy was made by another model", JOINT + " --train_teacher", **p)


def test_wrong_inputs_found_before_training(tmp_path, capsys, trained):  # noqa: F811
    p = {**trained, "copy": tmp_path / "copy", "out": tmp_path / "out", "big": tmp_path / "big"}
    shutil.copytree(trained["bert"], p["copy"])
    config = json.loads((p["copy"] / "config.json").read_text())
    (p["copy"] / "config.json").write_text(json.dumps({**config, "num_attention_heads": "four"}))
    _refused(capsys, "copy: not a usable model checkpoint", TRAIN.replace("{lm}", "{copy}"), **p)
    tokenizer = fixture_tokenizer()
    tokenizer.add_tokens([f"extra{k}" for k in range(5)])
    tokenizer.save_pretrained(p["big"])
    _refused(capsys, "tokens, the model embeds", TRAIN.replace("{lm}", "{bert}") + " --tokenizer_name {big}", **p)
    (tmp_path / "a_file").write_text("")
    _refused(capsys, "a_file: a file, not a folder", TRAIN.replace("{out}", str(tmp_path / "a_file")), **p)


def test_untrained_selectors_and_other_evaluations_never_overwrite(tmp_path, capsys, trained):  # noqa: F811
    """autobert --do_eval of a stock classifier is refused; bert --do_eval of a TR-BERT model and an
    int8 evaluation go to their own results files."""
    from transformers import BertForSequenceClassification

    p = {**trained, "rl": tmp_path / "rl", "stock": tmp_path / "stock"}
    shutil.copytree(trained["rl"], p["rl"])
    BertForSequenceClassification(tiny_bert_config(num_labels=2)).save_pretrained(p["stock"])
    fixture_tokenizer().save_pretrained(p["stock"])
    evaluate = "--model_name_or_path {stock} --output_dir {stock} --do_eval"
    _refused(
        capsys, "selectors were never trained (the checkpoint holds none)", "--model_type autobert " + evaluate, **p
    )
    assert stage("--model_type autobert --model_name_or_path {rl} --output_dir {rl} --do_eval", **p) == 0
    ours = json.loads((p["rl"] / "eval_results.json").read_text())
    assert stage("--model_type bert --model_name_or_path {rl} --output_dir {rl} --do_eval", **p) == 0
    full = json.loads((p["rl"] / "eval_results_bert.json").read_text())
    assert json.loads((p["rl"] / "eval_results.json").read_text()) == ours and full["selection"] == "off"
    assert full["evaluated_as"] == "bert" and ours["evaluated_as"] == "itself"


def test_a_truncated_step_checkpoint_does_not_stop_the_others(tmp_path, capsys, trained):  # noqa: F811
    p = {**trained, "model": tmp_path / "model"}
    assert stage(TRAIN.replace("--max_steps 2", "--max_steps 4 --save_steps 2").replace("{out}", "{model}"), **p) == 0
    weights = p["model"] / "checkpoint-2" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:500])
    _refused(capsys, "checkpoint-2 could not be evaluated (see above)", "--model_type bert --model_name_or_path "
             "{model} --output_dir {model} --do_eval --eval_all_checkpoints", **p)  # fmt: skip
    assert (p["model"] / "eval_results.json").is_file()
    assert (p["model"] / "checkpoint-4" / "eval_results.json").is_file()


def test_sweeps_never_mix_runs(tmp_path, capsys, trained):  # noqa: F811
    """A point is retrained when the flags or the fine-tuned model differ; a model that was never
    fine-tuned is refused before anything is written."""
    p = {**trained, "out": tmp_path / "sweep", "bert2": tmp_path / "bert2"}
    flags = "--task_name imdb --data_dir {data} --max_seq_length 32 --alphas 2 --seeds 1 --timing_examples 2"
    sweep = "tradeoff --model_dir {bert} --output_dir {out} --timing_batches 2 --timing_repeats 1 " + flags
    both = p["out"] / "alpha_2" / "both"

    def steps() -> int:
        return json.loads((both / "training_args.json").read_text())["max_steps"]

    assert _trbert(sweep + " --rl '--max_steps 1' --joint '--max_steps 1'", **p) == 0 and steps() == 1
    assert _trbert(sweep + " --rl '--max_steps 1' --joint '--max_steps 2'", **p) == 0 and steps() == 2
    kept = (both / "trbert_stage.json").stat().st_mtime_ns
    assert _trbert(sweep + " --rl '--max_steps 1' --joint '--max_steps 2' --logging_steps 7", **p) == 0
    assert (both / "trbert_stage.json").stat().st_mtime_ns == kept  # a flag that does not shape training: reused
    shutil.copytree(trained["bert"], p["bert2"])
    assert stage("--model_type bert --model_name_or_path {lm} --output_dir {bert2} --do_train --max_steps 1 --seed 3"
                 " --overwrite_output_dir", **p) == 0  # fmt: skip
    made = json.loads((both / "trbert_stage.json").read_text())["baseline_sha256"]
    again = sweep.replace("{bert}", "{bert2}") + " --rl '--max_steps 1' --joint '--max_steps 2'"
    assert _trbert(again, **p) == 0
    assert json.loads((both / "trbert_stage.json").read_text())["baseline_sha256"] != made
    p["lm_sweep"] = tmp_path / "never"
    assert _trbert(sweep.replace("{bert}", "{lm}").replace("{out}", "{lm_sweep}"), **p) == 2
    err = capsys.readouterr().err
    assert "not a fine-tuned classification model" in err and not p["lm_sweep"].exists()


def test_commands_check_their_flags_before_the_model_runs(tmp_path, capsys, trained):  # noqa: F811
    p = {**trained, "page": tmp_path, "out": tmp_path / "o"}
    show = "show --model_dir {rl} --output {page} --task_name imdb --data_dir {data} --max_seq_length 32"
    assert _trbert(show, **p) == 2 and "a folder; --output names the HTML file" in capsys.readouterr().err
    assert _trbert(show.replace("{page}", "{page}/v.html") + " --examples -3", **p) == 2
    assert "--examples -3: show at least 1" in capsys.readouterr().err
    sweep = "tradeoff --model_dir {bert} --output_dir {out} --alphas nan --task_name imdb --data_dir {data}"
    assert _trbert(sweep, **p) == 2 and "--alpha nan: must be a finite number" in capsys.readouterr().err
    assert not p["out"].exists()
    (tmp_path / "splits").mkdir()  # the input inside the output folder, as the defaults have it
    (tmp_path / "splits" / "flat.txt").write_text("".join(f"a{k} {k % 2} text {k}\n" for k in range(20)))
    split = "split-hyperpartisan --input {page}/splits/flat.txt --output_dir {page}/splits"
    assert _trbert(split, **p) == 0 and (tmp_path / "splits" / "train.jsonl").is_file()
    assert _trbert(split, **p) == 2 and "already holds split files" in capsys.readouterr().err
    assert _trbert("demo-data --output_dir {page}/splits/flat.txt/sub", **p) == 2  # a file on the way: one message
    assert "could not be written" in capsys.readouterr().err


def test_review_findings_stay_fixed(tmp_path):
    """Flags a command sets itself, abbreviations, device-only flags, chained job updates, the stage
    file's reserved room."""
    import os

    from trbert.__main__ import _parser
    from trbert.store.outputs import StageFile
    from trbert.train.cli import parse_args

    args, rest = _parser().parse_known_args(["tradeoff", "--model_dir", "m", "--output_dir", "o", "--seed", "7"])
    assert args.seeds == 3 and rest == ["--seed", "7"]  # --seed goes to the entry script, not to --seeds
    common = ["--task_name", "imdb", "--data_dir", "d", "--model_type", "bert", "--model_name_or_path", "m",
              "--output_dir", "o", "--do_eval"]  # fmt: skip
    with pytest.raises(InputError, match="--attention_kernel varlen runs on CUDA"):
        parse_args([*common, "--attention_kernel", "varlen"])
    race = parse_args(["--data_dir", "d", *common[4:-1], "--do_train"], "race")
    assert race.updated(learning_rate=1e-4).updated(do_eval=True).train.learning_rate == 1e-4
    stage_file = StageFile(tmp_path / "s.npy", (300, 400))
    assert os.stat(stage_file.tmp).st_blocks * 512 >= os.stat(stage_file.tmp).st_size  # the room is taken


def test_a_sweep_stage_flag_in_rl_is_refused_and_a_retrained_rl_retrains_its_joint(tmp_path, capsys, trained):  # noqa: F811
    p = {**trained, "out": tmp_path / "sweep"}
    sweep = ("tradeoff --model_dir {bert} --output_dir {out} --timing_batches 2 --timing_repeats 1 --alphas 2 "
             "--seeds 1 --timing_examples 2 --task_name imdb --data_dir {data} --max_seq_length 32")  # fmt: skip
    assert _trbert(sweep + " --rl '--alpha 3'", **p) == 2
    assert "--rl / --joint: --alpha is set by the sweep itself" in capsys.readouterr().err and not p["out"].exists()
    for flag in ("--do_train", "--alpha 3", "--do_eval_grad"):  # in the entry-script flags too (never run on {bert})
        assert _trbert(f"{sweep} {flag}", **p) == 2 and "is set by the command itself" in capsys.readouterr().err
    show = "show --model_dir {rl} --output {out}/v.html --task_name imdb --data_dir {data} --max_seq_length 32"
    assert (
        _trbert(show + " --do_train", **p) == 2 and "--do_train is set by the command itself" in capsys.readouterr().err
    )
    both = p["out"] / "alpha_2" / "both" / "trbert_stage.json"
    assert _trbert(sweep + " --rl '--max_steps 1' --joint '--max_steps 1'", **p) == 0
    first = json.loads(both.read_text())["source_sha256"]
    assert _trbert(sweep + " --rl '--max_steps 2' --joint '--max_steps 1'", **p) == 0  # only the RL flags differ
    assert json.loads(both.read_text())["source_sha256"] != first  # the joint point was trained again


def test_rank_targets_name_their_baseline_and_shared_traces_skip_protected_tokens(tmp_path, trained):  # noqa: F811
    p = {**trained, "bert": tmp_path / "bert"}
    shutil.copytree(trained["bert"], p["bert"])
    from trbert.tools.prepare import write_rank_targets

    meta = json.loads(write_rank_targets(p["bert"]).with_suffix(".json").read_text())
    assert meta["model_sha256"] == json.loads((p["bert"] / "trbert_stage.json").read_text())["weights_sha256"]
    from test_choice import _choice_batch

    from trbert.core.encoder import Trace
    from trbert.core.heads import TRBertForMultipleChoice
    from trbert.core.policy import Threshold

    arrays, ids, types, mask, heads = _choice_batch(fixture_tokenizer())
    trace = Trace()
    with torch.no_grad():
        TRBertForMultipleChoice(tiny_bert_config()).eval()(ids, mask, types, policy=Threshold(), tracer=trace,
                                                           head_inputs=heads)  # fmt: skip
    end = int(arrays["question_end"][0])
    assert trace.probs[0][0, 0, end:].isnan().all() and not trace.probs[0][0, 0, 1:end].isnan().any()


def test_a_replaced_run_leaves_nothing_that_loads_or_reads_as_its_own(tmp_path, trained):  # noqa: F811
    """--overwrite_output_dir over a TR-BERT folder that also holds an original release's weights and other
    evaluations' results: none of them survives to load over, or be read as, the new model's."""
    from safetensors.torch import load_file

    from trbert.store.checkpoint import load_model

    out = tmp_path / "out"
    shutil.copytree(trained["rl"], out)
    stale = load_file(str(out / "model.safetensors"))["selectors.0.hidden.weight"].zero_()
    torch.save({"bert.encoder.linear_1.0.weight": stale}, out / "pytorch_model.bin")  # the release's name for it
    for name in ("eval_results_test.json", "predictions_int8.json", "selector_health.json"):
        (out / name).write_text("{}")
    assert stage(RL + " --overwrite_output_dir --seed 5", **trained, out=out) == 0
    assert not any((out / n).exists() for n in ("pytorch_model.bin", "eval_results_test.json", "predictions_int8.json"))
    assert json.loads((out / "selector_health.json").read_text())  # written again by the new run
    loaded = load_model(str(out), "autobert", 2).selectors[0].hidden.weight
    assert torch.equal(loaded, load_file(str(out / "model.safetensors"))["selectors.0.hidden.weight"])
    assert loaded.abs().sum() > 0


def test_a_lock_that_cannot_be_written_is_not_left_and_an_empty_old_one_is_stale(tmp_path, monkeypatch):
    import os

    from trbert.store import outputs

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(outputs.json, "dump", full)
        with pytest.raises(InputError, match="cannot write into the output directory"):
            outputs.OutputLock(tmp_path).__enter__()
    assert not (tmp_path / outputs.LOCK).exists()
    (tmp_path / outputs.LOCK).write_text("")  # killed between creating and writing it, two minutes ago
    os.utime(tmp_path / outputs.LOCK, (0, os.path.getmtime(tmp_path / outputs.LOCK) - 120))
    with outputs.OutputLock(tmp_path) as lock:
        assert lock.held and json.loads((tmp_path / outputs.LOCK).read_text())["pid"] == os.getpid()
