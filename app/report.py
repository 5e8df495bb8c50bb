"""A finding to share: one self-contained HTML file for a run, a selection of runs or a sweep, that
opens anywhere, offline. Plotly.js (from the installed plotly package), the page's script and the data
are inlined, and the file's Content-Security-Policy forbids every request.

It holds what the page shows at one step: the loss and every per-layer series over a step range, the
histograms and health verdicts at the chosen step, each run's settings (what differs marked) and
samples. It reads the store only (the server's, or a data directory with no server running).

Its size is bounded: every run is read over the same range at the page's resolution rule
(bnscope.storage.queries: power-of-two buckets, at most REPORT_POINTS points a series), at most REPORT_RUNS
runs, and only the series a panel draws. A 200k-step run of the default network adds ~1 MB to Plotly.js's
4.8 MB (measured with every series it records).
"""

import json
import time
from collections.abc import Callable
from pathlib import Path

import plotly
from jinja2 import Environment, FileSystemLoader, select_autoescape

from bnscope import PACKAGE_DIR, __version__
from bnscope.config import RunConfig
from bnscope.health import rules_json
from bnscope.storage.queries import HISTOGRAM_KINDS, series as series_of
from bnscope.jsonenc import to_json
from bnscope.storage.store import Store

REPORT_POINTS = 1000  # points a series at most: the page asks for 2,000, a file kept small gets half
REPORT_RUNS = 64  # runs in one report: the page overlays 8, a sweep may hold more
SAMPLES = 12  # names a run, drawn with SAMPLE_SEED from its last weights
SAMPLE_SEED = 0
UNDRAWN = ("lr", "act_mean/", "norm_gain/")  # stored series no panel draws
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
REPORT_JS = PACKAGE_DIR / "static" / "report.js"

Sampler = Callable[[dict], dict | None]  # a run's row -> {"step", "samples": [{name, novel}]}, or None


class NoRuns(LookupError):
    """What was asked for names no run."""


def select(store: Store, target: str) -> list[int]:
    """The runs a target names: 'sweep:ID' or 'sweep:1,2' (the page's sweep with BatchNorm on and off is two),
    or run ids ('3', '1,2,5')."""
    rows = store.runs()
    if target.startswith("sweep:"):
        ids = []
        for sweep in (int(part) for part in target.removeprefix("sweep:").split(",")):
            members = [row["id"] for row in rows if row["sweep_id"] == sweep]
            if not members:
                raise NoRuns(f"no sweep with id {sweep} (or it has no runs left)")
            ids += members
        return ids
    ids = [int(part) for part in target.split(",") if part.strip()]
    missing = sorted(set(ids) - {row["id"] for row in rows})
    if missing or not ids:
        raise NoRuns(f"no run with id {', '.join(map(str, missing))}" if missing else "no run named")
    return ids


def gather(
    store: Store,
    run_ids: list[int],
    *,
    step: int | None = None,
    start: int = 0,
    end: int | None = None,
    max_points: int = REPORT_POINTS,
    sampler: Sampler | None = None,
) -> dict:
    """The report's data: every run over the same [start, end) at one bucket width (end: the furthest run's
    step), each one's statistics at `step` (default: the newest statistics step every run has reached)."""
    if len(run_ids) > REPORT_RUNS:
        raise ValueError(f"a report holds at most {REPORT_RUNS} runs ({len(run_ids)} asked for)")
    with store.reading():
        rows = [store.run(run_id) for run_id in run_ids]
        if None in rows:
            raise NoRuns(f"no run with id {run_ids[rows.index(None)]}")
        end = end if end is not None else max(start + 1, *(row["step"] for row in rows))
        newest = [max((s for s in store.stats_steps(row["id"]) if start <= s < end), default=None) for row in rows]
        reached = [s for s in newest if s is not None]
        step = step if step is not None else min(reached) if reached else None
        runs, bucket = [], 1
        for row in rows:
            answer = series_of(store, row["id"], start, end, max_points)
            bucket, start = answer["bucket"], answer["start"]
            stats = store.stats_at(row["id"], step) if step is not None else None
            series = {name: s for name, s in answer["series"].items() if not name.startswith(UNDRAWN)}
            runs.append({**_describe(row), "series": series, "stats": _at_step(stats)})
    for run, row in zip(runs, rows):
        run["samples"] = sampler(row) if sampler and row["source"] == "trainer" else None
    configs = [run["config"] for run in runs if run["config"]]
    keys = sorted({key for config in configs for key in config})
    differ = [key for key in keys if len({json.dumps(config.get(key)) for config in configs}) > 1]
    return {
        "title": _title(runs),
        "made_at": time.strftime("%Y-%m-%d %H:%M %Z"),
        "version": __version__,
        "start": start,
        "end": end,
        "bucket": bucket,
        "max_points": max_points,
        "step": step,
        "settings": keys,
        "differ": differ,
        "runs": runs,
        "rules": rules_json(),
        "histogram_kinds": HISTOGRAM_KINDS,  # kind -> where a stats event has it: (layer group, counts, range)
    }


