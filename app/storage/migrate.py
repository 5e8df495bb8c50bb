"""Bring a database of bnscope 0.1 (schema version 1) to version 2, in place, once.

Version 1 kept series samples tagged with a decimation level and statistics in the lecture-only
format (`layers`, shared histogram ranges, `batchnorm`); version 2 keeps raw series with 64-step
rollups, the general statistics format of bnscope.events, each run's layers, and reserved event ids.
"""

import json
import sqlite3
import zlib


def _stats_v2(old: dict) -> dict:
    """A version 1 statistics event in the bnscope.events.StatsEvent format."""
    act_range, grad_range, weight_range = old["act_range"], old["grad_range"], old["weight_grad_range"]
    activations = [
        {
            "name": l["name"],
            "kind": "tanh",
            "units": len(l["image"][0]) * 4 if l.get("image") else 0,
            "mean": l["mean"],
            "std": l["std"],
            "saturation": l["saturation"],
            "dead": l["dead"],
            "hist": l["act_hist"],
            "range": act_range,
            "grad_mean": l["grad_mean"],
            "grad_std": l["grad_std"],
            "grad_hist": l["grad_hist"],
            "grad_range": grad_range,
            "image": l["image"],
        }
        for l in old["layers"]
    ]
    weights = [
        {
            "name": w["name"],
            "kind": "embedding" if w["name"] == "C" else "linear",
            "shape": w["shape"],
            "data_std": None,
            "grad_mean": w["grad_mean"],
            "grad_std": w["grad_std"],
            "grad_to_data": w["grad_to_data"],
            "grad_hist": w["grad_hist"],
            "grad_range": weight_range,
        }
        for w in old["weights"]
    ]
    norms = [
        {
            "name": b["name"],
            "kind": "batchnorm",
            "running_mean": b["running_mean"],
            "running_var": b["running_var"],
            "mean_of_running_mean": b["mean_of_running_mean"],
            "mean_of_running_var": b["mean_of_running_var"],
        }
        for b in old["batchnorm"]
    ]
    return {"type": "stats", "step": old["step"], "activations": activations, "weights": weights, "norms": norms}


def _model_of(config: dict) -> str:
    """The layers a version 1 run (always the lecture network) reports, from its config."""
    n = config.get("n_layers", 5)
    layers = {
        "activations": [{"name": f"tanh{i}", "kind": "tanh"} for i in range(1, n + 1)],
        "weights": [{"name": "C", "kind": "embedding"}]
        + [{"name": f"linear{i}", "kind": "linear"} for i in range(1, n + 2)],
        "norms": [{"name": f"batchnorm{i}", "kind": "batchnorm"} for i in range(1, n + 2)]
        if config.get("batchnorm", True)
        else [],
    }
    return json.dumps(layers)


def v1_to_v2(db: sqlite3.Connection, schema: str, rollup: int) -> None:
    with db:
        db.execute("BEGIN")
        for column in (
            "source TEXT NOT NULL DEFAULT 'trainer'",
            "sweep_id INTEGER",
            "reserved_event_id INTEGER NOT NULL DEFAULT 0",
            "model TEXT",
        ):
            db.execute(f"ALTER TABLE runs ADD COLUMN {column}")
        db.execute("ALTER TABLE series RENAME TO series_v1")
        db.execute("DROP TABLE series_last")
        for statement in schema.split(";"):  # one by one: executescript would commit the transaction
            if statement.strip() and "CREATE" in statement:
                db.execute(statement)
        db.execute("INSERT OR REPLACE INTO series SELECT run_id, name, step, value FROM series_v1")
        db.execute("DROP TABLE series_v1")
        db.execute("INSERT OR IGNORE INTO series_names SELECT DISTINCT run_id, name FROM series")
        db.execute(
            "INSERT INTO rollups SELECT run_id, name, step / ?, MIN(step), SUM(value), COUNT(*) FROM series "
            "GROUP BY run_id, name, step / ?",
            (rollup, rollup),
        )
        for row_id, payload in db.execute("SELECT id, payload FROM stats").fetchall():
            new = _stats_v2(json.loads(zlib.decompress(payload)))
            db.execute("UPDATE stats SET payload=? WHERE id=?", (zlib.compress(json.dumps(new).encode(), 1), row_id))
        for run_id, config in db.execute("SELECT id, config FROM runs").fetchall():
            db.execute(
                "UPDATE runs SET model=?, reserved_event_id=last_event_id WHERE id=?",
                (_model_of(json.loads(config)), run_id),
            )
        db.execute("UPDATE meta SET value='2' WHERE key='schema_version'")
    db.execute("PRAGMA auto_vacuum=INCREMENTAL")
    db.execute("VACUUM")  # takes the auto_vacuum setting, and gives back the space of the old tables
