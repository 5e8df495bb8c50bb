"""The SQLite store: schema versions and the v1 migration, batched writes, faults it must explain,
space given back after deletes."""

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import zlib

import pytest

from bnscope.storage.store import SCHEMA_VERSION, Store, StoreError


def scalars(run_id: int, event_id: int, first: int, count: int, state: dict | None = None) -> tuple:
    points = [("loss", first + i, 3.0 - i / 1000) for i in range(count)]
    return (run_id, event_id, {"type": "scalars", "step": first}, "{}", points, state)


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


def test_runs_survive_reopening_and_training_ones_become_interrupted(tmp_path):
    path = tmp_path / "bnscope.sqlite3"
    store = Store(path)
    done = store.create_run("done", {"steps": 10})
    live = store.create_run("live", {"steps": 10}, paired_with=done)
    store.write(
        [
            scalars(done, 5, 0, 10, {"status": "finished", "message": "", "step": 10, "lr": 0.1}),
            scalars(live, 3, 0, 3, {"status": "running", "message": "", "step": 3, "lr": 0.1}),
        ],
        [(done, 10, b"weights")],
    )
    reopened = Store(path)
    assert reopened.training_runs() == [(live, "trainer")]  # the server died under it
    runs = {run["name"]: run for run in reopened.runs()}
    assert runs["done"]["status"] == "finished" and runs["live"]["status"] == "running"
    assert runs["done"]["last_event_id"] == 5 and runs["done"]["step"] == 10
    assert runs["live"]["paired_with"] == done and runs["done"]["config"] == {"steps": 10}
    assert reopened.series(done, "loss", 0, 10, 1)[0] == list(range(10))
    assert reopened.checkpoint(done) == (10, b"weights")
    reopened.delete_run(done)
    assert reopened.run(done) is None and reopened.checkpoint(done) is None
    assert reopened.series_names(done) == [] and reopened.series(done, "loss", 0, 10, 1) == ([], [])


def test_reserved_event_ids_outlive_a_restart(tmp_path):
    path = tmp_path / "bnscope.sqlite3"
    store = Store(path)
    run = store.create_run("a", {})
    store.reserve_ids(run, 2000)
    assert Store(path).run(run)["reserved_event_id"] == 2000


def test_a_runs_checkpoint_is_its_newest_one_where_a_resume_after_a_restart_starts(tmp_path):
    path = tmp_path / "bnscope.sqlite3"
    store = Store(path)
    run = store.create_run("a", {})
    store.write([], [(run, 500, b"older")])
    store.write([], [(run, 1000, b"newer")])
    assert Store(path).checkpoint(run) == (1000, b"newer")


def fill(store: Store, run_id: int, steps: int) -> None:
    for first in range(0, steps, 50_000):
        store.write([scalars(run_id, first + 1, first, min(50_000, steps - first))], [])


def test_deleting_a_long_run_gives_the_space_back_and_shrinks_the_wal(tmp_path):
    path = tmp_path / "bnscope.sqlite3"
    store = Store(path)
    keep, big = store.create_run("keep", {}), store.create_run("big", {})
    fill(store, keep, 1000)
    fill(store, big, 300_000)
    full = path.stat().st_size
    store.delete_run(big)
    assert path.stat().st_size < full / 5  # the file shrinks: freed pages go back to the file system
    wal = path.with_name(path.name + "-wal")
    assert not wal.exists() or wal.stat().st_size < 2**20
    assert store.series(keep, "loss", 0, 1000, 1)[0] == list(range(1000))


def test_damage_in_the_middle_of_the_file_is_refused_at_start_naming_the_file(tmp_path):
    path = tmp_path / "bnscope.sqlite3"
    store = Store(path)
    fill(store, store.create_run("a", {}), 100_000)
    store.connect().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    del store
    size = path.stat().st_size
    with open(path, "r+b") as f:  # trash a few pages in the middle, as a bad disk or a torn copy would
        f.seek(size // 2 // 4096 * 4096)
        f.write(os.urandom(4096 * 4))
    with pytest.raises(StoreError) as err:
        Store(path)
    assert str(path) in str(err.value) and "damaged" in str(err.value) and "backup" in str(err.value)


def test_a_data_directory_that_cannot_be_made_is_one_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="cannot create the data directory"):
        Store(blocker / "data" / "bnscope.sqlite3")


SMALL_DISK = """
set -e
mount -t tmpfs -o size={size} none {dir}
{python} - <<'EOF'
{script}
EOF
"""


def on_a_small_disk(tmp_path, size: str, script: str) -> subprocess.CompletedProcess:
    """Run a Python script with `DIR` a real, small file system of its own (a tmpfs in a private mount
    namespace): its disk really fills up, or is really read-only."""
    if shutil.which("unshare") is None:
        pytest.skip("needs util-linux's unshare for a private small file system")
    place = tmp_path / "disk"
    place.mkdir()
    body = SMALL_DISK.format(
        size=size, dir=place, python=sys.executable, script=textwrap.dedent(script).replace("DIR", str(place))
    )
    result = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", body],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if "mount:" in result.stderr and result.returncode != 0:
        pytest.skip(f"cannot mount a private file system here: {result.stderr.strip()}")
    return result


def test_a_delete_on_a_full_disk_deletes_nothing_and_says_so(tmp_path):
    result = on_a_small_disk(
        tmp_path,
        "3m",
        """
        from bnscope.storage.store import Store, StoreFull
        store = Store("DIR/bnscope.sqlite3")
        run = store.create_run("a", {})
        for first in range(0, 10**7, 20_000):  # fill the disk
            try:
                store.write([(run, 1, {"type": "scalars", "step": first}, "{}",
                              [("loss", first + i, 1.0) for i in range(20_000)], None)], [])
            except Exception:
                break
        try:
            store.delete_run(run)
            print("deleted")
        except StoreFull as err:
            print("full:", err)
        print("kept" if Store("DIR/bnscope.sqlite3").run(run) else "gone")
    """,
    )
    assert result.returncode == 0, result.stderr
    assert "full: could not delete run 1" in result.stdout and "kept" in result.stdout


