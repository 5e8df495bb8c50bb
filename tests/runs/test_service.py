"""RunService in this process, its workers on threads (ThreadBackend), on a real SQLite store: what the
routes rely on. A run is queued, created, runs and finishes; pause, resume and stop answer with the new
status; a run waits for a free slot; a stopped server's run resumes from its checkpoint. Every status
reaches the run's stream (its channel) and the store, in the same order."""

import json

import pytest

from bnscope.config import Settings
from bnscope.runs.errors import Conflict
from bnscope.runs.service import RunService
from bnscope.runs.workers import ThreadBackend
from bnscope.storage.store import Store
from tests.conftest import TINY, WORDS
from tests.servers import wait_for

LONG = {**TINY, "steps": 1_000_000}  # never finishes inside a test: stopped, paused or shut down


@pytest.fixture
def open_service(tmp_path):
    """RunService(s) on one data directory, as a server started (and restarted) on it; all shut down at the end."""
    opened: list[RunService] = []

    def open_(**settings) -> RunService:
        options = {"data_dir": tmp_path, "autostart": False, "checkpoint_every": 50, "max_runs": 2, **settings}
        service = RunService(Store(tmp_path / "bnscope.sqlite3"), WORDS, Settings(**options), ThreadBackend())
        opened.append(service)
        return service

    yield open_
    for service in opened:
        if not service._stopping:
            service.shutdown()


def streamed_statuses(run) -> list[str]:
    return [json.loads(m.data)["status"] for m in run.channel.held() if m.type == "status"]


def stored_statuses(service: RunService, run_id: int) -> list[str]:
    service.writer.flush()
    return [event["status"] for event in service.store.timeline(run_id) if event["type"] == "status"]


def test_a_run_is_queued_created_runs_and_finishes_streamed_and_stored_alike(open_service):
    service = open_service()
    run = service.create(TINY)
    wait_for(lambda: run.state.status == "finished", timeout=60)
    assert streamed_statuses(run) == ["queued", "created", "running", "finished"]
    assert stored_statuses(service, run.id) == streamed_statuses(run)
    row = service.store.run(run.id)
    assert row["status"] == "finished" and row["step"] == TINY["steps"]
    ids = [m.id for m in run.channel.held()]
    assert ids == list(range(1, len(ids) + 1))  # numbered in order, none lost
    assert row["last_event_id"] == ids[-1]
    steps, losses = service.store.series(run.id, "loss", 0, TINY["steps"], 1)
    assert len(steps) == TINY["steps"] and all(value > 0 for value in losses)  # every step's loss is kept
    assert service.describe(run)["worker"]["backend"] == "thread"


def test_pause_resume_and_stop_answer_with_the_new_status(open_service):
    service = open_service()
    run = service.create(LONG)
    wait_for(lambda: run.state.status == "running" and run.state.step > 0)
    assert service.pause(run.id).state.status == "paused"
    with pytest.raises(Conflict):
        service.pause(run.id)  # already paused
    assert service.resume(run.id).state.status == "running"
    resumed_at = run.state.step
    wait_for(lambda: run.state.step > resumed_at)  # it trains again
    assert service.stop(run.id).state.status == "stopped"
    wait_for(lambda: run.worker is None)  # its worker ends and frees the slot
    with pytest.raises(Conflict):
        service.resume(run.id)  # a stopped run is over
    assert streamed_statuses(run) == ["queued", "created", "running", "paused", "running", "stopped"]
    assert stored_statuses(service, run.id) == streamed_statuses(run)
    assert service.store.run(run.id)["status"] == "stopped"


def test_a_run_waits_for_a_free_slot_and_starts_when_one_frees(open_service):
    service = open_service(max_runs=1)
    first = service.create(LONG)
    second = service.create(LONG)
    assert second.state.status == "queued" and service.describe(second)["queue_position"] == 1
    service.stop(first.id)
    wait_for(lambda: second.state.status == "running")
    assert service.describe(second)["queue_position"] is None
    service.stop(second.id)


def test_a_stopped_service_checkpoints_its_runs_and_a_new_one_resumes_them(open_service):
    service = open_service()
    run = service.create(LONG)
    wait_for(lambda: run.state.step >= 100)
    service.shutdown()
    assert run.state.status == "interrupted"
    saved_step, _ = service.store.checkpoint(run.id)
    assert saved_step == run.state.step  # checkpointed where it stopped

    again = open_service()
    resumed = again.get(run.id)
    assert resumed.state.status == "interrupted" and resumed.state.step == saved_step
    again.resume(run.id)
    wait_for(lambda: resumed.state.status == "running" and resumed.state.step > saved_step)
    again.stop(run.id)
    assert stored_statuses(again, run.id)[-5:] == ["interrupted", "queued", "created", "running", "stopped"]
