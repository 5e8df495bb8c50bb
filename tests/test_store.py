"""The SQLite store: schema versioning, batched writes, reads."""

import sqlite3

import pytest

from bnscope.store import SCHEMA_VERSION, Store, StoreError


def test_a_database_of_another_schema_version_is_refused_with_a_clear_message(tmp_path):
    path = tmp_path / "bnscope.sqlite3"
    Store(path)
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION + 1),))
    db.commit()
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}.*reads version {SCHEMA_VERSION}"):
        Store(path)


def test_a_foreign_sqlite_file_or_a_non_database_is_refused(tmp_path):
    foreign = tmp_path / "other.sqlite3"
    sqlite3.connect(foreign).execute("CREATE TABLE stuff (x)")
    with pytest.raises(StoreError, match="no bnscope schema version"):
        Store(foreign)
    garbage = tmp_path / "garbage.sqlite3"
    garbage.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="not a bnscope database"):
        Store(garbage)


def test_runs_survive_reopening_and_running_ones_become_interrupted(tmp_path):
    path = tmp_path / "bnscope.sqlite3"
    store = Store(path)
    done = store.create_run("done", {"steps": 10}, None, 0.1)
    live = store.create_run("live", {"steps": 10}, done, 0.1)
    store.write(
        [(done, 1, {"type": "status", "step": 10, "status": "finished", "message": ""}, "{}", [("loss", 9, 0, 2.5)]),
         (live, 1, {"type": "status", "step": 3, "status": "running", "message": ""}, "{}", [])],
        [(done, 10, b"weights")],
    )  # fmt: skip
    reopened = Store(path)
    assert reopened.mark_interrupted() == [live]
    runs = {run["name"]: run for run in reopened.runs()}
    assert runs["done"]["status"] == "finished" and runs["live"]["status"] == "interrupted"
    assert runs["live"]["paired_with"] == done and runs["done"]["config"] == {"steps": 10}
    assert reopened.series(done, "loss", 0) == ([9], [2.5])
    assert reopened.checkpoint(done) == (10, b"weights")
    reopened.delete_run(done)
    assert reopened.run(done) is None and reopened.checkpoint(done) is None
