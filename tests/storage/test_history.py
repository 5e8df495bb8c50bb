"""Reading runs back: bucket widths, equal footing between runs, even spacing, heatmaps, export."""

import csv
import io
import json
import random

import pytest

from bnscope.storage.queries import bucket_for, evenly, export_csv, export_json, histograms, series
from bnscope.storage.store import Store


def write_losses(store: Store, run_id: int, losses: list[float], first: int = 0) -> None:
    points = [("loss", first + i, value) for i, value in enumerate(losses)]
    store.write([(run_id, 1, {"type": "scalars", "step": first}, "{}", points, None)], [])


@pytest.fixture
def store(tmp_path) -> Store:
    return Store(tmp_path / "bnscope.sqlite3")


def test_the_bucket_is_the_smallest_power_of_two_within_the_budget():
    for start, end, budget in [
        (0, 1, 2),
        (0, 2000, 2000),
        (0, 2001, 2000),
        (0, 200_000, 2000),
        (1000, 5000, 50),
        (12_345, 987_654, 777),
    ]:
        bucket = bucket_for(start, end, budget)
        assert bucket & (bucket - 1) == 0  # a power of two
        buckets = lambda width: (end - 1) // width - start // width + 1  # noqa: E731
        assert buckets(bucket) <= budget
        assert bucket == 1 or buckets(bucket // 2) > budget  # and no coarser than needed


@pytest.mark.parametrize("bucket_width", [1, 8, 64, 512])
def test_each_point_is_the_mean_of_the_raw_values_in_its_bucket(store, bucket_width):
    run = store.create_run("a", {})
    rng = random.Random(0)
    losses = [rng.uniform(1, 4) for _ in range(3000)]
    write_losses(store, run, losses)
    budget = -(-3000 // bucket_width)  # exactly the budget that gives this width
    answer = series(store, run, 0, 3000, budget)
    assert answer["bucket"] == bucket_width
    got = answer["series"]["loss"]
    starts = list(range(0, 3000, bucket_width))
    assert got["steps"] == starts
    for step, value in zip(got["steps"], got["values"]):
        chunk = losses[step : step + bucket_width]
        assert value == pytest.approx(sum(chunk) / len(chunk), rel=1e-12)


def test_two_runs_over_the_same_range_come_back_at_the_same_steps_whatever_their_lengths(store):
    """The bias users saw: the older, longer run decimated more than its younger pair."""
    old, young = store.create_run("old", {}), store.create_run("young", {})
    write_losses(store, old, [3.0 - i * 1e-5 for i in range(100_000)])
    write_losses(store, young, [3.0 - i * 2e-5 for i in range(1_200)])
    a, b = (series(store, run, 0, 1_200, 200) for run in (old, young))
    assert a["bucket"] == b["bucket"] == 8
    assert a["series"]["loss"]["steps"] == b["series"]["loss"]["steps"] == list(range(0, 1_200, 8))
    # and each point averages the same steps of its own run
    assert b["series"]["loss"]["values"][10] == pytest.approx(sum(3.0 - i * 2e-5 for i in range(80, 88)) / 8)


def test_a_sparse_series_keeps_its_own_steps_and_a_range_starts_on_a_bucket(store):
    run = store.create_run("a", {})
    points = [("dev_loss", step, step / 1000) for step in range(0, 20_000, 5000)]
    store.write([(run, 1, {"type": "eval", "step": 0}, "{}", points, None)], [])
    answer = series(store, run, 3000, 20_000, 100)  # bucket 256
    assert answer["start"] == 2816 and answer["start"] % answer["bucket"] == 0
    assert answer["series"]["dev_loss"] == {"steps": [5000, 10_000, 15_000], "values": [5.0, 10.0, 15.0]}


def test_evenly_keeps_first_and_last_and_spaces_the_rest():
    items = list(range(101))
    assert evenly(items, 11) == list(range(0, 101, 10))
    assert evenly(items, 500) == items
    assert evenly(list(range(7)), 2) == [0, 6]


def stats_event(step: int, scale: float) -> dict:
    layer = {
        "name": "tanh1",
        "hist": [step, 1, 2],
        "range": [-1.0, 1.0],
        "grad_hist": [0, step, 0],
        "grad_range": [-scale, scale],
    }
    return {"type": "stats", "step": step, "activations": [layer], "weights": [], "norms": []}


def test_histograms_over_time_are_each_layer_at_evenly_spaced_stats_steps(store):
    run = store.create_run("a", {})
    events = [stats_event(step, step + 1.0) for step in range(0, 1000, 100)]
    store.write([(run, i, e, json.dumps(e), [], None) for i, e in enumerate(events, 1)], [])
    answer = histograms(store, run, "activation_grads", 0, 1000, 4)
    assert answer["steps"] == [0, 300, 600, 900]
    layer = answer["layers"]["tanh1"]
    assert layer["steps"] == [0, 300, 600, 900]
    assert layer["counts"] == [[0, s, 0] for s in (0, 300, 600, 900)]
    assert layer["ranges"] == [[-(s + 1.0), s + 1.0] for s in (0, 300, 600, 900)]


def test_export_csv_has_a_step_column_and_a_column_a_series(store):
    run = store.create_run("a", {})
    points = [("loss", s, 3.0 - s / 10) for s in range(5)] + [("dev_loss", 0, 3.1), ("dev_loss", 4, 2.7)]
    store.write([(run, 1, {"type": "scalars", "step": 0}, "{}", points, None)], [])
    out = io.StringIO()
    export_csv(store, run, out)
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert rows[0] == ["step", "dev_loss", "loss"]
    assert [r[0] for r in rows[1:]] == ["0", "1", "2", "3", "4"]
    assert rows[1] == ["0", "3.1", "3.0"] and rows[2][1] == "" and rows[5] == ["4", "2.7", repr(3.0 - 0.4)]
    out = io.StringIO()
    export_json(store, run, {"id": run}, out)
    whole = json.loads(out.getvalue())
    assert whole["run"] == {"id": run} and whole["series"]["loss"]["steps"] == [0, 1, 2, 3, 4]
