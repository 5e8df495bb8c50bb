"""Each of the lecture's experiments (bnscope.presets) shows what its text says: trained here as the server
trains it (one stack, on the bundled names.txt, its own settings and steps), then checked claim by claim."""

import statistics

import pytest
import torch

from bnscope.presets import PRESETS
from bnscope.runs.stacking import grid
from bnscope.train.stack import StackTrainer
from bnscope.train.worker import CommandQueue

pytestmark = pytest.mark.slow
SWEEPS = {p["id"]: p["body"] for p in PRESETS if p["kind"] == "sweep"}


@pytest.fixture(scope="module")
def names_splits():
    from bnscope.train.data import make_splits, read_names

    return make_splits(read_names(), 3)


def train(preset: str, splits) -> dict[str, dict]:
    """Each member's name -> its first loss, its statistics events, its last dev loss and losses."""
    body = SWEEPS[preset]
    members = grid(body["config"], body["vary"])
    events: list[dict] = []
    StackTrainer([c for _, c in members], splits, events.append, device=torch.device("cpu")).run(CommandQueue())
    out = {}
    for i, (name, _) in enumerate(members):
        mine = [e for e in events if e["member"] == i]
        losses = [x for e in mine if e["type"] == "scalars" for x in e["loss"]]
        out[name] = {
            "losses": losses,
            "stats": [e for e in mine if e["type"] == "stats"],
            "dev": [e["loss"] for e in mine if e["type"] == "eval" and e["split"] == "dev"][-1],
            "ud": [e["ud"][-1] for e in mine if e["type"] == "scalars" and e["ud"]][-1],
        }
    return out


def saturation(member: dict, at: int = 0) -> float:
    return statistics.fmean(a["saturation"] for a in member["stats"][at]["activations"])


def test_confidently_wrong(names_splits):
    m = train("confidently-wrong", names_splits)
    assert m["last_layer_scale=1.0"]["losses"][0] > 3.4
    for scale in ("0.1", "0.01"):
        assert m[f"last_layer_scale={scale}"]["losses"][0] == pytest.approx(3.30, abs=0.03)


def test_saturation_against_gain(names_splits):
    m = train("saturation-vs-gain", names_splits)
    at_init = [saturation(m[f"gain={g}"]) for g in (0.5, 1.0, 5 / 3, 3.0, 5.0)]
    assert at_init == sorted(at_init)
    assert at_init[0] < 2 and at_init[1] < 2  # almost none
    assert 5 < at_init[2] < 20  # about a tenth
    assert 30 < at_init[3] < 55  # nearly half
    assert 55 < at_init[4] < 80  # two thirds


def test_kaiming_init(names_splits):
    m = train("kaiming-init", names_splits)
    five_thirds, one = m["init=kaiming, gain=1.6666666666666667"], m["init=kaiming, gain=1.0"]
    default, default_too = m["init=torch-default, gain=1.0"], m["init=torch-default, gain=1.6666666666666667"]
    assert five_thirds["dev"] < one["dev"] < default["dev"]
    assert default["losses"] == default_too["losses"]  # torch's default init takes no gain: the same network
    stds = [a["std"] for a in default["stats"][0]["activations"]]
    assert stds == sorted(stds, reverse=True)  # its activations shrink layer by layer


def test_batchnorm_across_gains(names_splits):
    m = train("batchnorm-x-gain", names_splits)
    gains = (0.5, 1.0, 5 / 3, 3.0, 5.0)
    on = {g: m[f"gain={g}, batchnorm=True"]["dev"] for g in gains}
    off = {g: m[f"gain={g}, batchnorm=False"]["dev"] for g in gains}
    spread = lambda devs: max(devs.values()) - min(devs.values())  # noqa: E731
    assert spread(on) < 0.6 * spread(off)  # about half as much
    assert min(off, key=off.get) == 5 / 3 and max(off, key=off.get) == 5.0


def test_learning_rate_against_update_ratio(names_splits):
    m = train("lr-vs-update-ratio", names_splits)
    lrs = (0.001, 0.01, 0.1, 1.0)
    hidden = {lr: statistics.fmean(m[f"lr={lr}"]["ud"][1:-1]) for lr in lrs}  # the hidden Linears'
    assert [hidden[lr] for lr in lrs] == sorted(hidden[lr] for lr in lrs)
    assert 0.8 < hidden[0.01] - hidden[0.001] < 1.6 and 0.8 < hidden[0.1] - hidden[0.01] < 1.6  # a decade or a bit more
    assert hidden[0.01] < -3 < hidden[0.1]
    assert m["lr=0.001"]["dev"] > max(m[f"lr={lr}"]["dev"] for lr in lrs[1:]) + 0.3
