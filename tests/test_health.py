"""The health badges: measured on short real runs of the lecture's network, the healthy one stays ok
while the lecture's broken ones are flagged at init; the rules' boundaries; the route that serves them."""

import math

import pytest
import torch
from fastapi import FastAPI
from fastapi.testclient import TestClient

from bnscope import health
from bnscope.api.routes.health import router
from bnscope.config import RunConfig
from bnscope.train.data import make_splits
from bnscope.train.trainer import Trainer
from bnscope.train.worker import CommandQueue

RULE_IDS = ["saturation", "dead", "activation_std", "gradient_flow", "update_to_data"]


@pytest.fixture(scope="module")
def real_splits(real_words):
    # every 4th real name: real minibatches, and the end-of-run evaluations a quarter of the cost
    return make_splits(real_words[::4], block_size=3)


@pytest.fixture(scope="module")
def run(real_splits):
    """Train a config for a few hundred steps on the real names; its measures at every stats step."""

    def train(steps: int = 300, **overrides) -> list[tuple[int, health.Measured]]:
        config = RunConfig(steps=steps, stats_every=100, **overrides)
        monitor = health.Monitor()
        Trainer(config, real_splits, monitor, checkpoint_every=10**9, device=torch.device("cpu")).run(CommandQueue())
        return monitor.history

    return train


def flagged(measured: health.Measured, rule_id: str) -> dict[str, str]:
    """The labels of one rule that are not ok, with their level."""
    levels = {label: health.verdict(rule_id, v) for label, v in measured[rule_id].items()}
    return {label: level for label, level in levels.items() if level != "ok"}


# ---- measured -----------------------------------------------------------------------------------------
def test_the_lectures_network_is_healthy_at_init_and_while_it_trains(run):
    history = run()
    assert [step for step, _ in history] == [0, 100, 200]
    for step, measured in history:
        assert set(measured) == set(RULE_IDS) and all(measured.values()), "every rule has a badge"
        bad = [c for c in health.checks(measured) if c[3] != "ok"]
        assert not bad, f"step {step}: {bad}"


def test_gain_5_without_batchnorm_saturates_at_init(run):
    # a smaller deep network than the lecture's: the same failure, it is the gain, not the width
    step, measured = run(steps=1, gain=5.0, batchnorm=False, n_hidden=64)[0]
    assert step == 0
    assert set(flagged(measured, "saturation")) == {f"tanh{i}" for i in range(1, 6)}
    assert flagged(measured, "gradient_flow"), "saturated tanhs squash the gradient on its way back"


def test_gain_half_with_batchnorm_shows_in_update_to_data(run):
    # BatchNorm undoes the small weights in the forward pass: the activations look like the default's...
    cold, default = run(steps=1, gain=0.5)[0][1], run(steps=1)[0][1]
    assert not [c for c in health.checks(cold) if c[0] in ("saturation", "dead", "activation_std") and c[3] != "ok"]
    # ...but each step changes the small weights by ~10x more of themselves
    assert set(flagged(cold, "update_to_data")) & {f"linear{i}" for i in range(1, 7)}
    assert not flagged(default, "update_to_data")


def test_gain_half_without_batchnorm_shrinks_activations_with_depth(run):
    _, measured = run(steps=1, gain=0.5, batchnorm=False)[0]
    assert "tanh5" in flagged(measured, "activation_std")
    assert flagged(measured, "gradient_flow")


def test_batchnorm_off_shows_in_the_last_layers_update_to_data(run):
    # without BN the last Linear itself is scaled by 0.1 at init: its steps are huge next to its weights
    _, measured = run(steps=1, batchnorm=False)[0]
    assert "linear6" in flagged(measured, "update_to_data")


def test_a_learning_rate_far_too_high_kills_units(run):
    history = run(steps=300, lr=50.0, batchnorm=False)
    assert flagged(history[0][1], "update_to_data")  # at step 0 already
    assert flagged(history[-1][1], "dead")  # and a few steps later the tanhs are pinned at +-1


# ---- the measures' bookkeeping --------------------------------------------------------------------------
def stats_event(step: int, grad_stds: list[float]) -> dict:
    acts = [
        {"name": f"tanh{i}", "kind": "tanh", "units": 10, "saturation": 1.0, "dead": 2, "std": 0.6, "grad_std": g}
        for i, g in enumerate(grad_stds, 1)
    ]
    return {"type": "stats", "step": step, "activations": acts, "weights": [], "norms": []}


