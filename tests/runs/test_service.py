"""RunService in this process, its runs trained on threads (ThreadBackend): the service's rules without a
server, a worker process or a browser. Every change of a run's state reaches its stream (its channel) and
the store as an event, the service's own changes included; what the HTTP layer adds is tested in tests/web/."""

import json
import time

import pytest

from bnscope.config import Settings
from bnscope.runs.errors import Conflict
from bnscope.runs.service import RunService
from bnscope.runs.workers import ThreadBackend
from bnscope.storage.store import Store
from tests.conftest import TINY, WORDS

LONG = {**TINY, "steps": 10_000_000}


def wait_for(condition, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.02)
    return value


@pytest.fixture
def open_service(tmp_path):
    """A function that opens a RunService on the store in tmp_path (again, for a restart); all are shut
    down at the end."""
    services = []

    def open_(**settings) -> RunService:
        store = Store(tmp_path / "bnscope.sqlite3")
        service = RunService(store, list(WORDS), Settings(data_dir=tmp_path, autostart=False, **settings), ThreadBackend())
        services.append(service)
        return service

    yield open_
    for service in services:
        service.shutdown()


def statuses(service: RunService, run_id: int) -> list[str]:
    """The run's statuses as its stream sent them, in order."""
    held = service.get(run_id).channel.held()
    return [json.loads(m.data)["status"] for m in held if m.type == "status"]


def test_a_run_trains_to_the_end_and_its_events_reach_the_stream_and_the_store(open_service):
    service = open_service()
    run = service.create(TINY)
    wait_for(lambda: run.state.status == "finished")
    assert statuses(service, run.id) == ["queued", "created", "running", "finished"]
    history = service.history(run.id)
    assert history["run"]["status"] == "finished" and history["run"]["step"] == TINY["steps"]
    assert history["series"]["loss"]["steps"] == list(range(TINY["steps"]))
    assert history["last_event_id"] == run.channel.last_id  # every event streamed was stored


def test_pause_resume_lr_and_stop_each_answer_once_the_worker_has_acted(open_service):
    service = open_service()
    run = service.create(LONG)
    wait_for(lambda: run.state.status == "running" and run.state.step > 10)
    assert service.pause(run.id).state.status == "paused"
    paused_at = run.state.step
    time.sleep(0.3)  # a paused run takes no step, however long it waits
    assert run.state.step == paused_at
    with pytest.raises(Conflict):
        service.pause(run.id)  # already paused: a conflict naming its status, not a second pause
    assert service.resume(run.id).state.status == "running"
    assert service.set_lr(run.id, 0.05).state.lr == 0.05
    assert service.stop(run.id).state.status == "stopped"
    assert statuses(service, run.id)[2:] == ["running", "paused", "running", "stopped"]


def test_runs_beyond_the_slots_wait_queued_and_start_in_order(open_service):
    service = open_service(max_runs=1)
    first, second = service.create(LONG), service.create(TINY)
    wait_for(lambda: first.state.status == "running")
    assert second.state.status == "queued"
    service.stop(first.id)
    wait_for(lambda: second.state.status == "finished")
    assert statuses(service, second.id) == ["queued", "created", "running", "finished"]


def test_a_run_the_server_died_under_is_interrupted_by_an_event_and_resumes(open_service):
    service = open_service(checkpoint_every=50)
    run = service.create(LONG)
    wait_for(lambda: run.state.step > 120)
    service.stop(run.id)
    service.writer.flush()
    service.store.update_run(run.id, status="running", message="")  # the row as a killed server leaves it
    again = open_service(checkpoint_every=50)
    restarted = again.get(run.id)
    assert restarted.state.status == "interrupted"
    assert statuses(again, run.id) == ["interrupted"]  # a published event, streamed to whoever listens
    again.writer.flush()
    timeline = again.history(run.id)["timeline"]
    assert timeline[-1]["status"] == "interrupted" and "resume" in timeline[-1]["message"]  # and stored
    again.resume(run.id)
    wait_for(lambda: restarted.state.status == "running")
    again.stop(run.id)
