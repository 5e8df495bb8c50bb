"""SQLite store (stdlib sqlite3, WAL): runs, sweeps, their time series, statistics, timeline and
checkpoints. Training never touches it: the server's StoreWriter thread writes a second's events in
one transaction, and every read is its own transaction.

Tables
  meta          schema_version
  runs          one row a run: config (JSON), source (trainer | watched), status, step, lr, the last
                event id written and the ceiling of ids reserved (ids are never reused), its layers
  sweeps        a family of paired runs over a grid of up to three settings' values
  series        (run, name, step) -> value: every point of every series, raw
  series_names  the names of each run's series
  rollups       (run, name, 64-step bucket) -> first step, sum, count: a wide range is averaged from
                these, 64 times fewer rows than the raw points
  stats         one zlib-compressed JSON statistics event per stats step
  timeline      status, control and eval events (few; kept whole)
  checkpoints   the latest checkpoint of each run (torch.save bytes)

Space comes back after a delete (auto_vacuum=INCREMENTAL, then the WAL is checkpointed and truncated).
"""

import json
import os
import sqlite3
import threading
import time
import zlib
from contextlib import contextmanager
from pathlib import Path

from bnscope.events import ACTIVE
from bnscope.jsonenc import to_json

SCHEMA_VERSION = 2
ROLLUP = 64  # steps a rollup bucket covers
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    config TEXT NOT NULL,
    source TEXT NOT NULL DEFAULT 'trainer',
    paired_with INTEGER,
    sweep_id INTEGER,
    status TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT '',
    step INTEGER NOT NULL DEFAULT 0,
    lr REAL,
    last_event_id INTEGER NOT NULL DEFAULT 0,
    reserved_event_id INTEGER NOT NULL DEFAULT 0,
    model TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sweeps (
    id INTEGER PRIMARY KEY AUTOINCREMENT, config TEXT NOT NULL, setting TEXT NOT NULL, "values" TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS series (
    run_id INTEGER NOT NULL, name TEXT NOT NULL, step INTEGER NOT NULL, value REAL NOT NULL,
    PRIMARY KEY (run_id, name, step)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS series_names (run_id INTEGER NOT NULL, name TEXT NOT NULL, PRIMARY KEY (run_id, name))
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rollups (
    run_id INTEGER NOT NULL, name TEXT NOT NULL, bucket INTEGER NOT NULL,
    first_step INTEGER NOT NULL, total REAL NOT NULL, count INTEGER NOT NULL,
    PRIMARY KEY (run_id, name, bucket)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS stats (
    id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL, step INTEGER NOT NULL, payload BLOB NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS stats_by_step ON stats (run_id, step);
CREATE TABLE IF NOT EXISTS timeline (
    run_id INTEGER NOT NULL, event_id INTEGER NOT NULL, step INTEGER NOT NULL, payload TEXT NOT NULL,
    PRIMARY KEY (run_id, event_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoints (
    run_id INTEGER PRIMARY KEY, step INTEGER NOT NULL, state BLOB NOT NULL
);
"""
RUN_TABLES = ("series", "series_names", "rollups", "stats", "timeline", "checkpoints")
STATE_COLUMNS = ("status", "message", "step", "lr")  # bnscope.events.RunState's fields the row keeps


class StoreError(RuntimeError):
    """The database cannot be used: unreadable, damaged, of another schema, or its folder not writable.
    The message names the file and what to do."""


class StoreFull(StoreError):
    """A write did not fit: the disk (or the max_db_mb cap) is full."""


def _is_full(err: sqlite3.Error) -> bool:
    return "full" in str(err).lower()


@contextmanager
def _saving(what: str):
    """A write that fails raises StoreFull (the disk or the cap is full) or StoreError, saying `what` failed."""
    try:
        yield
    except sqlite3.OperationalError as err:
        raise (StoreFull if _is_full(err) else StoreError)(f"{what}: {err}") from err


class Store:
    def __init__(self, path: Path | str, max_mb: int | None = None):
        self.path = Path(path)
        self.max_mb = max_mb
        self._local = threading.local()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise StoreError(f"cannot create the data directory {self.path.parent}: {err.strerror}") from err
        if not os.access(self.path.parent, os.W_OK) or (self.path.exists() and not os.access(self.path, os.W_OK)):
            raise StoreError(f"{self.path}: not writable: choose another --data-dir, or fix its permissions")
        try:
            db = self.connect()
            self._check_integrity(db)
            self._migrate(db)
        except sqlite3.DatabaseError as err:
            raise StoreError(
                f"{self.path} is not a bnscope database ({err}): move it aside or use another --data-dir"
            ) from err

    def connect(self) -> sqlite3.Connection:
        """This thread's connection (sqlite3 connections stay in the thread that made them)."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
            db.row_factory = sqlite3.Row
            # before WAL, and a no-op once tables exist: a new database gives deleted runs' space back
            db.execute("PRAGMA auto_vacuum=INCREMENTAL")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable up to the last checkpoint of the WAL
            db.execute("PRAGMA cache_size=-1024")  # 1 MiB a connection: every request thread has one
            db.execute("PRAGMA journal_size_limit=16777216")  # a checkpointed WAL shrinks back to 16 MiB
            if self.max_mb is not None:  # a full database fails a write exactly as a full disk does
                page_size = db.execute("PRAGMA page_size").fetchone()[0]
                db.execute(f"PRAGMA max_page_count={self.max_mb * 2**20 // page_size}")
            self._local.db = db
        return db

    def _check_integrity(self, db: sqlite3.Connection) -> None:
        try:
            problems = [r[0] for r in db.execute("PRAGMA quick_check(5)")]
        except sqlite3.DatabaseError as err:
            if "not a database" in str(err):
                raise
            problems = [str(err)]
        if problems != ["ok"]:
            raise StoreError(
                f"{self.path} is damaged ({'; '.join(problems)}). Restore it from a backup, or move it aside "
                f"(mv {self.path} {self.path}.damaged) and start afresh"
            )

    def _migrate(self, db: sqlite3.Connection) -> None:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "meta" not in tables:
            if tables:
                raise StoreError(
                    f"{self.path} holds tables but no bnscope schema version; refusing to guess its layout"
                )
            db.executescript(SCHEMA)
            db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            return
        row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        version = int(row[0]) if row else 0
        if version == 1:
            from bnscope.storage.migrate import v1_to_v2

            v1_to_v2(db, SCHEMA, ROLLUP)
        elif version != SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has schema version {version}, this bnscope reads version {SCHEMA_VERSION}; "
                "use the bnscope that wrote it, or start with another --data-dir"
            )

    # ---- runs and sweeps -----------------------------------------------------------------------
    def create_run(
        self,
        name: str,
        config: dict,
        *,
        source: str = "trainer",
        paired_with: int | None = None,
        sweep_id: int | None = None,
        status: str = "created",
        lr: float | None = None,
    ) -> int:
        now = time.time()
        with _saving("could not save a new run"):
            cur = self.connect().execute(
                "INSERT INTO runs (name, config, source, paired_with, sweep_id, status, lr, created_at, updated_at) "
                "VALUES (?,?,?,?,?,?,?,?,?)",
                (name, to_json(config), source, paired_with, sweep_id, status, lr, now, now),
            )
        return cur.lastrowid

    def create_sweep(self, config: dict, vary: dict[str, list]) -> int:
        """A sweep: its shared settings and its grid ({setting: values}, in order). `setting` keeps the
        first varied setting's name; `values` the whole grid (a 0.2 sweep's: that setting's values)."""
        with _saving("could not save a new sweep"):
            cur = self.connect().execute(
                'INSERT INTO sweeps (config, setting, "values", created_at) VALUES (?,?,?,?)',
                (to_json(config), next(iter(vary)), to_json(vary), time.time()),
            )
        return cur.lastrowid

    def runs(self) -> list[dict]:
        return [self._run_row(r) for r in self.connect().execute("SELECT * FROM runs ORDER BY id")]

    def run(self, run_id: int) -> dict | None:
        row = self.connect().execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone()
        return self._run_row(row) if row else None

    def sweeps(self) -> list[dict]:
        out = []
        for r in self.connect().execute("SELECT * FROM sweeps ORDER BY id"):
            grid = json.loads(r["values"])
            vary = grid if isinstance(grid, dict) else {r["setting"]: grid}
            out.append({**dict(r), "config": json.loads(r["config"]), "vary": vary, "values": vary[r["setting"]]})
        return out

    @staticmethod
    def _run_row(row: sqlite3.Row) -> dict:
        run = dict(row)
        run["config"] = json.loads(run["config"])
        run["model"] = json.loads(run["model"]) if run["model"] is not None else None
        return run

    def update_run(self, run_id: int, **columns) -> None:
        """Set some of a run's columns (name, status, message, ...) now, outside the writer's batches."""
        sets = ", ".join(f"{key}=?" for key in columns)
        with _saving(f"could not save run {run_id}"):
            self.connect().execute(
                f"UPDATE runs SET {sets}, updated_at=? WHERE id=?", (*columns.values(), time.time(), run_id)
            )

    def reserve_ids(self, run_id: int, ceiling: int) -> None:
        """Event ids up to `ceiling` are taken: written before any of them is sent."""
        self.update_run(run_id, reserved_event_id=ceiling)

    def training_runs(self) -> list[tuple[int, str]]:
        """(id, source) of the runs stored as training: after a restart, those the server died under."""
        marks = ", ".join("?" * len(ACTIVE))
        rows = self.connect().execute(f"SELECT id, source FROM runs WHERE status IN ({marks})", ACTIVE)
        return [(run_id, source) for run_id, source in rows.fetchall()]

    def delete_run(self, run_id: int) -> None:
        """Everything of a run, in one transaction: on a full disk nothing is deleted (StoreFull)."""
        db = self.connect()
        with _saving(f"could not delete run {run_id}"), db:
            db.execute("BEGIN IMMEDIATE")
            for table in RUN_TABLES:
                db.execute(f"DELETE FROM {table} WHERE run_id=?", (run_id,))
            db.execute("DELETE FROM runs WHERE id=?", (run_id,))
        self.reclaim()

    def reclaim(self) -> None:
        """Give freed pages back to the file system and shrink the WAL (after a delete)."""
        db = self.connect()
        try:
            db.executescript("PRAGMA incremental_vacuum;")  # stepped to the end (execute would free one page)
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.OperationalError:
            pass  # busy or full: the space comes back at the next delete or restart

    # ---- batched writes (StoreWriter's thread) -------------------------------------------------
    def write(
        self, events: list[tuple[int, int, dict, str, list, dict | None]], checkpoints: list[tuple[int, int, bytes]]
    ) -> None:
        """One transaction: events as (run_id, event_id, event, its JSON, its series points, the run's
        state after it or None), and checkpoints as (run_id, step, bytes)."""
        series_rows, stats_rows, timeline_rows = [], [], []
        touched: dict[tuple[int, str], list[int]] = {}  # (run, series) -> [first, last] step written
        rows: dict[int, dict] = {}
        for run_id, event_id, event, text, points, state in events:
            for name, step, value in points:
                series_rows.append((run_id, name, step, value))
                span = touched.setdefault((run_id, name), [step, step])
                span[0], span[1] = min(span[0], step), max(span[1], step)
            row = rows.setdefault(run_id, {})
            row["last_event_id"] = event_id
            if state is not None:
                row.update((key, state[key]) for key in STATE_COLUMNS)
            kind = event["type"]
            if kind == "stats":
                stats_rows.append((run_id, event["step"], zlib.compress(text.encode(), 1)))  # level 1: fast, and enough
            elif kind == "model":
                row["model"] = to_json({key: event[key] for key in ("activations", "weights", "norms")})
            elif kind in ("status", "control", "eval"):
                timeline_rows.append((run_id, event_id, event["step"], text))
        db = self.connect()
        with db:
            db.execute("BEGIN")
            db.executemany("INSERT OR REPLACE INTO series VALUES (?,?,?,?)", series_rows)
            db.executemany("INSERT OR IGNORE INTO series_names VALUES (?,?)", list(touched))
            for (run_id, name), (first, last) in touched.items():  # the buckets these points fall in, afresh
                db.execute(
                    "INSERT OR REPLACE INTO rollups SELECT run_id, name, step / ?, MIN(step), SUM(value), COUNT(*) "
                    "FROM series WHERE run_id=? AND name=? AND step>=? AND step<? GROUP BY step / ?",
                    (ROLLUP, run_id, name, first // ROLLUP * ROLLUP, (last // ROLLUP + 1) * ROLLUP, ROLLUP),
                )
            db.executemany("INSERT OR REPLACE INTO stats (run_id, step, payload) VALUES (?,?,?)", stats_rows)
            db.executemany("INSERT OR REPLACE INTO timeline VALUES (?,?,?,?)", timeline_rows)
            db.executemany("INSERT OR REPLACE INTO checkpoints VALUES (?,?,?)", checkpoints)
            now = time.time()
            for run_id, row in rows.items():
                sets = ", ".join(f"{key}=?" for key in row)
                db.execute(f"UPDATE runs SET {sets}, updated_at=? WHERE id=?", (*row.values(), now, run_id))

    # ---- reads --------------------------------------------------------------------------------
    @contextmanager
    def reading(self):
        """One read transaction: every read inside sees the same committed state."""
        db = self.connect()
        db.execute("BEGIN")
        try:
            yield
        finally:
            db.execute("COMMIT")

    def series_names(self, run_id: int) -> list[str]:
        rows = self.connect().execute("SELECT name FROM series_names WHERE run_id=? ORDER BY name", (run_id,))
        return [r[0] for r in rows]

    def series(self, run_id: int, name: str, start: int, end: int, bucket: int) -> tuple[list[int], list[float]]:
        """The points of a series with start <= step < end, averaged over buckets of `bucket` steps
        (a power of two; buckets start at multiples of it), each at the first step it holds."""
        db = self.connect()
        if bucket >= ROLLUP:
            rows = db.execute(
                "SELECT MIN(first_step), SUM(total) / SUM(count) FROM rollups WHERE run_id=? AND name=? "
                "AND bucket>=? AND bucket<? GROUP BY bucket / ? ORDER BY 1",
                (run_id, name, start // ROLLUP, -(-end // ROLLUP), bucket // ROLLUP),
            ).fetchall()
        elif bucket > 1:
            rows = db.execute(
                "SELECT MIN(step), AVG(value) FROM series WHERE run_id=? AND name=? AND step>=? AND step<? "
                "GROUP BY step / ? ORDER BY 1",
                (run_id, name, start, end, bucket),
            ).fetchall()
        else:
            rows = db.execute(
                "SELECT step, value FROM series WHERE run_id=? AND name=? AND step>=? AND step<? ORDER BY step",
                (run_id, name, start, end),
            ).fetchall()
        return [r[0] for r in rows], [r[1] for r in rows]

    def series_rows(self, run_id: int, name: str):
        """Every raw point of a series, as (step, value) in step order, read as it is iterated."""
        return self.connect().execute(
            "SELECT step, value FROM series WHERE run_id=? AND name=? ORDER BY step", (run_id, name)
        )

    def stats_steps(self, run_id: int) -> list[int]:
        return [r[0] for r in self.connect().execute("SELECT step FROM stats WHERE run_id=? ORDER BY step", (run_id,))]

    def last_stats_step(self, run_id: int) -> int | None:
        return self.connect().execute("SELECT MAX(step) FROM stats WHERE run_id=?", (run_id,)).fetchone()[0]

    def stats_at(self, run_id: int, step: int) -> dict | None:
        """The statistics recorded at `step`, or at the nearest recorded step before it (after it
        when there is none before)."""
        db = self.connect()
        row = (
            db.execute(
                "SELECT payload FROM stats WHERE run_id=? AND step<=? ORDER BY step DESC LIMIT 1", (run_id, step)
            ).fetchone()
            or db.execute(
                "SELECT payload FROM stats WHERE run_id=? AND step>? ORDER BY step LIMIT 1", (run_id, step)
            ).fetchone()
        )
        return json.loads(zlib.decompress(row[0])) if row else None

    def stats_of(self, run_id: int, steps: list[int]) -> list[dict]:
        """The statistics at exactly these recorded steps, in step order."""
        db = self.connect()
        out = []
        for step in steps:
            row = db.execute("SELECT payload FROM stats WHERE run_id=? AND step=?", (run_id, step)).fetchone()
            if row:
                out.append(json.loads(zlib.decompress(row[0])))
        return out

    def timeline(self, run_id: int) -> list[dict]:
        rows = self.connect().execute(
            "SELECT event_id, payload FROM timeline WHERE run_id=? ORDER BY event_id", (run_id,)
        )
        return [{"id": r[0], **json.loads(r[1])} for r in rows]

    def checkpoint(self, run_id: int) -> tuple[int, bytes] | None:
        row = self.connect().execute("SELECT step, state FROM checkpoints WHERE run_id=?", (run_id,)).fetchone()
        return (row[0], row[1]) if row else None
