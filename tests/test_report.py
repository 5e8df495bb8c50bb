"""A finding to share: a report made by the API or by `bnscope report` with no server, opened from disk in
Chromium with every request refused. Its charts are drawn from the data it holds, equal to /history's."""

import json
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from bnscope import report
from bnscope.storage.store import Store
from tests.servers import SMALL, wait_for
from tests.browser import guarded_page, wait_for_traces

DATA = re.compile(r'<script id="report-data" type="application/json">(.*?)</script>', re.S)
CHART_TRACES = """(id) => (document.getElementById(id)?.data ?? [])
  .map((t) => ({name: t.name, x: Array.from(t.x ?? []), y: Array.from(t.y ?? [])}))"""


def density(counts: list[int], bounds: list[float]) -> list[float]:
    """The page's histogram line: counts over the bins of [lo, hi] as a density."""
    width = (bounds[1] - bounds[0]) / len(counts) or 1
    return [count / (sum(counts) * width) if sum(counts) else 0 for count in counts]


def data_of(html: str) -> dict:
    return json.loads(DATA.search(html)[1])


def open_offline(browser, path: Path):
    """The file in a page where every request but the file itself is refused and recorded."""
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    requests, problems = [], []

    def route(route):
        requests.append(route.request.url)
        return route.continue_() if route.request.url == path.as_uri() else route.abort()

    page.route("**/*", route)
    page.on("console", lambda message: message.type == "error" and problems.append(message.text))
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.goto(path.as_uri())
    page.wait_for_selector("body[data-drawn]", timeout=30_000)
    return page, requests, problems


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bnscope.cli", *args], capture_output=True, text=True, timeout=120)


def finished(server, run_id: int) -> bool:
    return httpx.get(f"{server.url}/api/runs/{run_id}").json()["status"] == "finished"


def ended(server, run_id: int) -> bool:  # a member without BatchNorm may diverge
    return httpx.get(f"{server.url}/api/runs/{run_id}").json()["status"] in ("finished", "diverged")


@pytest.mark.slow
def test_a_run_report_opens_offline_its_charts_equal_to_history_and_the_cli_makes_it_without_a_server(
    chromium, server, tmp_path
):
    run_id = httpx.post(f"{server.url}/api/runs", json={"config": SMALL}).json()["id"]
    wait_for(lambda: finished(server, run_id), timeout=120)
    answer = httpx.get(f"{server.url}/api/runs/{run_id}/report", params={"step": 200}, timeout=60)
    assert answer.status_code == 200
    assert answer.headers["content-disposition"] == f'attachment; filename="bnscope-run-{run_id}.html"'
    path = tmp_path / "run.html"
    path.write_text(answer.text)
    data = data_of(answer.text)
    assert (data["start"], data["end"], data["step"]) == (0, SMALL["steps"], 200)
    history = httpx.get(
        f"{server.url}/api/runs/{run_id}/history",
        params={"start": 0, "end": data["end"], "max_points": data["max_points"]},
    ).json()
    stats = httpx.get(f"{server.url}/api/runs/{run_id}/stats", params={"step": 200}).json()

    page, requests, problems = open_offline(chromium, path)
    try:
        loss = {t["name"]: t for t in page.evaluate(CHART_TRACES, "chart-loss")}
        assert loss["train"]["x"] == history["series"]["loss"]["steps"]
        assert loss["train"]["y"] == history["series"]["loss"]["values"]
        assert loss["dev"]["y"] == history["series"]["dev_loss"]["values"]
        saturation = page.evaluate(CHART_TRACES, "chart-saturation")
        assert [(t["x"], t["y"]) for t in saturation] == [
            (
                history["series"][f"saturation/{a['name']}"]["steps"],
                history["series"][f"saturation/{a['name']}"]["values"],
            )
            for a in stats["activations"]
        ]
        for chart in ("chart-update_to_data", "chart-act_std", "chart-grad_std", "chart-running_var"):
            assert page.evaluate(CHART_TRACES, chart), chart
        histogram = page.evaluate(CHART_TRACES, "chart-hist-activations")
        assert [t["y"] for t in histogram] == [density(a["hist"], a["range"]) for a in stats["activations"]]
        assert page.locator("#chart-loss .main-svg").count() > 0  # drawn, not only given data
        badges = page.locator("#report-health .badge")
        assert badges.count() == len(stats["health"])
        assert page.locator("#report-samples .samples li").count() == report.SAMPLES
        assert "Steps 0 to 399" in page.locator("#report-range").inner_text()
    finally:
        page.close()
    assert requests == [path.as_uri()] and problems == []

    # the same report from the data directory, with the server stopped
    server.stop()
    out = tmp_path / "offline" / "run.html"
    made = cli("report", str(run_id), "--data-dir", str(server.data_dir), "--step", "200", "--out", str(out))
    assert made.returncode == 0, made.stderr
    offline = data_of(out.read_text())
    for key in ("start", "end", "bucket", "step"):
        assert offline[key] == data[key]
    assert offline["runs"][0]["series"] == data["runs"][0]["series"]
    assert offline["runs"][0]["stats"] == data["runs"][0]["stats"]
    assert offline["runs"][0]["samples"] == data["runs"][0]["samples"]  # seed 0, the same last weights

    missing = cli("report", "sweep:9", "--data-dir", str(server.data_dir), "--out", str(out))
    assert missing.returncode == 2 and "no sweep with id 9" in missing.stderr


