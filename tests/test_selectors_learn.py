"""Selectors that learn: their own learning rate in every stage that trains them, and a health
report that tells an untrained selector from a trained one."""

import pytest
import torch
from conftest import tiny_bert_config

from trbert import TRBertForSequenceClassification
from trbert.config import TrainConfig
from trbert.train.distributed import World
from trbert.train.health import looks_untrained, selector_health, warn_if_untrained
from trbert.train.loop import parameter_groups


def _rates(groups, model):
    selectors = {id(p) for p in model.selector_parameters()}
    return {
        ("selector" if id(g["params"][0]) in selectors else "backbone", g["weight_decay"] > 0): g["lr"] for g in groups
    }


@pytest.mark.parametrize("trains", ["all", "selectors", "backbone"])
def test_parameter_groups_get_the_rates_asked_for(trains):
    model = TRBertForSequenceClassification(tiny_bert_config())
    cfg = TrainConfig(learning_rate=3e-5, selector_learning_rate=1e-3, weight_decay=0.01)
    groups = parameter_groups(model, trains, cfg)
    rates = _rates(groups, model)
    want = {"all": {"backbone", "selector"}, "selectors": {"selector"}, "backbone": {"backbone"}}[trains]
    assert {kind for kind, _ in rates} == want
    assert all(lr == (1e-3 if kind == "selector" else 3e-5) for (kind, _), lr in rates.items())
    trainable = {id(p) for g in groups for p in g["params"]}
    assert all(p.requires_grad == (id(p) in trainable) for p in model.parameters())  # the rest is frozen
    assert all(g["weight_decay"] == (0.01 if g["params"][0].ndim > 1 else 0.0) for g in groups)


def test_one_rate_for_all_when_the_flag_is_unset():
    model = TRBertForSequenceClassification(tiny_bert_config())
    groups = parameter_groups(model, "all", TrainConfig(learning_rate=3e-5))
    assert {g["lr"] for g in groups} == {3e-5} and len({id(p) for g in groups for p in g["params"]}) == len(
        list(model.parameters())
    )


def _features(n=16, width=24):
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(8, width + 1, (n,), generator=g)
    ids = torch.randint(5, 40, (n, width), generator=g) * (torch.arange(width) < lengths[:, None])
    guide = torch.rand(n, 2, width, generator=g)
    return {"input_ids": ids.int().numpy(), "lengths": lengths.int().numpy(), "guide": guide.numpy()}


def test_the_health_report_tells_untrained_from_trained_selectors(caplog):
    torch.manual_seed(0)
    fresh = TRBertForSequenceClassification(tiny_bert_config())
    features = _features()
    report = selector_health(fresh, features, World())
    assert len(report) == 2 and looks_untrained(report)
    assert all(abs(r["score_gap"]) < 0.2 for r in report)  # a coin flip is no better than random
    with caplog.at_level("WARNING"):
        warn_if_untrained(report, "train_rl")
    assert "selectors look untrained" in caplog.text and "--selector_learning_rate" in caplog.text

    decisive = TRBertForSequenceClassification(tiny_bert_config())
    for selector in decisive.selectors:  # weights far from their start: decisive keep probabilities
        torch.nn.init.normal_(selector.hidden.weight, std=1.0)
        torch.nn.init.normal_(selector.out.weight, std=3.0)
    trained = selector_health(decisive, features, World())
    assert not looks_untrained(trained) and all(r["confident"] > 0.5 for r in trained)
    caplog.clear()
    with caplog.at_level("WARNING"):
        warn_if_untrained(trained, "train_rl")
    assert "untrained" not in caplog.text
