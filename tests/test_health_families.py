"""Health rules per activation family, on short real runs through bnscope.watch: the examples (a ReLU CNN,
a GELU transformer) and the lecture's MLP with sigmoids stay ok, their deliberately broken versions are
red at init, and what no rule was calibrated on is "not judged", never judged by tanh's rules."""

import importlib.util

import pytest
import torch

from bnscope import health
from tests.conftest import REPO

spec = importlib.util.spec_from_file_location("calibrate_families", REPO / "scripts" / "calibrate_families.py")
families = importlib.util.module_from_spec(spec)
spec.loader.exec_module(families)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def not_ok(history) -> list:
    return [(step, c) for step, measured in history for c in health.checks(measured) if c[3] != "ok"]


def red_at_init(history) -> set[tuple[str, str]]:
    step, measured = history[0]
    assert step == 0
    return {(rule, label) for rule, label, _, level in health.checks(measured) if level == "red"}


def test_the_cnn_example_is_healthy_and_judged_by_the_relu_rules_only():
    history = families.cnn(120).monitor.history
    assert [step for step, _ in history] == list(range(0, 120, 20))
    assert not not_ok(history)
    _, measured = history[-1]
    assert set(measured) == {"relu_dead", "relu_activation_std"}  # no tanh rule, no update:data or gradient flow
    assert set(measured["relu_dead"]) == {"relu", "head.4"}


def test_dead_relus_are_red_at_init():
    assert red_at_init(families.cnn(1, broken=True).monitor.history) >= {("relu_dead", "relu"), ("relu_dead", "head.4")}


def test_the_transformer_example_is_healthy():
    history = families.transformer(200).monitor.history
    assert len(history) == 4 and not not_ok(history)
    assert set(history[-1][1]) == {"gelu_dead", "gelu_activation_std"}


def test_an_exploding_gain_is_red_at_init():
    red = red_at_init(families.transformer(1, broken=True).monitor.history)
    assert red == {("gelu_activation_std", "blocks.0.mlp.1"), ("gelu_activation_std", "blocks.1.mlp.1")}
    relu = red_at_init(families.mlp("relu", 1, batchnorm=False, gain=5.0).monitor.history)
    assert {rule for rule, _ in relu} == {"relu_activation_std", "relu_dead"}


def test_sigmoids_saturate_red_without_batchnorm_at_gain_5_and_not_with_it():
    assert not not_ok(families.mlp("sigmoid", 200).monitor.history)
    hot = red_at_init(families.mlp("sigmoid", 1, batchnorm=False, gain=5.0).monitor.history)
    assert {rule for rule, _ in hot} == {"sigmoid_saturation"} and len(hot) == 5


def activation(kind: str, **values) -> dict:
    return {
        "name": f"{kind}1",
        "kind": kind,
        "units": 10,
        "saturation": 50.0,
        "dead": 0,
        "std": 0.6,
        "grad_std": 1.0,
        **values,
    }


def stats(*acts, weights=("w",)) -> dict:
    return {"activations": list(acts), "weights": [{"name": name} for name in weights], "norms": []}


def test_what_no_rule_was_calibrated_on_is_not_judged():
    # half a ReLU's outputs at 0 (its "saturation") is normal: no rule judges it, tanh's least of all
    relu = stats(activation("relu", saturation=80.0), activation("relu", name="relu2"))
    assert "saturation" not in health.measure(relu, {"w": [-1.0]})
    assert {(n["quantity"], n["label"]) for n in health.not_judged(relu)} == {
        ("saturation", "relu1"),
        ("saturation", "relu2"),
        ("gradient_flow", "relu2 / relu1"),
        ("update_to_data", "w"),
    }
    # a kind no rule knows: everything not judged; a network of tanhs: everything judged
    elu = stats(activation("elu"))
    assert not health.measure(elu, {}) and len(health.not_judged(elu)) == 4
    assert health.not_judged(stats(activation("tanh"), activation("tanh", name="tanh2"))) == []
    # a network mixing families: each layer by its own rule, the network's quantities not judged
    mixed = health.measure(stats(activation("tanh"), activation("gelu", std=3.0)), {"w": [-3.0]})
    assert mixed["activation_std"] == {"tanh1": 0.6} and mixed["gelu_activation_std"] == {"gelu1": 3.0}
    assert "update_to_data" not in mixed and "gradient_flow" not in mixed


LEVELS = {  # values a badge shows and the level each must get, written out from the calibration table
    "sigmoid_saturation": {"ok": (0.0, 0.09, 5.0), "amber": (5.5, 20.0), "red": (23.6, 47.3)},
    "relu_dead": {"ok": (0.0, 2.0), "amber": (5.0, 10.0), "red": (12.0, 20.8, 46.9)},
    "gelu_dead": {"ok": (0.0, 2.0), "amber": (3.9, 10.0), "red": (12.0,)},
    "relu_activation_std": {"ok": (0.56, 0.9, 1.5), "amber": (2.0, 2.5), "red": (2.74, 446.0)},
    "gelu_activation_std": {"ok": (0.3, 0.64, 1.5), "amber": (2.0, 2.5), "red": (2.76, 3.26, 447.0)},
}


@pytest.mark.parametrize("rule_id", LEVELS)
def test_values_from_the_calibration_get_their_level(rule_id):
    wrong = [
        (value, level, judged)
        for level, values in LEVELS[rule_id].items()
        for value in values
        if (judged := health.verdict(rule_id, value)) != level
    ]
    assert not wrong, f"{rule_id}: (value, expected, judged) {wrong}"
