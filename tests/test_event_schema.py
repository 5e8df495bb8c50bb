"""Every event the trainers emit is what bnscope.events says an event is: a single run's trainer and a
stack's members (their `member` tag aside), through every kind of event they make (model, status, control,
scalars, stats, eval, checkpoint, weights), each validated against the schema with no field beyond it; so
are the server's own (a run interrupted at start-up, a run the store could not save) and the stream's reset."""

import pytest
import torch
from pydantic import ConfigDict, TypeAdapter

from bnscope.config import RunConfig, Settings
from bnscope.events import Event, Streamed, reset
from bnscope.runs.service import RunService
from bnscope.runs.workers import ThreadBackend
from bnscope.storage.store import Store
from bnscope.train.stack import StackTrainer
from bnscope.train.trainer import Trainer
from bnscope.train.worker import CommandQueue
from tests.conftest import TINY

STRICT = TypeAdapter(Event, config=ConfigDict(extra="forbid"))
STREAMED = TypeAdapter(Streamed, config=ConfigDict(extra="forbid"))
WIRE = ("time", "points", "run", "id")  # what publishing adds to an event: its wall clock, series, state, id
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


def test_the_servers_own_status_events_follow_the_schema(tmp_path, words):
    """The server's changes of a run's state are events like any other: published, stored on the run's
    timeline, streamed. A run it died under is interrupted at start-up; one the store fails to save fails."""
    path = tmp_path / "bnscope.sqlite3"
    store = Store(path)
    died_under = store.create_run("died under", RunConfig(**TINY).model_dump())
    store.write(
        [
            (
                died_under,
                1,
                {"type": "scalars", "step": 0},
                "{}",
                [],
                {"status": "running", "message": "", "step": 40, "lr": 0.1},
            )
        ],
        [],
    )
    service = RunService(Store(path), words, Settings(data_dir=tmp_path), ThreadBackend())
    assert service.get(died_under).state.status == "interrupted"
    service.writer.on_failure({died_under}, "could not save to the database: disk full")  # no worker to say it
    assert service.get(died_under).state.status == "failed"
    service.shutdown()
    timeline = Store(path).timeline(died_under)
    assert [(e["status"], e["step"]) for e in timeline] == [("interrupted", 40), ("failed", 40)]
    for event in timeline:
        unwired = {key: value for key, value in event.items() if key not in WIRE}
        STRICT.validate_python(unwired) and STREAMED.validate_python(unwired)


def test_the_streams_reset_follows_the_schema():
    assert STREAMED.validate_python(reset(12)) == {"type": "reset", "after": 12}
    with pytest.raises(ValueError):
        STREAMED.validate_python({"type": "reset", "after": 12, "history": {}})  # no snapshot rides along
