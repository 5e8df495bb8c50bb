"""bnscope.train.worker's `train`, the body every backend runs: a run's events in order from its config,
a checkpoint that a new worker resumes from, commands from another thread, and a stack's events tagged
with their member."""

import threading

from bnscope.train.worker import CommandQueue, RunSpec, StackSpec, train
from tests.conftest import WORDS, tiny_config
from tests.servers import wait_for


def statuses(events: list[dict]) -> list[str]:
    return [event["status"] for event in events if event["type"] == "status"]


def test_a_run_trains_to_the_end_and_a_new_worker_resumes_from_its_checkpoint():
    first: list[dict] = []
    train(RunSpec(tiny_config(steps=100), WORDS, checkpoint_every=50), CommandQueue(), first.append)
    assert statuses(first) == ["running", "finished"]
    checkpoints = [event for event in first if event["type"] == "checkpoint"]
    assert [event["step"] for event in checkpoints][-1] == 100  # the last one at the run's end

    resumed: list[dict] = []
    spec = RunSpec(tiny_config(steps=200), WORDS, checkpoint=checkpoints[-1]["state"], checkpoint_every=50)
    train(spec, CommandQueue(), resumed.append)
    assert statuses(resumed) == ["running", "finished"]
    scalars = [event for event in resumed if event["type"] == "scalars"]
    assert scalars[0]["step"] >= 100 and scalars[-1]["step"] < 200  # steps 100..199: on from the checkpoint


def test_commands_from_another_thread_pause_and_stop_a_run():
    events: list[dict] = []
    commands = CommandQueue()
    worker = threading.Thread(
        target=train, args=(RunSpec(tiny_config(steps=1_000_000), WORDS), commands, events.append)
    )
    worker.start()
    wait_for(lambda: any(event["type"] == "scalars" for event in events))
    commands.put({"op": "pause"})
    wait_for(lambda: "paused" in statuses(events))
    commands.put({"op": "stop"})
    worker.join(timeout=30)
    assert not worker.is_alive()
    assert statuses(events) == ["running", "paused", "stopped"]
    stopped_at = events[-1]["step"] if events[-1]["type"] == "status" else None
    assert any(event["type"] == "checkpoint" and event["step"] == stopped_at for event in events)  # resumable


def test_a_stack_reports_each_members_events_tagged_with_the_member():
    events: list[dict] = []
    configs = [tiny_config(steps=100, lr=lr) for lr in (0.1, 0.05)]
    train(StackSpec(configs, WORDS, [None, None]), CommandQueue(), events.append)
    for member in (0, 1):
        mine = [event for event in events if event["member"] == member]
        assert statuses(mine) == ["running", "finished"]
