"""A sweep's members trained as one stack (bnscope.train.stack) do what each would do alone: the same
losses as the single-run trainer (float reassociation only), with BatchNorm on and off, the lecture's
variance and batch order, a learning rate changed mid-run, a pause; a member that diverges touches no
other (every op is per member: a NaN could not cross either); and a stack resumed from its members' checkpoints continues exactly."""

import pytest
import torch

from bnscope.train.trainer import Trainer
from bnscope.train.stack import StackTrainer
from bnscope.train.worker import CommandQueue
from tests.conftest import tiny_config

STEPS = 1000


class At:
    """The commands a user gives, each when the trainer's first member reaches a step: {step: [command]}."""

    def __init__(self, plan: dict[int, list[dict]]):
        self.plan, self.trainer = plan, None

    def step(self) -> int:
        t = self.trainer
        return t.members[0].step if isinstance(t, StackTrainer) else t.step

    def poll(self) -> list[dict]:
        due = [s for s in self.plan if s <= self.step()]
        return [command for s in sorted(due) for command in self.plan.pop(s)]

    def wait(self) -> dict:  # only the paused wait for a command: the next one planned, whatever its step
        first = min(self.plan)
        return self.plan[first].pop(0) if len(self.plan[first]) > 1 else self.plan.pop(first)[0]


def train_alone(config, splits, plan=None):
    events: list[dict] = []
    trainer = Trainer(config, splits, events.append, device=torch.device("cpu"))
    commands = At(plan or {})
    commands.trainer = trainer
    trainer.run(commands)
    return events


def train_stacked(configs, splits, plan=None, checkpoints=None, checkpoint_every=10_000):
    events: list[dict] = []
    trainer = StackTrainer(
        configs,
        splits,
        events.append,
        checkpoints=checkpoints,
        checkpoint_every=checkpoint_every,
        device=torch.device("cpu"),
    )
    commands = At(plan or {})
    commands.trainer = trainer
    trainer.run(commands)
    return [[e for e in events if e["member"] == i] for i in range(len(configs))]


def losses(events) -> list[float]:
    return [loss for e in events if e["type"] == "scalars" for loss in e["loss"]]


def final(events) -> str:
    return [e for e in events if e["type"] == "status"][-1]["status"]


MEMBERS = {
    "BatchNorm on, gain 5/3": tiny_config(steps=STEPS),
    "BatchNorm off, gain 1": tiny_config(steps=STEPS, batchnorm=False, gain=1.0),
    "the notebook's variance and batch order, another seed": tiny_config(
        steps=STEPS, seed=7, bn_variance="unbiased", batch_order="lecture"
    ),
    "torch's default init, lr 0.05": tiny_config(steps=STEPS, init="torch-default", lr=0.05, last_layer_scale=1.0),
}


def test_every_member_trains_as_it_would_alone(splits):
    stacked = train_stacked(list(MEMBERS.values()), splits)
    for (what, config), mine in zip(MEMBERS.items(), stacked):
        alone = train_alone(config, splits)
        assert len(losses(mine)) == STEPS, what
        assert losses(mine) == pytest.approx(losses(alone), abs=1e-4), what
        assert final(mine) == "finished"
        evals = lambda events: [(e["step"], e["split"]) for e in events if e["type"] == "eval"]  # noqa: E731
        assert evals(mine) == evals(alone), what
        stats = lambda events: [e for e in events if e["type"] == "stats"]  # noqa: E731
        assert [s["step"] for s in stats(mine)] == [s["step"] for s in stats(alone)]
        for a, b in zip(stats(mine)[-1]["activations"], stats(alone)[-1]["activations"]):
            assert a["name"] == b["name"] and a["std"] == pytest.approx(b["std"], abs=1e-4)
        for a, b in zip(stats(mine)[-1]["weights"], stats(alone)[-1]["weights"]):
            assert a["shape"] == b["shape"] and a["grad_to_data"] == pytest.approx(b["grad_to_data"], rel=1e-3)
        assert [n["name"] for n in stats(mine)[-1]["norms"]] == [n["name"] for n in stats(alone)[-1]["norms"]]


