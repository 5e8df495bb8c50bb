"""StoreWriter, the one thread that writes to SQLite: what it is handed is on disk, in order, once a flush
returns; a batch that cannot be written (a full database) is reported for its runs, and later batches are
still written."""

import json
import os

from bnscope.storage.store import Store
from bnscope.storage.writer import StoreWriter


def status(run_id: int, event_id: int, step: int, value: str, writer: StoreWriter) -> None:
    event = {"type": "status", "step": step, "status": value, "message": ""}
    state = {"status": value, "message": "", "step": step, "lr": 0.1}
    writer.event(run_id, event_id, event, json.dumps(event), [("loss", step, 2.0)], state)


def test_what_is_handed_over_is_written_in_order_by_the_time_a_flush_returns(tmp_path):
    store = Store(tmp_path / "bnscope.sqlite3")
    run_id = store.create_run("r", {}, status="queued", lr=0.1)
    failures: list = []
    writer = StoreWriter(store, lambda run_ids, reason: failures.append((run_ids, reason)))
    for event_id, (step, value) in enumerate([(0, "created"), (0, "running"), (40, "paused")], start=1):
        status(run_id, event_id, step, value, writer)
    writer.checkpoint(run_id, 40, b"weights at 40")
    assert writer.flush()
    assert [(e["id"], e["status"]) for e in store.timeline(run_id)] == [(1, "created"), (2, "running"), (3, "paused")]
    row = store.run(run_id)
    assert (row["status"], row["step"], row["last_event_id"]) == ("paused", 40, 3)
    assert store.checkpoint(run_id) == (40, b"weights at 40")
    assert store.series(run_id, "loss", 0, 41, 1)[0] == [0, 40]
    writer.close()
    assert failures == []


def test_a_batch_the_full_database_refuses_is_reported_and_later_batches_are_written(tmp_path):
    store = Store(tmp_path / "bnscope.sqlite3", max_mb=1)
    full, other = (store.create_run(name, {}, status="running", lr=0.1) for name in ("full", "other"))
    failures: list = []
    writer = StoreWriter(store, lambda run_ids, reason: failures.append((run_ids, reason)))
    writer.checkpoint(full, 10, os.urandom(2 * 2**20))  # 2 MiB into a 1 MiB database
    assert writer.flush()
    assert len(failures) == 1 and failures[0][0] == {full} and "could not save to the database" in failures[0][1]
    assert store.checkpoint(full) is None

    status(other, 1, 5, "paused", writer)
    assert writer.flush()
    assert store.run(other)["status"] == "paused" and len(failures) == 1
    writer.close()
