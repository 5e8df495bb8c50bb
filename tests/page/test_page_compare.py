"""Many runs in the browser: four overlaid from the address; two runs drawn at the same steps over
the matched range, each from its own /history; no BatchNorm traces for a run without it; the
scrubber changes the histograms' data; the heatmap; export; a diverged run shown as such."""

import json
import time

import httpx
import pytest

from tests.servers import SMALL, live_server, wait_for
from tests.browser import guarded_page, traces, wait_for_traces

CONFIG = {**SMALL, "steps": 3000, "stats_every": 100, "dev_every": 1000}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A finished reference run and three paired runs (BatchNorm off, gain 3, gain 0.5)."""
    with live_server(tmp_path_factory.mktemp("compare") / "data", env={"BNSCOPE_AUTOSTART": "false"}) as server:
        post = lambda body: httpx.post(f"{server.url}/api/runs", json=body, timeout=30).json()["id"]  # noqa: E731
        first = post({"config": CONFIG})
        others = [
            post({"config": change, "paired_with": first})
            for change in ({"batchnorm": False}, {"gain": 3}, {"gain": 0.5})
        ]
        ids = [first, *others]
        for run_id in ids:
            wait_for(lambda: httpx.get(f"{server.url}/api/runs/{run_id}").json()["status"] == "finished", timeout=120)
        yield server, ids


def history(server, run_id, start, end, max_points=1000):
    params = {"start": start, "end": end, "max_points": max_points}
    return httpx.get(f"{server.url}/api/runs/{run_id}/history", params=params).json()["series"]


def set_smoothing_raw(page, panel):
    page.locator(f"#{panel} .chart-tools input[type=range]").evaluate(
        "(s) => { s.value = 0; s.dispatchEvent(new Event('input')); }"
    )


def test_four_runs_overlaid_from_the_address(chromium, runs):
    server, ids = runs
    with guarded_page(chromium) as page:
        page.goto(f"{server.url}/?runs={','.join(map(str, ids))}")
        wait_for_traces(
            page,
            "panel-loss",
            "[1, 2, 3, 4].every((n) => t.some((x) => x.name === `run ${n} train` && x.x.length > 10))",
        )
        labels = page.locator("#run-chips .chip-label").all_inner_texts()
        assert labels[1:] == [f"#{ids[1]} batchnorm=false", f"#{ids[2]} gain=3", f"#{ids[3]} gain=0.5"]
        assert page.locator("#run-table input[type=checkbox]:checked").count() == 4


def test_two_runs_are_drawn_at_the_same_steps_each_from_its_own_history(chromium, runs):
    server, (a, b, *_) = runs
    with guarded_page(chromium) as page:
        page.goto(f"{server.url}/?runs={a},{b}")
        set_smoothing_raw(page, "panel-loss")
        wait_for_traces(
            page, "panel-loss", "t.filter((x) => x.name.endsWith(' train') && x.x.length > 10).length === 2"
        )
        start, end = page.evaluate("document.querySelector('#panel-loss .chart').layout.xaxis.range")
        plotted = {x["name"]: x for x in traces(page, "panel-loss")}
    mine = {run: history(server, run, start, end)["loss"] for run in (a, b)}
    one, two = plotted["run 1 train"], plotted["run 2 train"]
    assert one["x"] == two["x"] == mine[a]["steps"] == mine[b]["steps"]  # the same steps, the server's buckets
    assert one["y"] == pytest.approx(mine[a]["values"]) and two["y"] == pytest.approx(mine[b]["values"])
    assert one["y"] != pytest.approx(two["y"])  # B is drawn from B's data, not A's


def test_a_run_without_batchnorm_has_no_batchnorm_traces(chromium, runs):
    server, (a, b, *_) = runs
    with guarded_page(chromium, height=3000) as page:
        page.goto(f"{server.url}/?runs={b}")
        page.wait_for_selector("#panel-batchnorm .empty:not([hidden])")
        page.goto(f"{server.url}/?runs={a},{b}")
        wait_for_traces(page, "panel-batchnorm", "t.length > 0")
        names = [x["name"] for x in traces(page, "panel-batchnorm")]
        assert all(name.startswith("run 1 ") for name in names)


def test_the_scrubber_changes_the_histograms_data_and_the_heatmap_shows_every_step(chromium, runs):
    server, (a, *_) = runs
    with guarded_page(chromium, height=1600) as page:
        page.goto(f"{server.url}/?runs={a}")
        wait_for_traces(page, "panel-activations", "t.length >= 2")
        before = traces(page, "panel-activations")
        page.locator("#step-scrubber").evaluate("(s) => { s.value = 0; s.dispatchEvent(new Event('input')); }")
        page.wait_for_function(
            "() => document.querySelector('#panel-activations .at-step').textContent === 'at step 0'"
        )
        page.wait_for_function(
            "(old) => JSON.stringify(document.querySelector('#panel-activations .chart').data[0].y) !== old",
            arg=json.dumps(before[0]["y"]),
        )
        after = traces(page, "panel-activations")
        at_zero = httpx.get(f"{server.url}/api/runs/{a}/stats", params={"step": 0}).json()["activations"][0]
        assert after[0]["y"] != before[0]["y"]
        total, width = sum(at_zero["hist"]), (at_zero["range"][1] - at_zero["range"][0]) / len(at_zero["hist"])
        assert after[0]["y"] == pytest.approx([c / (total * width) for c in at_zero["hist"]])  # step 0's own histogram

        # the heatmap: one column per statistics step, the shown step marked
        page.wait_for_function(
            "() => (document.querySelectorAll('#panel-activations .chart')[1].data ?? [])[0]?.x.length >= 20"
        )
        heat = page.evaluate(
            "() => { const d = document.querySelectorAll('#panel-activations .chart')[1]; return [d.data[0].type, d.data[0].z.length, d.layout.shapes[0].x0]; }"
        )
        assert heat == ["heatmap", 64, 0]


def test_export_downloads_the_runs_series_as_csv(chromium, runs, tmp_path):
    server, (a, *_) = runs
    with guarded_page(chromium, accept_downloads=True) as page:
        page.goto(f"{server.url}/?runs={a}")
        with page.expect_download() as download:
            page.locator(f"#run-table a[aria-label='download run #{a} as CSV']").click()
        path = tmp_path / "run.csv"
        download.value.save_as(path)
    header, first = path.read_text().splitlines()[:2]
    assert header.split(",")[0] == "step" and "loss" in header.split(",") and first.startswith("0,")


def test_a_diverged_run_is_shown_as_diverged_with_its_step_within_2_s(chromium, runs):
    server, (a, *_) = runs
    run = httpx.post(
        f"{server.url}/api/runs", json={"config": {**CONFIG, "lr": 50, "batchnorm": False, "steps": 20000}}
    ).json()["id"]
    with guarded_page(chromium) as page:
        page.goto(f"{server.url}/?runs={run}")
        page.wait_for_selector("#run-chips .chip-label")
        wait_for(lambda: httpx.get(f"{server.url}/api/runs/{run}").json()["status"] == "diverged", timeout=60)
        seen = time.monotonic()
        step = httpx.get(f"{server.url}/api/runs/{run}").json()["step"]
        page.wait_for_selector("#run-chips .status-diverged", timeout=2000)
        assert time.monotonic() - seen < 2.5
        assert f"diverged at {step:,}" in page.locator("#run-chips .status-diverged").inner_text()
        page.wait_for_function(
            "(m) => document.querySelector(m).textContent.includes('loss exploded')",
            arg=f"#run-table tr[data-run='{run}'] .run-message",
            timeout=2000,
        )
