"""The sweep view: a gain x seed grid opened at /?sweep=ID draws each gain's seeds as a mean with a min-max
band, and the effect chart puts the swept gains on a log x axis; the plotted band and the chart's points
(with the seeds' spread as error bars) are each member's /history. Every preset of GET /api/presets starts
what the server accepts."""

import re
import statistics

import httpx
import pytest

from tests.servers import SMALL, wait_for
from tests.browser import guarded_page

CONFIG = {**SMALL, "steps": 1500, "stats_every": 100, "dev_every": 500}
GRID = {"gain": [1.0, 3.0], "seed": [1, 2, 3]}

CHART = """([selector, index]) => [...(document.querySelectorAll(selector)[index]?.data ?? [])].map((t) => ({
  name: t.name, x: Array.from(t.x ?? []), y: Array.from(t.y ?? []),
  plus: t.error_y ? Array.from(t.error_y.array) : null, minus: t.error_y ? Array.from(t.error_y.arrayminus) : null}))"""


def loss_of(server, run_id, end, max_points):
    params = {"start": 0, "end": end, "max_points": max_points, "series": "loss"}
    return httpx.get(f"{server.url}/api/runs/{run_id}/history", params=params).json()["series"]["loss"]


@pytest.mark.slow
def test_a_gain_by_seed_grid_draws_seed_bands_and_an_effect_chart_over_the_gains(chromium, server):
    answer = httpx.post(f"{server.url}/api/sweeps", json={"config": CONFIG, "vary": GRID}, timeout=30).json()
    sweep, ids = answer["id"], answer["runs"]
    for run_id in ids:
        wait_for(lambda: httpx.get(f"{server.url}/api/runs/{run_id}").json()["status"] == "finished", timeout=120)
    members = {r["id"]: r for r in httpx.get(f"{server.url}/api/runs").json() if r["sweep_id"] == sweep}
    by_gain = {g: [i for i in ids if members[i]["config"]["gain"] == g] for g in GRID["gain"]}
    with guarded_page(chromium, height=1400) as page:
        page.goto(f"{server.url}/?sweep={sweep}&measure=loss")
        page.wait_for_function("() => (document.querySelector('#panel-sweep .sweep-bands').data ?? []).length === 6")
        page.wait_for_function("() => (document.querySelector('#panel-sweep .sweep-effect').data ?? []).length === 1")
        bands = {t["name"]: t for t in page.evaluate(CHART, ["#panel-sweep .chart", 0])}
        effect = page.evaluate(CHART, ["#panel-sweep .chart", 1])[0]
        axis = page.evaluate("() => document.querySelector('#panel-sweep .sweep-effect').layout")
        assert "sweep=" in page.evaluate("location.search")  # the address keeps the sweep

    # the bands: each gain's mean, min and max over its seeds, from each member's own /history
    for gain, runs in by_gain.items():
        name = f"gain={'3' if gain == 3 else '1'}"
        series = [loss_of(server, i, CONFIG["steps"], 400) for i in runs]
        assert all(s["steps"] == series[0]["steps"] for s in series)
        assert bands[f"{name} mean"]["x"] == series[0]["steps"]
        columns = list(zip(*(s["values"] for s in series)))
        assert bands[f"{name} mean"]["y"] == pytest.approx([statistics.fmean(c) for c in columns])
        assert bands[f"{name} min"]["y"] == pytest.approx([min(c) for c in columns])
        assert bands[f"{name} max"]["y"] == pytest.approx([max(c) for c in columns])

    # the effect chart: the gains on a log axis; each point the seeds' mean loss over the statistics
    # interval that ends at the shown step, its error bars their min and max
    step = int(re.search(r"at step ([\d,]+)", axis["yaxis"]["title"]["text"]).group(1).replace(",", ""))
    assert axis["xaxis"]["type"] == "log" and effect["x"] == GRID["gain"]
    for k, gain in enumerate(GRID["gain"]):
        raw = [loss_of(server, i, CONFIG["steps"], 10_000) for i in by_gain[gain]]
        at = [
            statistics.fmean(v for s, v in zip(r["steps"], r["values"]) if step - CONFIG["stats_every"] < s <= step)
            for r in raw
        ]
        assert effect["y"][k] == pytest.approx(statistics.fmean(at))
        assert effect["y"][k] + effect["plus"][k] == pytest.approx(max(at))
        assert effect["y"][k] - effect["minus"][k] == pytest.approx(min(at))


@pytest.mark.slow
def test_every_preset_starts_what_the_server_accepts(client):
    presets = client.get("/api/presets").json()
    assert {p["id"] for p in presets} >= {
        "confidently-wrong",
        "saturation-vs-gain",
        "kaiming-init",
        "batchnorm-x-gain",
        "lr-vs-update-ratio",
        "lecture-notebook",
    }
    for preset in presets:
        made = client.post("/api/sweeps" if preset["kind"] == "sweep" else "/api/runs", json=preset["body"])
        assert made.status_code == 201, (preset["id"], made.text)
        runs = made.json()["runs"] if preset["kind"] == "sweep" else [made.json()["id"]]
        for run_id in runs:
            client.post(f"/api/runs/{run_id}/stop")
