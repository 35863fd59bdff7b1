"""The demo's results table: every number comes from the stage results and the curve's points."""

from pathlib import Path

from trbert.tools.demo import SEEDS, base_job, stages, table
from trbert.tools.tradeoff import Point


def test_the_table_reports_the_stages_and_the_matched_baselines():
    bert = {"acc": 0.795, "mflops": 579.0, "examples": 800}
    tr = {"acc": 0.74375, "mflops": 222.7, "kept_fraction": [0.289, 0.274], "flops_speedup": 2.6}
    points = [
        Point("full", "-", 0.795, 579.0, 1.0, speedup={"1": 1.0, "64": 1.0}),
        Point("tr-bert", "alpha=2", 0.74375, 222.7, 2.6, [0.289, 0.274], speedup={"1": 1.22, "64": 2.23}),
        Point("truncation", "k=11", 0.7037, 231.4, 2.5, speedup={"1": 1.26, "64": 2.3}),
        Point("random", "as alpha=2", 0.6546, 222.3, 2.6, metric_std=0.0051),
        Point("attention", "as alpha=2", 0.64, 222.3, 2.6),
    ]
    results = {"evaluate BERT": [bert], "evaluate TR-BERT": [tr]}
    text = table(results, points, {"fine-tune": 120.0, "selector RL": 60.0}, Path("out"))
    rows = {line.split("|")[1].strip(): line.split("|")[2].strip() for line in text.splitlines()}
    assert rows["TR-BERT accuracy"] == "0.7438" and rows["FLOPs speed-up"] == "2.60x"
    assert rows["measured speed-up, batch 1"] == "1.22x" and rows["measured speed-up, batch 64"] == "2.23x"
    assert rows["at 2.60x FLOPs: head truncation"] == "0.7037 (k=11 tokens, 2.50x FLOPs)"
    assert rows["at TR-BERT's token counts: random drop"] == f"0.6546 ± 0.0051 ({SEEDS} seeds)"
    assert rows["pipeline wall time"].startswith("3.0 min (fine-tune 120s, selector RL 60s")
    jobs = dict(stages(base_job(Path("d"), Path("o"), "lm"), Path("o")))
    assert list(jobs)[-2:] == ["evaluate BERT", "evaluate TR-BERT"]
    rl, both = jobs["selector RL"], jobs["joint training"]
    assert rl.stage == "train_rl" and rl.reduction.alpha == 2.0 and rl.train.selector_learning_rate == 1e-3
    assert both.run.model_name_or_path == "o/auto_rl" and both.train.max_steps == 150 and both.reduction.train_teacher
    assert jobs["token scores"].run.do_eval_grad and not jobs["token scores"].run.do_train
    assert {"--train_rl", "--alpha 2.0", "--max_seq_length 64"} <= set(
        rl.command_line().replace(" --", "\n--").split("\n")
    )