def test_a_read_only_data_directory_is_one_clear_error(tmp_path):
    result = on_a_small_disk(
        tmp_path,
        "1m",
        """
        import subprocess
        subprocess.run(["mount", "-o", "remount,ro", "DIR"], check=True)
        from bnscope.storage.store import Store, StoreError
        try:
            Store("DIR/bnscope.sqlite3")
        except StoreError as err:
            print("refused:", err)
    """,
    )
    assert result.returncode == 0, result.stderr
    assert "refused:" in result.stdout and "not writable" in result.stdout and "--data-dir" in result.stdout


V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, config TEXT NOT NULL, paired_with INTEGER,
    status TEXT NOT NULL, message TEXT NOT NULL DEFAULT '', step INTEGER NOT NULL DEFAULT 0, lr REAL,
    last_event_id INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL, updated_at REAL NOT NULL);
CREATE TABLE series (run_id INTEGER NOT NULL, name TEXT NOT NULL, level INTEGER NOT NULL, step INTEGER NOT NULL,
    value REAL NOT NULL, PRIMARY KEY (run_id, name, level, step)) WITHOUT ROWID;
CREATE TABLE series_last (run_id INTEGER NOT NULL, name TEXT NOT NULL, step INTEGER NOT NULL, value REAL NOT NULL,
    PRIMARY KEY (run_id, name)) WITHOUT ROWID;
CREATE TABLE stats (id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL, step INTEGER NOT NULL, payload BLOB NOT NULL);
CREATE UNIQUE INDEX stats_by_step ON stats (run_id, step);
CREATE TABLE timeline (run_id INTEGER NOT NULL, event_id INTEGER NOT NULL, step INTEGER NOT NULL, payload TEXT NOT NULL,
    PRIMARY KEY (run_id, event_id)) WITHOUT ROWID;
CREATE TABLE checkpoints (run_id INTEGER PRIMARY KEY, step INTEGER NOT NULL, state BLOB NOT NULL);
INSERT INTO meta VALUES ('schema_version', '1');
"""


def test_a_version_1_database_is_migrated_keeping_every_run(tmp_path):
    """bnscope 0.1's format, as it wrote it: series samples tagged with a level, the lecture-only stats."""
    path = tmp_path / "bnscope.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(V1_SCHEMA)
    db.execute(
        "INSERT INTO runs (name, config, status, step, lr, last_event_id, created_at, updated_at) "
        "VALUES ('default', ?, 'finished', 300, 0.1, 42, 0, 0)",
        (json.dumps({"n_layers": 2, "batchnorm": True}),),
    )
    level = lambda k: 40 if k == 0 else (k & -k).bit_length() - 1  # noqa: E731 - v1's level of the k-th sample
    db.executemany("INSERT INTO series VALUES (1, 'loss', ?, ?, ?)", [(level(s), s, 3.0 - s / 100) for s in range(300)])
    old_stats = {
        "type": "stats",
        "step": 100,
        "act_range": [-1, 1],
        "grad_range": [-0.5, 0.5],
        "weight_grad_range": [-0.2, 0.2],
        "layers": [
            {
                "name": "tanh1",
                "mean": 0.1,
                "std": 0.6,
                "saturation": 2.0,
                "dead": 0,
                "grad_mean": 0.0,
                "grad_std": 0.01,
                "act_hist": [1] * 50,
                "grad_hist": [2] * 50,
                "image": ["f0"] * 4,
            }
        ],
        "weights": [
            {
                "name": "C",
                "shape": [27, 10],
                "grad_mean": 0,
                "grad_std": 0.1,
                "grad_to_data": 0.01,
                "grad_hist": [3] * 50,
            }
        ],
        "batchnorm": [
            {
                "name": "batchnorm1",
                "mean_of_running_mean": 0.5,
                "mean_of_running_var": 2.0,
                "running_mean": [0.5],
                "running_var": [2.0],
            }
        ],
    }
    db.execute(
        "INSERT INTO stats (run_id, step, payload) VALUES (1, 100, ?)", (zlib.compress(json.dumps(old_stats).encode()),)
    )
    db.execute("INSERT INTO checkpoints VALUES (1, 300, x'00')")
    db.commit()
    db.close()

    store = Store(path)
    assert store.connect().execute("SELECT value FROM meta").fetchone()[0] == str(SCHEMA_VERSION)
    (run,) = store.runs()
    assert run["status"] == "finished" and run["reserved_event_id"] == 42 and run["source"] == "trainer"
    assert [a["name"] for a in run["model"]["activations"]] == ["tanh1", "tanh2"]
    assert run["model"]["norms"][-1]["name"] == "batchnorm3"
    steps, values = store.series(1, "loss", 0, 300, 1)
    assert steps == list(range(300)) and values[7] == pytest.approx(2.93)
    assert store.series(1, "loss", 0, 300, 64)[0] == [0, 64, 128, 192, 256]  # rollups rebuilt
    stats = store.stats_at(1, 100)
    assert stats["activations"][0]["hist"] == [1] * 50 and stats["activations"][0]["grad_range"] == [-0.5, 0.5]
    assert stats["weights"][0]["grad_range"] == [-0.2, 0.2] and stats["norms"][0]["running_var"] == [2.0]
    assert store.connect().execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental from now on
