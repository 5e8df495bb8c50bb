"""SQLite store (stdlib sqlite3, WAL): runs, their time series, statistics, timeline and
checkpoints. Training never touches it directly: events go through StoreWriter, a thread that
writes them in one transaction about once a second.

Tables
  meta         schema_version
  runs         one row a run: config (JSON), status, step, the last event id written
  series       (run, name, level, step) -> value; `level` makes even decimation an index range
  series_last  the newest point of every series (the "keep the last point" of decimation)
  stats        one zlib-compressed JSON statistics event per stats step
  timeline     status, control and eval events (few; kept whole)
  checkpoints  the latest checkpoint of each run (torch.save bytes)
"""

import json
import sqlite3
import threading
import time
import zlib
from contextlib import contextmanager
from pathlib import Path

from bnscope.hub import to_json

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    config TEXT NOT NULL,
    paired_with INTEGER,
    status TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT '',
    step INTEGER NOT NULL DEFAULT 0,
    lr REAL,
    last_event_id INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS series (
    run_id INTEGER NOT NULL, name TEXT NOT NULL, level INTEGER NOT NULL, step INTEGER NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (run_id, name, level, step)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS series_last (
    run_id INTEGER NOT NULL, name TEXT NOT NULL, step INTEGER NOT NULL, value REAL NOT NULL,
    PRIMARY KEY (run_id, name)
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


class StoreError(RuntimeError):
    """The database cannot be used (a newer or unknown schema, a file that is not SQLite)."""




class Store:
    def __init__(self, path: Path | str, max_mb: int | None = None):
        self.path = Path(path)
        self.max_mb = max_mb
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        try:
            self._migrate(self.connect())
        except sqlite3.DatabaseError as err:
            raise StoreError(f"{self.path} is not a bnscope database: {err}") from err

    def connect(self) -> sqlite3.Connection:
        """This thread's connection (sqlite3 connections stay in the thread that made them)."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable up to the last checkpoint of the WAL
            db.execute("PRAGMA cache_size=-1024")  # 1 MiB a connection: every request thread has one
            if self.max_mb is not None:  # a full database fails a write exactly as a full disk does
                page_size = db.execute("PRAGMA page_size").fetchone()[0]
                db.execute(f"PRAGMA max_page_count={self.max_mb * 2**20 // page_size}")
            self._local.db = db
        return db

    def _migrate(self, db: sqlite3.Connection) -> None:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "meta" not in tables:
            if tables:
                raise StoreError(f"{self.path} holds tables but no bnscope schema version; refusing to guess its layout")
            db.executescript(SCHEMA)
            db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            return
        row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        version = int(row[0]) if row else 0
        if version != SCHEMA_VERSION:
            # version 1 is the first schema: anything else was written by a different bnscope
            raise StoreError(
                f"{self.path} has schema version {version}, this bnscope reads version {SCHEMA_VERSION}; "
                "use the bnscope that wrote it, or start with another --data-dir"
            )

    # ---- runs ---------------------------------------------------------------------------------
    def create_run(self, name: str, config: dict, paired_with: int | None, lr: float) -> int:
        now = time.time()
        cur = self.connect().execute(
            "INSERT INTO runs (name, config, paired_with, status, lr, created_at, updated_at) VALUES (?,?,?,?,?,?,?)",
            (name, to_json(config), paired_with, "created", lr, now, now),
        )
        return cur.lastrowid

    def runs(self) -> list[dict]:
        return [self._run_row(r) for r in self.connect().execute("SELECT * FROM runs ORDER BY id")]

    def run(self, run_id: int) -> dict | None:
        row = self.connect().execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone()
        return self._run_row(row) if row else None

    @staticmethod
    def _run_row(row: sqlite3.Row) -> dict:
        run = dict(row)
        run["config"] = json.loads(run["config"])
        return run

    def set_status(self, run_id: int, status: str, message: str = "") -> None:
        self.connect().execute(
            "UPDATE runs SET status=?, message=?, updated_at=? WHERE id=?", (status, message, time.time(), run_id)
        )

    def mark_interrupted(self) -> list[int]:
        """After a restart: runs that were training when the server died."""
        db = self.connect()
        ids = [r[0] for r in db.execute("SELECT id FROM runs WHERE status IN ('created', 'running', 'paused')")]
        db.execute(
            "UPDATE runs SET status='interrupted', message='the server stopped while this run was training' "
            "WHERE status IN ('created', 'running', 'paused')"
        )
        return ids

    def delete_run(self, run_id: int) -> None:
        db = self.connect()
        with db:
            db.execute("BEGIN")
            for table in ("series", "series_last", "stats", "timeline", "checkpoints"):
                db.execute(f"DELETE FROM {table} WHERE run_id=?", (run_id,))
            db.execute("DELETE FROM runs WHERE id=?", (run_id,))

    # ---- batched writes (StoreWriter's thread) -------------------------------------------------
    def write(self, events: list[tuple[int, int, dict, str, list]], checkpoints: list[tuple[int, int, bytes]]) -> None:
        """One transaction: events as (run_id, event_id, event, its JSON, its series points) and checkpoints."""
        db = self.connect()
        series_rows, last_rows, stats_rows, timeline_rows = [], {}, [], []
        run_state: dict[int, dict] = {}
        for run_id, event_id, event, text, points in events:
            for name, step, level, value in points:
                series_rows.append((run_id, name, level, step, value))
                last_rows[(run_id, name)] = (run_id, name, step, value)
            kind = event["type"]
            state = run_state.setdefault(run_id, {})
            state["last_event_id"] = event_id
            if kind == "stats":
                stats_rows.append((run_id, event["step"], zlib.compress(text.encode(), 1)))  # level 1: fast, and enough
            elif kind == "scalars":
                state["step"] = event["step"] + len(event["loss"])
                state["lr"] = event["lr"]
            else:  # status, control, eval: the run's timeline
                timeline_rows.append((run_id, event_id, event["step"], text))
                if kind == "status":
                    state["status"], state["message"] = event["status"], event["message"]
                    state["step"] = event["step"]
                elif kind == "control" and event["action"] == "lr":
                    state["lr"] = event["lr"]
        with db:
            db.execute("BEGIN")
            db.executemany("INSERT OR REPLACE INTO series VALUES (?,?,?,?,?)", series_rows)
            db.executemany("INSERT OR REPLACE INTO series_last VALUES (?,?,?,?)", last_rows.values())
            db.executemany("INSERT OR REPLACE INTO stats (run_id, step, payload) VALUES (?,?,?)", stats_rows)
            db.executemany("INSERT OR REPLACE INTO timeline VALUES (?,?,?,?)", timeline_rows)
            db.executemany("INSERT OR REPLACE INTO checkpoints VALUES (?,?,?)", checkpoints)
            now = time.time()
            for run_id, state in run_state.items():
                sets = ", ".join(f"{key}=?" for key in state)
                db.execute(f"UPDATE runs SET {sets}, updated_at=? WHERE id=?", (*state.values(), now, run_id))

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
        return [r[0] for r in self.connect().execute("SELECT name FROM series_last WHERE run_id=? ORDER BY name", (run_id,))]

    def series(self, run_id: int, name: str, level: int) -> tuple[list[int], list[float]]:
        """Every sample of level >= `level` (evenly spaced), plus the newest point."""
        db = self.connect()
        rows = db.execute(
            "SELECT step, value FROM series WHERE run_id=? AND name=? AND level>=? ORDER BY step", (run_id, name, level)
        ).fetchall()
        last = db.execute("SELECT step, value FROM series_last WHERE run_id=? AND name=?", (run_id, name)).fetchone()
        if last and (not rows or rows[-1][0] < last[0]):
            rows.append(last)
        return [r[0] for r in rows], [r[1] for r in rows]

    def last_step(self, run_id: int, name: str) -> int | None:
        row = self.connect().execute("SELECT step FROM series_last WHERE run_id=? AND name=?", (run_id, name)).fetchone()
        return row[0] if row else None

    def stats_steps(self, run_id: int) -> list[int]:
        return [r[0] for r in self.connect().execute("SELECT step FROM stats WHERE run_id=? ORDER BY step", (run_id,))]

    def stats_at(self, run_id: int, step: int) -> dict | None:
        """The statistics recorded at `step`, or at the nearest recorded step before it (after it
        when there is none before)."""
        db = self.connect()
        row = db.execute(
            "SELECT payload FROM stats WHERE run_id=? AND step<=? ORDER BY step DESC LIMIT 1", (run_id, step)
        ).fetchone() or db.execute(
            "SELECT payload FROM stats WHERE run_id=? AND step>? ORDER BY step LIMIT 1", (run_id, step)
        ).fetchone()  # fmt: skip
        return json.loads(zlib.decompress(row[0])) if row else None

    def timeline(self, run_id: int) -> list[dict]:
        rows = self.connect().execute("SELECT event_id, payload FROM timeline WHERE run_id=? ORDER BY event_id", (run_id,))
        return [{"id": r[0], **json.loads(r[1])} for r in rows]

    def checkpoint(self, run_id: int) -> tuple[int, bytes] | None:
        row = self.connect().execute("SELECT step, state FROM checkpoints WHERE run_id=?", (run_id,)).fetchone()
        return (row[0], row[1]) if row else None
