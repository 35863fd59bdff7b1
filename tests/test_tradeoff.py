"""``python -m trbert tradeoff`` and ``python -m trbert show`` end to end on the tiny model, for
classification and SQuAD; their bad input."""

import json
import shlex
import shutil

import numpy as np
import pytest
import torch
from conftest import FIXTURES
from test_pipeline import ROOT, stage
from test_span import _span_stage
from test_tokenview import Words

from trbert.__main__ import main
from trbert.core.policy import Threshold
from trbert.store.checkpoint import load_model
from trbert.tools.tokenview import join_wordpieces
from trbert.tools.tradeoff import Sweep, TradeoffOptions, matching_length, train_points, truncated
from trbert.train.cli import parse_args

CLASSIFY = "--task_name imdb --data_dir {data} --max_seq_length 32 --features_cache_dir {cache}"
SQUAD = (
    "--data_dir {data} --max_seq_length 48 --doc_stride 16 --max_query_length 12 --version_2_with_negative"
    " --features_cache_dir {cache}"
)
SWEEP = (
    "--alphas 1 4 --seeds 2 --timing_examples 4 --timing_batches 1 4 --timing_repeats 1"
    " --rl '--max_steps 3' --joint '--max_steps 2'"
)


def _trbert(command: str, **paths) -> int:
    return main(shlex.split(command.format(**paths)))


@pytest.fixture(scope="module")
def classification(tmp_path_factory, tiny_bert_dir):
    root = tmp_path_factory.mktemp("tradeoff")
    p = {
        "data": root / "imdb",
        "lm": tiny_bert_dir,
        "bert": root / "bert",
        "out": root / "sweep",
        "cache": root / "cache",
    }
    shutil.copytree(ROOT / "tests" / "fixtures" / "imdb", p["data"])
    assert stage("--model_type bert --model_name_or_path {lm} --output_dir {bert} --do_train --max_steps 4", **p) == 0
    assert _trbert(f"tradeoff --model_dir {{bert}} --output_dir {{out}} {SWEEP} {CLASSIFY}", **p) == 0
    return p


