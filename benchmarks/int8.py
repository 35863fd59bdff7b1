"""CPU serving: does TR-BERT compose with int8? Stock fp32, stock int8, TR-BERT fp32, TR-BERT int8.

    python benchmarks/int8.py --baseline demo_out/bert --trbert demo_out/auto_both \
        --data_dir demo_out/data --task_name imdb --max_seq_length 64 --batch 64

On the dev set: accuracy and model time of (a) the stock transformers model of the fine-tuned
checkpoint (``BertForSequenceClassification``, SDPA, padded batches), (b) the same with dynamic int8
Linear layers (torch's ``quantize_dynamic``), (c) the TR-BERT checkpoint on the unpadded path, and
(d) (c) with int8 Linear layers (selectors kept float32: ``--quantize int8`` of ``--do_eval``). The
four alternate within every repeat (median of ``--repeats``). Writes
``benchmarks/results/int8_cpu.{json,md}``. Not a test.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's trbert, not an installed one

from trbert.core.policy import Threshold  # noqa: E402
from trbert.train.cli import parse_args  # noqa: E402
from trbert.train.data import batches  # noqa: E402
from trbert.train.distributed import World  # noqa: E402
from trbert.train.inference import predict, quantized  # noqa: E402
from trbert.train.pipeline import features, load_tokenizer, make_task, model_at  # noqa: E402


def stock_time(model, arrays, batch: int) -> tuple[float, np.ndarray]:
    """Model time and predicted labels of a stock transformers classifier on padded batches."""
    seconds, labels = 0.0, np.zeros(len(arrays["lengths"]), dtype=np.int64)
    with torch.no_grad():
        for b in batches(arrays, batch, by_length=True):
            start = time.perf_counter()
            logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"].long()).logits
            seconds += time.perf_counter() - start
            labels[b["index"].numpy()] = logits.argmax(-1).numpy()
    return seconds, labels


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for flag in ("--baseline", "--trbert", "--data_dir"):
        parser.add_argument(flag, required=True)
    parser.add_argument("--task_name", default="imdb")
    parser.add_argument("--max_seq_length", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/int8_cpu")
    args = parser.parse_args(argv)
    job = parse_args([], given=dict(task_name=args.task_name, data_dir=args.data_dir, max_seq_length=args.max_seq_length,
                                    model_type="autobert", model_name_or_path=args.trbert, output_dir=args.trbert,
                                    do_eval=True, per_gpu_eval_batch_size=args.batch))  # fmt: skip
    task, world = make_task(job), World()
    arrays, _ = features(job, task, "dev", load_tokenizer(job, args.trbert))
    gold = np.asarray(arrays["labels"])
    from transformers import BertForSequenceClassification

    stock = BertForSequenceClassification.from_pretrained(args.baseline).eval()
    tr = model_at(job, task, args.trbert, world).eval()
    models = {
        "stock fp32": stock,
        "stock int8": quantized(stock, "int8"),
        "TR-BERT fp32": tr,
        "TR-BERT int8": quantized(tr, "int8"),
    }
    times: dict[str, list[float]] = {name: [] for name in models}
    accuracy = {}
    for _ in range(args.repeats):
        for name, model in models.items():
            if name.startswith("stock"):
                seconds, labels = stock_time(model, arrays, args.batch)
            else:
                pred = predict(model, arrays, Threshold(), job.evaluation, job.precision, world)
                seconds, labels = pred.seconds, pred.logits.argmax(-1)
            times[name].append(seconds)
            accuracy[name] = float((labels == gold).mean())
    base = statistics.median(times["stock fp32"])
    rows = [{"model": n, "accuracy": accuracy[n], "seconds": statistics.median(t), "speedup_over_stock_fp32": base / statistics.median(t)} for n, t in times.items()]  # fmt: skip
    command = "python benchmarks/int8.py " + " ".join(sys.argv[1:] if argv is None else argv)
    lines = [f"`{command}` ({len(gold)} dev examples, batch {args.batch}, {torch.get_num_threads()} threads)", "",
             "| model | accuracy | seconds | speed-up over stock fp32 |", "|---|---|---|---|"]  # fmt: skip
    lines += [
        f"| {r['model']} | {r['accuracy']:.4f} | {r['seconds']:.2f} | {r['speedup_over_stock_fp32']:.2f}x |"
        for r in rows
    ]
    Path(args.out).with_suffix(".json").write_text(json.dumps({"command": command, "rows": rows}, indent=2))
    Path(args.out).with_suffix(".md").write_text("\n".join(lines) + "\n")
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