def render(data: dict) -> str:
    """The self-contained HTML file."""
    env = Environment(loader=FileSystemLoader(PACKAGE_DIR / "templates"), autoescape=select_autoescape())
    # inside <script>: no '</script' may end the element early (JSON escapes '<'; in JS it can only be in a string)
    blob = to_json(data).replace("<", "\\u003c")
    plotly_js, script = (path.read_text().replace("</script", "<\\/script") for path in (PLOTLY_JS, REPORT_JS))
    return env.get_template("report.html").render(data=data, data_json=blob, plotly_js=plotly_js, report_js=script)


def checkpoint_sampler(store: Store, words: list[str]) -> Sampler:
    """Samples from each run's last checkpoint in the store (torch loads here, on first use)."""

    train_words: dict[int, frozenset[str]] = {}  # by block_size: the novelty of a name

    def sample(row: dict) -> dict | None:
        saved = store.checkpoint(row["id"])
        if saved is None:
            return None
        from bnscope.train.data import make_splits
        from bnscope.train.sampling import sample_names
        from bnscope.train.trainer import load_model

        config = RunConfig(**row["config"])
        model = load_model(config, saved[1])
        if not all(bool(p.isfinite().all()) for p in model.parameters()):
            return None  # diverged: nothing to sample
        if config.block_size not in train_words:
            train_words[config.block_size] = make_splits(words, config.block_size).train_words
        seen = train_words[config.block_size]
        names = sample_names(model, SAMPLES, block_size=config.block_size, seed=SAMPLE_SEED, train_words=seen)
        return {"step": saved[0], "samples": names}

    return sample


def _describe(row: dict) -> dict:
    trainer = row["source"] == "trainer"
    return {
        "id": row["id"],
        "name": row["name"],
        "source": row["source"],
        "status": row["status"],
        "message": row["message"],
        "step": row["step"],
        "steps": row["config"]["steps"] if trainer else None,
        "config": row["config"] if trainer else None,
        "sweep_id": row["sweep_id"],
    }


def _at_step(stats: dict | None) -> dict | None:
    """What the report draws of a statistics event: histograms and health (not the dead-unit images)."""
    if stats is None:
        return None
    keep = ("name", "kind", "hist", "range", "grad_hist", "grad_range")
    return {
        "step": stats["step"],
        "health": stats.get("health", []),
        "activations": [{k: a[k] for k in keep} for a in stats["activations"]],
        "weights": [{k: w[k] for k in ("name", "kind", "grad_hist", "grad_range")} for w in stats["weights"]],
    }


def _title(runs: list[dict]) -> str:
    sweeps = {run["sweep_id"] for run in runs}
    if len(sweeps) == 1 and None not in sweeps and len(runs) > 1:
        return f"bnscope sweep {sweeps.pop()}: {len(runs)} runs"
    return "bnscope: " + ", ".join(f"#{run['id']} {run['name']}" for run in runs[:4]) + (" …" if len(runs) > 4 else "")
