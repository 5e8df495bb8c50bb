"""Reading a run back: its series over a range of steps at a resolution, its statistics, the
histograms over time, and a whole export. Every answer is bounded.

Equal footing: a range [start, end) and a point budget give one bucket width, a power of two
(`bucket_for`); buckets start at multiples of it, and each point is the mean of the raw values in
its bucket, at the first step it holds. Two runs asked for over the same range so come back at the
same steps, each point averaging the same steps, whatever their lengths; a plotted curve, smoothed
or not, is never biased by one run being decimated more than another.
"""

import csv
import heapq
import json
from typing import Literal, TextIO

from bnscope.jsonenc import to_json
from bnscope.storage.store import Store

HISTORY_POINTS = 2000  # points per series in a history answer (W&B draws <= 1,500 a line)
MAX_POINTS = 10_000  # the most a history answer may be asked for a series
HISTORY_HISTOGRAMS = 500  # statistics steps listed (TensorBoard keeps 500 histograms a tag)
HEATMAP_STEPS = 200  # columns of a histograms-over-time heatmap
HistogramKind = Literal["activations", "activation_grads", "weight_grads"]
HISTOGRAM_KINDS: dict[HistogramKind, tuple[str, str, str]] = {  # heatmap kind -> (stats list, histogram key, range key)
    "activations": ("activations", "hist", "range"),
    "activation_grads": ("activations", "grad_hist", "grad_range"),
    "weight_grads": ("weights", "grad_hist", "grad_range"),
}


def bucket_for(start: int, end: int, max_points: int) -> int:
    """The smallest power of two such that [start, end) in buckets of it is at most max_points buckets."""
    bucket = 1
    while (end - 1) // bucket - start // bucket + 1 > max_points:
        bucket *= 2
    return bucket


def evenly(items: list, max_count: int) -> list:
    """At most max_count items, evenly spaced, first and last kept."""
    if len(items) <= max_count:
        return items
    if max_count < 2:
        return items[-max_count:] if max_count else []
    last = len(items) - 1
    picks = sorted({round(i * last / (max_count - 1)) for i in range(max_count)})
    return [items[i] for i in picks]


def series(store: Store, run_id: int, start: int, end: int, max_points: int, names: list[str] | None = None) -> dict:
    """Every series of a run (or those in `names`) over [start, end) at the bucket width the budget gives:
    {"start", "end", "bucket", "series": {name: {"steps", "values"}}} (start aligned down to a bucket)."""
    bucket = bucket_for(start, end, max_points)
    start = start // bucket * bucket
    out = {}
    for name in store.series_names(run_id):
        if names is not None and name not in names:
            continue
        steps, values = store.series(run_id, name, start, end, bucket)
        out[name] = {"steps": steps, "values": values}
    return {"start": start, "end": end, "bucket": bucket, "series": out}


def histograms(store: Store, run_id: int, kind: str, start: int, end: int, max_steps: int) -> dict:
    """Each layer's histogram at up to max_steps statistics steps in [start, end), evenly spaced:
    {"kind", "steps", "layers": {name: {"ranges": [[lo, hi], ...], "counts": [[...], ...]}}}, a column
    a step (a layer missing at a step has no column there: "steps" lists each layer's own)."""
    group, hist_key, range_key = HISTOGRAM_KINDS[kind]
    steps = evenly([s for s in store.stats_steps(run_id) if start <= s < end], max_steps)
    layers: dict[str, dict] = {}
    for stats in store.stats_of(run_id, steps):
        for entry in stats[group]:
            layer = layers.setdefault(entry["name"], {"steps": [], "ranges": [], "counts": []})
            layer["steps"].append(stats["step"])
            layer["ranges"].append(entry[range_key])
            layer["counts"].append(entry[hist_key])
    return {"kind": kind, "steps": steps, "layers": layers}


def export_csv(store: Store, run_id: int, out: TextIO) -> None:
    """Every raw point of every series as CSV: a `step` column, then one column a series (empty where a
    series has no point at that step). One cursor a series, merged by step: memory stays small."""
    names = store.series_names(run_id)
    writer = csv.writer(out)
    writer.writerow(["step", *names])

    def column(i: int, name: str):  # each point tagged with its column, in step order
        return ((step, i, value) for step, value in store.series_rows(run_id, name))

    streams = [column(i, name) for i, name in enumerate(names)]
    row, at = [""] * len(names), None
    for step, i, value in heapq.merge(*streams):
        if step != at:
            if at is not None:
                writer.writerow([at, *row])
                row = [""] * len(names)
            at = step
        row[i] = repr(value)
    if at is not None:
        writer.writerow([at, *row])


def export_json(store: Store, run_id: int, head: dict, out: TextIO) -> None:
    """The run (`head`: its description), its timeline and every raw series, as one JSON object."""
    out.write('{"run":' + to_json(head) + ',"timeline":' + to_json(store.timeline(run_id)) + ',"series":{')
    for i, name in enumerate(store.series_names(run_id)):
        steps, values = [], []
        for step, value in store.series_rows(run_id, name):
            steps.append(step)
            values.append(value)
        out.write(("," if i else "") + json.dumps(name) + ":" + to_json({"steps": steps, "values": values}))
    out.write("}}")