def test_the_curve_has_every_method_at_every_alpha(classification):
    out = classification["out"]
    payload = json.loads((out / "tradeoff.json").read_text())
    points = payload["points"]
    assert payload["metric"] == "acc" and points[0]["method"] == "full" and points[0]["flops_speedup"] == 1.0
    methods = [p["method"] for p in points[1:]]
    assert methods == ["tr-bert", "truncation", "random", "attention"] * 2
    for p in points:
        assert 0 <= p["metric"] <= 1 and p["mflops"] > 0 and set(p["speedup"]) == {"1", "4"}
    for tr, cut, rand, att in zip(*(iter(points[1:]),) * 4, strict=True):
        assert rand["kept_fraction"] == att["kept_fraction"] == tr["kept_fraction"]  # the same counts
        assert rand["flops_speedup"] == pytest.approx(att["flops_speedup"])
        assert cut["flops_speedup"] >= 1 and cut["setting"].startswith("k=")
    assert (out / "tradeoff.md").read_text().count("| tr-bert |") == 2
    png = (out / "tradeoff.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_an_interrupted_sweep_reuses_finished_points(classification):
    p = classification
    done = {a: (p["out"] / f"alpha_{a}" / "both" / "model.safetensors").stat().st_mtime for a in (1, 4)}
    shutil.rmtree(p["out"] / "alpha_4" / "both")  # alpha 4 was interrupted before its joint training
    given = dict(model_type="bert", model_name_or_path=str(p["bert"]), output_dir=str(p["bert"]), do_eval=True)
    job = parse_args(shlex.split(CLASSIFY.format(**p)), given=given)
    options = TradeoffOptions(model_dir=str(p["bert"]), output_dir=str(p["out"]), alphas=(1.0, 4.0))
    points = train_points(Sweep(options, job, {"max_steps": 3}, {"max_steps": 2}))
    assert (p["out"] / "alpha_1" / "both" / "model.safetensors").stat().st_mtime == done[1]  # reused
    assert points[4.0] == p["out"] / "alpha_4" / "both" and (points[4.0] / "model.safetensors").is_file()


def test_show_draws_what_the_model_kept(classification, tmp_path):
    p = {**classification, "page": tmp_path / "view.html"}
    model_dir = p["out"] / "alpha_1" / "both"
    command = f"show --model_dir {model_dir} --output {{page}} --examples 5 {CLASSIFY}"
    assert _trbert(command, **p) == 0
    parsed = Words()
    parsed.feed(p["page"].read_text())
    assert sorted(set(parsed.examples)) == list(range(5))
    model = load_model(str(model_dir), "autobert", 2).eval()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    dev = [json.loads(line)["text"] for line in (p["data"] / "dev.jsonl").read_text().splitlines()[:5]]
    for i, text in enumerate(dev):
        encoded = tokenizer(text, truncation=True, max_length=32, return_tensors="pt")
        with torch.no_grad():
            out = model(encoded["input_ids"], encoded["attention_mask"].bool(), policy=Threshold())
        survivors = set(out.positions[0].tolist()) - {-1}
        tokens = tokenizer.convert_ids_to_tokens(encoded["input_ids"][0])
        depth = [2 if t in survivors else 0 for t in range(len(tokens))]
        words = join_wordpieces(tokens, depth, [[None, None]] * len(tokens), [False] * len(tokens))
        shown = [w for w in parsed.words if w["example"] == i]
        assert [w["data-depth"] == "2" for w in shown] == [w.depth == 2 for w in words]


def test_truncation_matches_the_flops_and_cuts_the_answers():
    from transformers import BertConfig

    from trbert.core.flops import FlopsCounter

    counter = FlopsCounter.from_config(BertConfig(num_labels=2))
    lengths = np.array([512, 300, 100])
    target = np.mean(counter.full(lengths)) / 2.5
    k = matching_length(counter, lengths, target)
    costs = {j: np.mean(counter.full(np.minimum(lengths, j))) for j in (k - 1, k, k + 1)}
    assert abs(costs[k] - target) <= min(abs(costs[k - 1] - target), abs(costs[k + 1] - target))  # the closest
    features = {"input_ids": np.arange(12).reshape(2, 6), "lengths": np.array([6, 3]), "offsets": np.zeros((2, 6, 2))}
    cut = truncated(features, 4, sep_id=99)
    assert cut["lengths"].tolist() == [4, 3] and cut["input_ids"][0].tolist() == [0, 1, 2, 99, 0, 0]
    assert cut["input_ids"][1].tolist()[:3] == [6, 7, 8] and (cut["offsets"][:, 3:] == -1).all()
    # HotpotQA: a sentence survives only if it ends before the [SEP] that replaces the last kept token
    sentences = {"sent_starts": np.array([[1, 2, -1], [1, -1, -1]]), "sent_ends": np.array([[1, 4, -1], [2, -1, -1]])}
    cut = truncated({**features, **sentences}, 4, sep_id=99)
    assert cut["sent_starts"].tolist() == [[1, -1, -1], [1, -1, -1]]
    assert cut["sent_ends"].tolist() == [[1, -1, -1], [2, -1, -1]]


def test_truncation_of_windowed_examples_prices_their_real_windows():
    """TriviaQA: an example's real windows count together, filler windows ([CLS] only) not at all."""
    from transformers import BertConfig

    from trbert.core.flops import FlopsCounter
    from trbert.train.inference import full_macs

    counter = FlopsCounter.from_config(BertConfig(num_labels=2))
    lengths = np.array([[512, 400], [512, 1]])  # the second example has one real window
    full = full_macs(counter, lengths)
    assert full[1] == counter.full([512])[0] and full[0] == counter.full([512, 400]).sum()
    k = matching_length(counter, lengths, full.mean() / 2)
    assert abs(full_macs(counter, np.minimum(lengths, k)).mean() - full.mean() / 2) < counter.full([k])[0] / 2


def test_backbone_of_reads_stock_and_trbert_configs(tmp_path):
    from transformers import DistilBertConfig

    from trbert.core.backbones import TRDistilBertConfig
    from trbert.store.checkpoint import backbone_of

    for name, config in (("stock", DistilBertConfig()), ("ours", TRDistilBertConfig())):
        config.save_pretrained(tmp_path / name)
        assert backbone_of(tmp_path / name) == "distilbert"


def test_squad_sweep_and_view(tmp_path, tiny_bert_dir):
    p = {"data": FIXTURES / "squad", "lm": tiny_bert_dir, "bert": tmp_path / "bert", "out": tmp_path / "sweep"}
    p.update(cache=tmp_path / "cache", page=tmp_path / "view.html")
    assert (
        _span_stage(
            "run_squad.py",
            "--model_type bert --model_name_or_path {lm} --output_dir {bert} --do_train --max_steps 3",
            **p,
        )
        == 0
    )
    sweep = f"tradeoff --family squad --model_dir {{bert}} --output_dir {{out}} {SWEEP.replace('1 4 --seeds', '2 --seeds')} {SQUAD}"
    assert _trbert(sweep, **p) == 0
    points = json.loads((p["out"] / "tradeoff.json").read_text())["points"]
    assert [x["method"] for x in points] == ["full", "tr-bert", "truncation", "random", "attention"]
    assert all(0 <= x["metric"] <= 100 for x in points)
    show = f"show --family squad --model_dir {{out}}/alpha_2/both --output {{page}} --examples 3 {SQUAD}"
    assert _trbert(show, **p) == 0
    page = p["page"].read_text()
    assert page.count('data-example="') == 3 and "question" in page
    assert _trbert(show.replace("--examples 3", "--examples 1000"), **p) == 0
    page = p["page"].read_text()
    assert page.count(' gold"') + page.count(" gold ") >= 2  # the legend's entry, and gold answers in the text


@pytest.mark.parametrize(
    "command,message",
    [
        ("tradeoff --model_dir {bert} --output_dir {out} --alphas " + CLASSIFY, "--alphas is empty"),
        (
            "tradeoff --family race --model_dir {bert} --output_dir {out} " + CLASSIFY,
            "race family has no accuracy-cost",
        ),
        (
            "show --family wikihop --model_dir {bert} --output {out}/p.html " + CLASSIFY,
            "wikihop family has no token view",
        ),
        ("tradeoff --model_dir {bert} --output_dir {out} --rl '--max_steps x' " + CLASSIFY, "--rl"),
        ("tradeoff --model_dir {bert} --output_dir {out} --model_type autobert " + CLASSIFY, "set by the command"),
        ("tradeoff --model_dir {bert} --output_dir {out} --task_name sst9 --data_dir {data}", "unknown --task_name"),
        ("show --model_dir {bert} --output {out}/p.html " + CLASSIFY, "selectors were never trained"),
        ("tradeoff --model_dir {bert} --output_dir {out} --seeds 0 " + CLASSIFY, "--seeds 0: must be at least 1"),
        ("tradeoff --model_dir {bert} --output_dir {out} --timing_batches " + CLASSIFY, "--timing_batches"),
    ],
)
def test_bad_input_gets_one_message(classification, tmp_path, capsys, command, message):
    p = {**classification, "out": tmp_path / "o"}
    assert _trbert(command, **p) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and not p["out"].exists()


@pytest.mark.parametrize(
    "family,script_name,data,flags",
    [
        ("trivia", "run_triviaqa.py", "trivia", "--max_segment 3"),
        ("hotpot", "run_hotpotqa.py", "hotpot", "--max_seq_length 96 --warmup_steps 0"),
    ],
)
def test_windowed_and_hotpot_sweeps_price_examples_and_cut_sentences(
    tmp_path, tiny_bert_dir, family, script_name, data, flags
):
    """TriviaQA's points count an example's real windows (the full model is 1.00x, truncation is
    priced per example); HotpotQA's truncation keeps only sentences that end before the cut."""
    p = {"data": FIXTURES / data, "lm": tiny_bert_dir, "bert": tmp_path / "bert", "out": tmp_path / "sweep"}
    p.update(cache=tmp_path / "cache", page=tmp_path / "view.html")
    finetune = "--model_type bert --model_name_or_path {lm} --output_dir {bert} --do_train --max_steps 3 " + flags
    assert _span_stage(script_name, finetune, **p) == 0
    shared = f"--data_dir {{data}} --max_seq_length 48 --doc_stride 16 --max_query_length 12 --features_cache_dir {{cache}} {flags}"
    sweep = f"tradeoff --family {family} --model_dir {{bert}} --output_dir {{out}} {SWEEP.replace('1 4 --seeds', '3 --seeds')} {shared}"
    assert _trbert(sweep, **p) == 0
    points = {x["method"]: x for x in json.loads((p["out"] / "tradeoff.json").read_text())["points"]}
    assert points["full"]["flops_speedup"] == pytest.approx(1.0)
    tr, cut = points["tr-bert"]["flops_speedup"], points["truncation"]["flops_speedup"]
    assert tr > 1.0 and abs(np.log(cut / tr)) < abs(np.log(tr))  # truncation priced near TR-BERT's cost
    if family == "hotpot":
        show = f"show --family hotpot --model_dir {{out}}/alpha_3/both --output {{page}} --examples 2 {shared}"
        assert _trbert(show, **p) == 0 and p["page"].read_text().count('data-example="') == 2