def test_update_to_data_is_the_mean_of_the_last_five_finite_values():
    monitor = health.Monitor()
    rows = [[-1.0], [-2.0], [None], [-3.0], [-4.0], [-5.0], [-6.0]]  # None: an all-zero gradient
    monitor(
        {
            "type": "scalars",
            "step": 0,
            "loss": [],
            "lr": 0.1,
            "steps_per_s": 0,
            "ud_names": ["linear1"],
            "ud_steps": list(range(0, 70, 10)),
            "ud": rows,
        }
    )
    monitor(stats_event(60, [2.0, 1.0]))
    step, measured = monitor.history[0]
    assert step == 60
    assert measured["update_to_data"] == {"linear1": pytest.approx(-4.0)}  # -2 .. -6
    assert measured["gradient_flow"] == {"tanh2 / tanh1": 0.5}
    assert measured["dead"] == {"tanh1": 20.0, "tanh2": 20.0}  # 2 of 10 units, as %


def test_gradient_flow_needs_two_layers_and_a_gradient():
    assert health.measure(stats_event(0, [1.0]), {})["gradient_flow"] == {}
    assert health.measure(stats_event(0, [0.0, 1.0]), {})["gradient_flow"] == {}


# ---- the rules -------------------------------------------------------------------------------------------
def test_every_rule_is_defined_once_in_the_order_of_the_badges():
    ids = [rule.id for rule in health.RULES]
    assert len(set(ids)) == len(ids) and [i for i in ids if i in RULE_IDS] == RULE_IDS  # others: test_health_families


@pytest.mark.parametrize("rule", health.RULES, ids=lambda r: r.id)
def test_amber_sits_inside_red_and_bounds_are_ok(rule):
    (alo, ahi), (rlo, rhi) = rule.amber, rule.red
    assert (alo is None) == (rlo is None) and (ahi is None) == (rhi is None)
    for amber, red, sign in ((alo, rlo, -1), (ahi, rhi, 1)):
        if amber is None:
            assert health.verdict(rule.id, sign * 1e12) == "ok"  # unbounded side
            continue
        assert sign * red > sign * amber
        assert health.verdict(rule.id, amber) == "ok"  # a bound is inside
        assert health.verdict(rule.id, amber + sign * 1e-9) == "amber"
        assert health.verdict(rule.id, red) == "amber"
        assert health.verdict(rule.id, red + sign * 1e-9) == "red"
    assert health.verdict(rule.id, math.nan) == "red"  # a diverged run


# values a badge shows, and the level each must get: written out, not derived from the rules, so that moved or
# swapped bounds fail here by name; most are figures of health.py's calibration table
LEVELS = {
    "saturation": {"ok": (0.0, 3.0, 24.7, 30.0), "amber": (30.5, 40.0, 50.0), "red": (50.5, 64.0, 100.0)},
    "dead": {"ok": (0.0,), "amber": (0.5, 5.0, 10.0), "red": (12.5, 87.0, 100.0)},
    "activation_std": {"ok": (0.5, 0.62, 0.82, 0.85), "amber": (0.3, 0.41, 0.87, 0.9), "red": (0.024, 0.1, 0.91, 1.5)},
    "gradient_flow": {"ok": (0.2, 0.27, 1.0, 1.35, 2.0), "amber": (0.115, 0.15, 3.0, 5.0), "red": (0.05, 9.6, 16.2)},
    "update_to_data": {"ok": (-3.98, -3.0, -2.18), "amber": (-5.0, -1.84, -1.6), "red": (-5.6, -0.62, -0.54)},
}


@pytest.mark.parametrize("rule_id", RULE_IDS)
def test_values_inside_amber_and_inside_red_get_that_level(rule_id):
    wrong = []
    for level, values in LEVELS[rule_id].items():
        wrong += [(value, level, judged) for value in values if (judged := health.verdict(rule_id, value)) != level]
    assert not wrong, f"{rule_id}: (value, expected, judged) {wrong}"


def test_an_unknown_rule_is_an_error():
    with pytest.raises(KeyError):
        health.verdict("loss", 1.0)


# ---- the route -------------------------------------------------------------------------------------------
def test_the_route_serves_the_rules():
    app = FastAPI()
    app.include_router(router)
    response = TestClient(app).get("/api/health/rules")
    assert response.status_code == 200
    rules = response.json()["rules"]
    assert [r["id"] for r in rules] == [rule.id for rule in health.RULES]
    for served, rule in zip(rules, health.RULES):
        assert served["amber"] == list(rule.amber) and served["red"] == list(rule.red)
        assert served["title"] and served["panel"].startswith("panel-") and served["explain"] and served["source"]
    assert "/api/health/rules" in TestClient(app).get("/openapi.json").json()["paths"]
