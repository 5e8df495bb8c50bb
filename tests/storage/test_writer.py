"""The store's one writer thread (StoreWriter) on a real SQLite store: it writes what it is handed in
order, flush() returns once it is written, and a batch that cannot be written fails only the runs in
it, which are reported, while later batches are written."""

import threading

from bnscope.storage.store import Store
from bnscope.storage.writer import StoreWriter
from tests.storage.test_store import scalars


def test_flush_returns_once_everything_handed_over_is_written(tmp_path):
    store = Store(tmp_path / "bnscope.sqlite3")
    run = store.create_run("a", {"steps": 30})
    writer = StoreWriter(store, lambda run_ids, reason: None)
    for i in range(3):  # three flushes' worth of losses, each event with the run's state after it
        writer.event(*scalars(run, i + 1, 10 * i, 10, {"status": "running", "message": "", "step": 10 * i + 10, "lr": 0.1}))
    assert writer.flush()
    stored = store.run(run)
    assert stored["last_event_id"] == 3 and stored["step"] == 30
    assert store.series(run, "loss", 0, 30, 1)[0] == list(range(30))
    writer.close()


def test_a_batch_that_cannot_be_written_fails_its_runs_and_the_writer_carries_on(tmp_path):
    store = Store(tmp_path / "bnscope.sqlite3")
    broken, fine = store.create_run("broken", {}), store.create_run("fine", {})
    failed: list[tuple[set[int], str]] = []
    reported = threading.Event()
    writer = StoreWriter(store, lambda run_ids, reason: (failed.append((run_ids, reason)), reported.set()))
    writer.event(*scalars(broken, 1, 0, 5, {"status": "running"}))  # a state without its columns: a bug's event
    writer.flush()
    assert reported.wait(10)
    assert failed[0][0] == {broken} and "could not save" in failed[0][1]
    writer.event(*scalars(fine, 2, 0, 5))
    assert writer.flush()
    assert store.series(fine, "loss", 0, 5, 1)[0] == list(range(5))  # the next batch is written
    writer.close()
