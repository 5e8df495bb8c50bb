"""The server's CPU per event on its real path, for a stats event and for a scalars event.

    python -m bench --only event_cost

The events are real: a Trainer of the default network trains in this process and its stats and
scalars events are kept (scalars events after the speed warm-up, so each holds ~0.1 s of losses).
Each is then taken down the server's path, timed with this thread's CPU clock (time.thread_time),
part by part:

  series points   bnscope.events.series_points(event)
  publish         bnscope.runs.run.publish: the series points, the run's state, JSON once
                  (bnscope.jsonenc.to_json of bnscope.events.wire), the run's Channel, the writer queue
  compression     zlib.compress(json, 1): what Store.write does to a stats event (level 1)
  store write     Store.write of the events, with their points, in one transaction, as StoreWriter
                  batches them: a second's worth of one type at a time (compression included)

Each event is replayed at later steps (steps shifted), so every write inserts new rows.
"""

import statistics
import tempfile
import time
import zlib
from pathlib import Path

import torch

from bench.inprocess import TrainerWindows
from bnscope.config import RunConfig
from bnscope.train.data import make_splits, read_names
from bnscope.events import RunState, series_points
from bnscope.stream.hub import Channel
from bnscope.runs.run import Run, publish
from bnscope.storage.store import Store

BATCH = {"stats": 6, "scalars": 16}  # events of each type in a second at ~600 steps/s (StoreWriter: ~1 s a transaction)


class _Collect:
    """A StoreWriter stand-in that keeps what publish hands over, for Store.write."""

    def __init__(self):
        self.rows: list[tuple] = []

    def event(self, *row) -> None:
        self.rows.append(row)


def _shifted(event: dict, offset: int) -> dict:
    out = {**event, "step": event["step"] + offset}
    out.pop("time", None)
    if event["type"] == "scalars":
        out["ud_steps"] = [s + offset for s in event["ud_steps"]]
    return out


def _cpu(fn) -> float:
    t0 = time.thread_time()
    fn()
    return time.thread_time() - t0


def real_events(steps: int) -> dict[str, list[dict]]:
    """Stats events and post-warm-up scalars events of the default network, as its trainer makes them."""
    kept: dict[str, list[dict]] = {"stats": [], "scalars": [], "warm-up": []}

    def keep(event: dict, at: float) -> None:
        if event["type"] == "stats":
            kept["stats"].append(dict(event))
        elif event["type"] == "scalars":
            kept["scalars" if event["steps_per_s"] > 0 else "warm-up"].append(dict(event))

    config = RunConfig()
    windows = TrainerWindows(config, make_splits(read_names(), config.block_size), tap=keep)
    try:
        windows.run_steps(steps)
    finally:
        windows.close()
    return {"stats": kept["stats"], "scalars": kept["scalars"] or kept["warm-up"]}  # a --quick run ends in its warm-up


def measure(quick: bool, log=print) -> dict:
    torch.set_num_threads(1)
    events = real_events(300 if quick else 3000)
    repeats = 2 if quick else 10
    out = {}
    with tempfile.TemporaryDirectory(prefix="bnscope-bench-") as folder:
        store = Store(Path(folder) / "bnscope.sqlite3")
        for kind, batch in BATCH.items():
            sample = events[kind]
            run_id = store.create_run(kind, RunConfig().model_dump())
            run = Run(
                id=run_id,
                name=kind,
                source="trainer",
                config=RunConfig().model_dump(),
                paired_with=None,
                sweep_id=None,
                created_at=time.time(),
                state=RunState(),
                channel=Channel(),
            )
            span = 1 + max(e["step"] + len(e.get("loss", [])) for e in sample)
            parts: dict[str, list[float]] = {"series points": [], "publish": [], "compression": [], "store write": []}
            sizes = []
            for r in range(repeats):
                replay = [_shifted(e, (r + 1) * span) for e in sample]
                for event in replay:
                    parts["series points"].append(_cpu(lambda: series_points(event)))
                writer = _Collect()
                for event in replay:
                    parts["publish"].append(_cpu(lambda: publish(run, event, writer)))
                texts = [row[3] for row in writer.rows]
                sizes += [len(text) for text in texts]
                if kind == "stats":
                    parts["compression"] += [_cpu(lambda: zlib.compress(text.encode(), 1)) for text in texts]
                for i in range(0, len(writer.rows), batch):
                    rows = writer.rows[i : i + batch]
                    parts["store write"].append(_cpu(lambda: store.write(rows, [])) / len(rows))
            ms = {part: statistics.mean(values) * 1e3 for part, values in parts.items() if values}
            out[kind] = {
                "ms": ms,
                "total_ms": ms["publish"] + ms["store write"],
                "events": len(sample) * repeats,
                "kib": statistics.mean(sizes) / 1024,
                "batch": batch,
                "losses_per_event": statistics.mean(len(e["loss"]) for e in sample) if kind == "scalars" else None,
            }
            log(f"  {kind}: " + ", ".join(f"{part} {v:.3f} ms" for part, v in ms.items()))
    return out
