"""Scale-out: per-example randomness, 2-process runs equal to 1-process runs, exact resume after a kill."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import tiny_bert_config
from safetensors.torch import load_file
from test_pipeline import COMMON, ROOT, stage

from trbert import TRBertForSequenceClassification
from trbert.config import Precision
from trbert.core.policy import Sample
from trbert.core.seeding import example_seeds, uniform
from trbert.train.distributed import World
from trbert.train.loop import epoch_slices


def test_noise_depends_on_the_example_not_on_the_batch():
    seeds = example_seeds(42, 0, torch.arange(6))
    u = uniform(seeds, 3, (4, 7))
    assert torch.equal(uniform(seeds[[4, 1]], 3, (4, 7)), u[[4, 1]])
    assert torch.equal(uniform(seeds, 3, (4, 9))[..., :7], u)  # wider padding, same numbers
    assert not torch.equal(uniform(seeds, 4, (4, 7)), u)  # another salt, other numbers
    big = uniform(example_seeds(1, 0, torch.arange(64)), 0, (64, 64))
    assert abs(big.mean().item() - 0.5) < 0.01 and big.min() >= 0 and big.max() < 1


def test_seeded_dropout_and_sampling_give_a_row_the_same_result_in_any_batch():
    torch.manual_seed(0)
    model = TRBertForSequenceClassification(tiny_bert_config()).train()
    model.example_dropout = True
    ids = torch.randint(5, 40, (4, 12))
    mask = torch.arange(12)[None] < torch.tensor([12, 9, 7, 5])[:, None]
    seeds = example_seeds(7, 0, torch.arange(4))
    together = model(ids, mask, policy=Sample(seeds), seeds=seeds)
    alone = model(ids[2:3, :7], mask[2:3, :7], policy=Sample(seeds[2:3]), seeds=seeds[2:3])
    assert torch.allclose(together.logits[2], alone.logits[0], atol=1e-5)
    assert together.kept[0][2] == alone.kept[0][0]
    again = model(ids, mask, policy=Sample(seeds), seeds=seeds)
    assert torch.equal(again.logits, together.logits)  # no global generator involved
    other = example_seeds(7, 1, torch.arange(4))
    assert not torch.allclose(model(ids, mask, policy=Sample(other), seeds=other).logits, together.logits)


def test_each_global_batch_is_cut_into_one_slice_per_rank():
    single = epoch_slices(10, 1, 0, 4, World())
    ranks = [epoch_slices(10, 1, 0, 4, World(rank=r, size=2)) for r in (0, 1)]
    for whole, (a, wa), (b, wb) in zip(single, ranks[0], ranks[1], strict=True):
        assert a + b == whole[0] and whole[1] == 1.0
        # every row's loss ends up weighted 1 / (global rows): the mean over the global batch
        assert wa / (2 * len(a)) == wb / (2 * len(b)) == pytest.approx(1 / len(whole[0]))
    three = [epoch_slices(7, 1, 0, 6, World(rank=r, size=3)) for r in range(3)]
    assert [s[-1][1] for s in three] == [3.0, 0.0, 0.0]  # last batch: one row; idle ranks weigh 0


def _weights(folder):
    return load_file(str(folder / "model.safetensors"))


def _assert_same_weights(a, b, atol=2e-6):
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    worst = max((wa[k] - wb[k]).abs().max().item() for k in wa)
    assert worst <= atol, f"parameters differ by {worst}"


def _one_process(command: str, **paths) -> int:
    return stage(f"{command} --no_cuda", **paths)  # on the CPU, as the two gloo processes below


def _torchrun(command: str, **paths) -> subprocess.CompletedProcess:
    argv = f"{COMMON} {command} --no_cuda".format(**paths).split()  # two CPU processes (gloo), also on a GPU machine
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    done = subprocess.run([*run, str(ROOT / "run_classification.py"), *argv], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_two_processes_equal_one_process_with_twice_the_batch(tmp_path, imdb_dir, tiny_bert_dir):
    p = {"data": imdb_dir, "lm": tiny_bert_dir, **{n: tmp_path / n for n in ("one", "two", "rl1", "rl2")}}
    seeded = " --example_seeded_dropout --max_steps 4 --do_train"
    one = "--model_type bert --model_name_or_path {lm} --output_dir {one}" + seeded
    assert _one_process(one + " --per_gpu_train_batch_size 8", **p) == 0
    _torchrun(
        "--model_type bert --model_name_or_path {lm} --output_dir {two} --per_gpu_train_batch_size 4" + seeded, **p
    )
    _assert_same_weights(p["one"], p["two"])

    # the offline stages: each rank scores its share, rank 0 writes one file in dataset order
    offline = "--model_type bert --model_name_or_path {one} --output_dir {one} --do_eval_grad --do_eval_logits"
    assert _one_process(offline, **p) == 0
    _torchrun(offline.replace("{one}", "{two}") + " --per_gpu_eval_batch_size 3", **p)
    for name in ("token_scores.npy", "teacher_logits.npy"):
        a, b = np.load(p["one"] / name), np.load(p["two"] / name)
        assert a.shape == b.shape and np.allclose(a, b, atol=1e-5), name

    # RL: the 8 replicas of an example stay on its rank, sampling is seeded per example
    rl = "--model_type autobert --model_name_or_path {one} --output_dir {rl1} --train_rl --alpha 1" + seeded
    assert _one_process(rl + " --per_gpu_train_batch_size 8", **p) == 0
    _torchrun(rl.replace("{rl1}", "{rl2}") + " --per_gpu_train_batch_size 4", **p)
    _assert_same_weights(p["rl1"], p["rl2"])

    # joint training with distillation from the teacher logits written above
    joint = "--model_type autobert --model_name_or_path {rl1} --output_dir {j1} --train_both --train_teacher" + seeded
    p.update(j1=p["rl1"].parent / "j1", j2=p["rl1"].parent / "j2")
    assert _one_process(joint + " --per_gpu_train_batch_size 8 --teacher_npy_path {one}/teacher_logits.npy", **p) == 0
    _torchrun(
        joint.replace("{j1}", "{j2}") + " --per_gpu_train_batch_size 4 --teacher_npy_path {one}/teacher_logits.npy", **p
    )
    _assert_same_weights(p["j1"], p["j2"])
    w1, w0 = _weights(p["rl1"]), _weights(p["one"])
    assert any(not torch.equal(w1[k], w0[k]) for k in w1 if k.startswith("selectors"))  # RL did train

    # evaluation on 2 ranks reports what 1 rank reports
    assert _one_process("--model_type autobert --model_name_or_path {rl1} --output_dir {rl1} --do_eval", **p) == 0
    _torchrun("--model_type autobert --model_name_or_path {rl1} --output_dir {rl2} --do_eval", **p)
    r1, r2 = (json.loads((p[k] / "eval_results.json").read_text()) for k in ("rl1", "rl2"))
    assert r2["ranks"] == 2 and r1["acc"] == r2["acc"] and r1["mflops"] == pytest.approx(r2["mflops"])


def _popen(command: str, **paths) -> subprocess.Popen:
    argv = f"{COMMON} {command}".format(**paths).split()
    return subprocess.Popen(
        [sys.executable, str(ROOT / "run_classification.py"), *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_killed_run_resumes_to_the_same_parameters(tmp_path, imdb_dir, tiny_bert_dir):
    p = {"data": imdb_dir, "lm": tiny_bert_dir, "full": tmp_path / "full", "cut": tmp_path / "cut"}
    # ordinary (generator-drawn) dropout: the generator states in the checkpoint make it exact
    train = (
        "--model_type bert --model_name_or_path {lm} --do_train --num_train_epochs 12 --per_gpu_train_batch_size 4"
        " --gradient_accumulation_steps 2 --save_steps 5 --save_total_limit 2 --logging_steps 0"
    )
    assert stage(train + " --output_dir {full}", **p) == 0
    job = _popen(train + " --output_dir {cut}", **p)
    deadline = time.time() + 120
    while not list(p["cut"].glob("checkpoint-*/training_state.json")) and job.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    job.send_signal(signal.SIGKILL)
    job.wait()
    assert job.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (p["cut"] / "model.safetensors").exists()
    assert stage(train + " --output_dir {cut} --resume_from_checkpoint latest", **p) == 0
    _assert_same_weights(p["full"], p["cut"], atol=0)
    steps = sorted(int(c.name.split("-")[1]) for c in p["cut"].glob("checkpoint-*"))
    assert steps == [65, 70]  # 72 steps; --save_total_limit 2 keeps the newest two


def test_a_truncated_or_foreign_checkpoint_is_refused(tmp_path, capsys, imdb_dir, tiny_bert_dir):
    p = {"data": imdb_dir, "lm": tiny_bert_dir, "out": tmp_path / "out"}
    train = "--model_type bert --model_name_or_path {lm} --output_dir {out} --do_train --max_steps 2 --save_steps 1"
    assert stage(train, **p) == 0
    checkpoint = p["out"] / "checkpoint-1"
    resume = train + " --resume_from_checkpoint " + str(checkpoint)
    assert stage(resume + " --learning_rate 1", **p) == 2
    assert "cannot resume a different run: --learning_rate 0.001 vs 1.0 now" in capsys.readouterr().err
    assert stage(resume.replace("--do_train", "--do_train --train_init --model_type initbert"), **p) == 2
    assert "stage finetune vs train_init now" in capsys.readouterr().err
    state = json.loads((checkpoint / "training_state.json").read_text())
    (checkpoint / "training_state.json").write_text(json.dumps({**state, "world_size": 2}))
    assert stage(resume, **p) == 2
    assert "world size 2 vs 1 now" in capsys.readouterr().err
    weights = checkpoint / "optimizer.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    before = sorted(x.name for x in p["out"].iterdir())
    assert stage(resume, **p) == 2
    err = capsys.readouterr().err
    assert "optimizer.safetensors is missing or differs from when it was saved" in err and "Traceback" not in err
    (checkpoint / "training_state.json").unlink()
    assert stage(resume, **p) == 2
    assert "not a complete step checkpoint" in capsys.readouterr().err
    assert sorted(x.name for x in p["out"].iterdir()) == before


def test_the_stage_runs_on_a_cpu_under_bfloat16():
    model = TRBertForSequenceClassification(tiny_bert_config()).train()
    with Precision(bf16=True).autocast(torch.device("cpu")):
        out = model(torch.randint(5, 40, (2, 6)), torch.ones(2, 6, dtype=torch.bool), policy=Sample(torch.arange(2)))
    assert out.logits.dtype == torch.bfloat16 and out.select_nll.dtype == torch.float32
