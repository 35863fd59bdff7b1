"""The CUDA paths: unpadded vs padded vs jagged on the device in fp32/bf16, every stage with --fp16
(gradient scaler) and --bf16, a resume, a 1-process NCCL run. Marked ``cuda``: they run on a GPU,
or on the CPU with ``TRBERT_TEST_DEVICE=cpu`` (the dry run of ``bash runs/gpu.sh --cpu``), and skip
otherwise."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from test_pipeline import COMMON, ROOT, stage
from test_unpadded import CASES, _assert_same, _model

from trbert.core.policy import Threshold

DEVICE = "cuda" if torch.cuda.is_available() else os.environ.get("TRBERT_TEST_DEVICE", "")
pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not DEVICE, reason="no CUDA device (set TRBERT_TEST_DEVICE=cpu for the CPU dry run)"),
]


def _device_flags() -> str:
    return "" if DEVICE == "cuda" else "--no_cuda"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("case", ["classification-bert", "span-bert", "wikihop-windows", "choice-bert"])
def test_paths_agree_on_the_device(case, dtype):
    cls, make_batch = CASES[case]
    model = _model(cls).to(DEVICE)
    ids, mask, types, extra = make_batch(0)
    move = {k: {n: t.to(DEVICE) for n, t in v.items()} for k, v in extra.items()}
    inputs = [t.to(DEVICE) if t is not None else None for t in (ids, mask, types)]
    with torch.no_grad(), torch.autocast(DEVICE, dtype=dtype, enabled=dtype != torch.float32):
        padded = model(*inputs, policy=Threshold(), **move)
        outs = []
        kernels = ["padded", "jagged", "auto"] + ["varlen"] * (DEVICE == "cuda" and dtype != torch.float32)
        for kernel in kernels:  # auto: varlen (flash) on CUDA in bf16, padded elsewhere
            model.attention_kernel = kernel
            outs.append(model(*inputs, policy=Threshold(), path="unpadded", **move))
    for out in outs:
        if dtype == torch.float32:
            _assert_same(padded, out)
        else:  # bf16: the same tokens, logits to bf16 precision
            assert [k.tolist() for k in out.kept] == [k.tolist() for k in padded.kept]
            assert (out.logits.float() - padded.logits.float()).abs().max() <= 0.1


@pytest.mark.parametrize("precision", ["--fp16", "--bf16"])
def test_every_stage_in_mixed_precision(tmp_path, imdb_dir, tiny_bert_dir, precision):
    if precision == "--fp16" and DEVICE != "cuda":
        pytest.skip("float16 autocast with a gradient scaler is a CUDA path")
    p = {
        "data": imdb_dir,
        "lm": tiny_bert_dir,
        "bert": tmp_path / "bert",
        "rl": tmp_path / "rl",
        "both": tmp_path / "both",
    }
    flags = f"{precision} {_device_flags()} --max_steps 3"
    for command in (
        "--model_type bert --model_name_or_path {lm} --output_dir {bert} --do_train",
        "--model_type bert --model_name_or_path {bert} --output_dir {bert} --do_eval_grad --do_eval_logits",
        "--model_type autobert --model_name_or_path {bert} --output_dir {rl} --do_train --train_rl",
        "--model_type autobert --model_name_or_path {rl} --output_dir {both} --do_train --train_both --train_teacher",
        "--model_type autobert --model_name_or_path {both} --output_dir {both} --do_eval",
    ):
        assert stage(f"{command} {flags}", **p) == 0, command
    assert json.loads((p["both"] / "eval_results.json").read_text())["flops_speedup"] >= 1


def test_resume_on_the_device(tmp_path, imdb_dir, tiny_bert_dir):
    """A run cut after its step-3 checkpoint and resumed ends where the uncut run ends."""
    from safetensors.torch import load_file

    p = {"data": imdb_dir, "lm": tiny_bert_dir, "full": tmp_path / "full", "cut": tmp_path / "cut"}
    train = f"--model_type bert --model_name_or_path {{lm}} --do_train --max_steps 6 --save_steps 3 {_device_flags()}"
    assert stage(train + " --output_dir {full}", **p) == 0
    assert stage(train + " --output_dir {cut}", **p) == 0
    shutil.rmtree(p["cut"] / "checkpoint-6")
    for name in ("model.safetensors", "config.json", "trbert_stage.json"):
        (p["cut"] / name).unlink()  # as if it had been killed after checkpoint-3
    assert stage(train + " --output_dir {cut} --resume_from_checkpoint latest", **p) == 0
    full, cut = (load_file(str(p[k] / "model.safetensors")) for k in ("full", "cut"))
    assert max((full[k] - cut[k]).abs().max().item() for k in full) <= (1e-6 if DEVICE == "cuda" else 0)


def test_one_process_under_torchrun(tmp_path, imdb_dir, tiny_bert_dir):
    """torchrun with one process: the process group (NCCL on a GPU, gloo on the CPU) and DDP."""
    argv = f"{COMMON} --model_type bert --model_name_or_path {tiny_bert_dir} --output_dir {tmp_path / 'out'} --do_train --max_steps 2 {_device_flags()}"
    run = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1"]
    done = subprocess.run([*run, str(ROOT / "run_classification.py"), *argv.format(data=imdb_dir).split()],
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    backend = "nccl" if DEVICE == "cuda" else "gloo"
    assert f"process group: 1 ranks ({backend})" in done.stderr
    assert (tmp_path / "out" / "model.safetensors").is_file()