def test_a_learning_rate_changed_mid_run_and_a_pause_act_on_one_member_as_on_a_lone_run(splits):
    configs = [tiny_config(steps=600), tiny_config(steps=600, gain=3.0)]
    plan = {
        200: [{"op": "lr", "lr": 0.02, "member": 1}],
        300: [{"op": "pause", "member": 0}],
        301: [{"op": "resume", "member": 0}],
    }
    stacked = train_stacked(configs, splits, plan)
    alone = train_alone(configs[1], splits, {200: [{"op": "lr", "lr": 0.02}]})
    assert losses(stacked[1]) == pytest.approx(losses(alone), abs=1e-4)
    assert [e["lr"] for e in stacked[1] if e["type"] == "control"] == [0.02]
    # the paused member lost no step and saw the same batches: as the same run never paused
    assert losses(stacked[0]) == pytest.approx(losses(train_alone(configs[0], splits)), abs=1e-4)
    assert [e["action"] for e in stacked[0] if e["type"] == "control"] == ["pause", "resume"]


def test_a_member_that_diverges_touches_no_other(splits):
    healthy = [tiny_config(steps=700), tiny_config(steps=700, batchnorm=False, gain=1.0)]
    exploding = tiny_config(steps=700, batchnorm=False, gain=20.0, lr=100.0)  # its loss explodes by step 500
    beside = train_stacked([healthy[0], exploding, healthy[1]], splits)
    without = train_stacked(healthy, splits)
    assert final(beside[1]) == "diverged"
    # the same to float rounding (a stack of another size may sum in another order); a NaN test is below
    assert losses(beside[0]) == pytest.approx(losses(without[0]), abs=1e-5)
    assert losses(beside[2]) == pytest.approx(losses(without[1]), abs=1e-5)
    assert final(beside[0]) == final(beside[2]) == "finished"


def test_a_stack_resumed_from_its_members_checkpoints_continues_exactly(splits):
    configs = [tiny_config(steps=600), tiny_config(steps=600, batchnorm=False, seed=3)]
    whole = train_stacked(configs, splits)
    first = train_stacked(configs, splits, {300: [{"op": "shutdown"}]})
    assert [final(m) for m in first] == ["interrupted", "interrupted"]
    saved = [[e for e in m if e["type"] == "checkpoint"][-1] for m in first]
    assert [s["step"] for s in saved] == [300, 300]
    rest = train_stacked(configs, splits, checkpoints=[s["state"] for s in saved])
    for i in range(2):
        assert losses(first[i])[:300] + losses(rest[i]) == losses(whole[i])
    # a member's checkpoint is a single run's: it resumes alone too
    alone = Trainer(configs[0], splits, device=torch.device("cpu"))
    alone.load_checkpoint(saved[0]["state"])
    assert alone.step == 300


def test_a_member_gone_to_nan_leaves_the_others_bit_for_bit(splits, make_mlp):
    from bnscope.models.stacked import StackedMLP

    def two_steps(poison: bool) -> torch.Tensor:
        net = StackedMLP([make_mlp(), make_mlp(gain=3.0)], ["biased", "biased"], torch.device("cpu"))
        if poison:
            net.W[0][0].fill_(float("nan"))  # member 0's first weight
        ix = torch.randint(0, splits.Xtr.shape[0], (2, 32), generator=torch.Generator().manual_seed(0))
        net.set_rates([0.1, 0.1], [True, True])
        net.step(splits.Xtr[ix], splits.Ytr[ix])
        return net.step(splits.Xtr[ix], splits.Ytr[ix])

    poisoned, clean = two_steps(True), two_steps(False)
    assert poisoned[0].isnan() and poisoned[1] == clean[1]
