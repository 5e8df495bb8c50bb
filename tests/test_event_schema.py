"""Every event the trainers emit is what bnscope.events says an event is: a single run's trainer and a
stack's members (their `member` tag aside), through every kind of event they make (model, status, control,
scalars, stats, eval, checkpoint, weights), each validated against the schema with no field beyond it."""

import pytest
import torch
from pydantic import ConfigDict, TypeAdapter

from bnscope.config import RunConfig
from bnscope.events import Event
from bnscope.train.stack import StackTrainer
from bnscope.train.trainer import Trainer
from bnscope.train.worker import CommandQueue
from tests.conftest import TINY

STRICT = TypeAdapter(Event, config=ConfigDict(extra="forbid"))
EVERY_TYPE = {"model", "status", "control", "scalars", "stats", "eval", "checkpoint", "weights"}


def commanded() -> CommandQueue:
    """An lr change, a pause and a resume, a checkpoint and a weights request: before the first step."""
    commands = CommandQueue()
    for op in ({"op": "lr", "lr": 0.05}, {"op": "pause"}, {"op": "resume"}, {"op": "checkpoint"}, {"op": "weights"}):
        commands.put(op)
    return commands


def test_a_runs_events_follow_the_schema(splits):
    events: list[dict] = []
    Trainer(RunConfig(**TINY, update_every=5), splits, events.append, device=torch.device("cpu")).run(commanded())
    assert {e["type"] for e in events} == EVERY_TYPE
    for event in events:
        STRICT.validate_python(event)


@pytest.mark.parametrize("batchnorm", [True, False])
def test_a_stacks_member_events_follow_the_schema(splits, batchnorm):
    events: list[dict] = []
    configs = [RunConfig(**TINY, seed=seed, batchnorm=batchnorm) for seed in (1, 2)]
    StackTrainer(configs, splits, events.append, device=torch.device("cpu")).run(commanded())
    assert {e["member"] for e in events} == {0, 1} and {e["type"] for e in events} == EVERY_TYPE
    for event in events:
        STRICT.validate_python({key: value for key, value in event.items() if key != "member"})


def test_the_schema_refuses_a_field_it_does_not_name(splits):
    events: list[dict] = []
    Trainer(RunConfig(**TINY), splits, events.append, device=torch.device("cpu")).run(CommandQueue())
    scalars = next(e for e in events if e["type"] == "scalars")
    with pytest.raises(ValueError):
        STRICT.validate_python({**scalars, "losses": scalars["loss"]})  # a misspelt field
    with pytest.raises(ValueError):
        STRICT.validate_python({key: value for key, value in scalars.items() if key != "step"})  # a missing one