@pytest.mark.slow
def test_a_sweep_of_ten_members_opens_offline_with_every_chart_drawn(chromium, server, tmp_path):
    # the page's sweep of five gains with BatchNorm on and off: two sweeps, ten members
    config = {**SMALL, "n_hidden": 16, "steps": 200, "stats_every": 50, "dev_every": 100}
    vary = {"gain": [0.5, 1, 1.6666666666666667, 3, 5]}
    sweeps = [
        httpx.post(f"{server.url}/api/sweeps", json={"config": {**config, "batchnorm": on}, "vary": vary}).json()
        for on in (True, False)
    ]
    members = [run_id for sweep in sweeps for run_id in sweep["runs"]]
    for run_id in members:
        wait_for(lambda: ended(server, run_id), timeout=180)
    one = data_of(httpx.get(f"{server.url}/api/sweeps/{sweeps[0]['id']}/report", timeout=120).text)
    assert [run["id"] for run in one["runs"]] == sweeps[0]["runs"] and one["differ"] == ["gain"]
    answer = httpx.get(f"{server.url}/api/report", params={"runs": ",".join(map(str, members))}, timeout=120)
    assert answer.status_code == 200
    path = tmp_path / "sweep.html"
    path.write_text(answer.text)
    data = data_of(answer.text)
    assert [run["id"] for run in data["runs"]] == members
    assert data["differ"] == ["batchnorm", "gain"]
    made = cli(
        "report",
        f"sweep:{sweeps[0]['id']},{sweeps[1]['id']}",
        "--data-dir",
        str(server.data_dir),
        "--no-samples",
        "--out",
        str(tmp_path / "cli.html"),
    )
    assert made.returncode == 0, made.stderr
    offline = data_of((tmp_path / "cli.html").read_text())
    assert [run["series"] for run in offline["runs"]] == [run["series"] for run in data["runs"]]

    page, requests, problems = open_offline(chromium, path)
    try:
        loss = [t for t in page.evaluate(CHART_TRACES, "chart-loss") if t["name"].endswith(" train")]
        assert [t["name"] for t in loss] == [f"#{run_id} train" for run_id in members]
        assert all(t["x"] == loss[0]["x"] and len(t["x"]) == 200 for t in loss)  # equal footing: the same steps
        drawn = int(page.locator("body").get_attribute("data-drawn"))  # loss, 8 per-layer families, 3 histograms
        assert page.locator("#report-charts .js-plotly-plot .main-svg").count() >= drawn == 12
        assert page.locator("#report-settings tr.differs td:first-child").all_inner_texts() == ["batchnorm", "gain"]
    finally:
        page.close()
    assert requests == [path.as_uri()] and problems == []

    # the page's button: the shown runs at the shown step
    chosen = sweeps[0]["runs"][:2]
    with guarded_page(chromium) as page:
        page.goto(f"{server.url}/?runs={','.join(map(str, chosen))}")
        wait_for_traces(page, "panel-loss", "t.filter((x) => x.name.endsWith('train') && x.x.length > 10).length === 2")
        page.locator("#step-scrubber").evaluate("(s) => { s.value = 100; s.dispatchEvent(new Event('input')); }")
        with page.expect_download() as download:
            page.locator("#btn-report").click()
        shown = data_of(Path(download.value.path()).read_text())
    assert [run["id"] for run in shown["runs"]] == chosen
    assert shown["step"] == 100 and shown["differ"] == ["gain"]
    assert httpx.get(f"{server.url}/api/report", params={"runs": "1,x"}).status_code == 422
    assert httpx.get(f"{server.url}/api/sweeps/99/report").status_code == 404


def test_a_200k_step_run_makes_a_bounded_file(tmp_path):
    store = Store(tmp_path / "bnscope.sqlite3")
    run_id = store.create_run("long", {"steps": 200_000}, status="finished")
    layers = [f"tanh{i}" for i in range(1, 6)]
    points = [("loss", step, 3.0 - step / 1e5) for step in range(200_000)]
    points += [
        (f"{kind}/{layer}", step, 0.5)
        for step in range(0, 200_000, 100)
        for layer in layers
        for kind in ("saturation", "act_std", "grad_std", "dead", "act_mean")
    ]
    store.write([(run_id, 1, {"type": "scalars", "step": 0}, "{}", points, None)], [])
    store.update_run(run_id, step=200_000)
    data = report.gather(store, [run_id])
    assert "act_mean/tanh1" not in data["runs"][0]["series"]  # drawn by no panel
    assert max(len(s["steps"]) for s in data["runs"][0]["series"].values()) <= report.REPORT_POINTS
    html = report.render(data)
    extra = len(html.encode()) - report.PLOTLY_JS.stat().st_size
    assert extra < 1_000_000, extra
