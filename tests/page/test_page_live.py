"""The live page keeps up with training: as a run passes the end of the chart's axis, the axis grows
at once (not at the next run-list poll), so the loss chart's newest point follows the run's step."""

import httpx

from tests.servers import live_server
from tests.browser import guarded_page, wait_for_traces

NEWEST = """() => {
  const chart = document.querySelector('#panel-loss .chart');
  const train = chart.data.filter((t) => t.name.endsWith(' train'));
  return [Math.max(...train.map((t) => t.x[t.x.length - 1])), chart.layout.xaxis.range[1]];
}"""


def test_the_loss_chart_follows_a_training_run_past_the_end_of_its_axis(chromium, tmp_path):
    config = {"steps": 10_000_000, "dev_every": 1_000_000}  # the default network, its statistics every 100 steps
    with live_server(tmp_path / "data", env={"BNSCOPE_AUTOSTART": "false"}) as server:
        run_id = httpx.post(f"{server.url}/api/runs", json={"config": config}).json()["id"]
        with guarded_page(chromium) as page:
            page.goto(f"{server.url}/?runs={run_id}")
            wait_for_traces(page, "panel-loss", "t.some((x) => x.name.endsWith(' train') && x.x.length > 5)")
            ends, behind = set(), []
            for _ in range(16):
                step = httpx.get(f"{server.url}/api/runs/{run_id}").json()["step"]
                page.wait_for_timeout(
                    1500
                )  # time for the newest points to reach the chart (the run list is read every 3 s);
                # not time.sleep: the page's requests pass through this process's route handler
                newest, end = page.evaluate(NEWEST)
                ends.add(end)
                bucket = 2 * end / 1000  # a point stands at its bucket's first step (1,000 points a range at most)
                if newest < step - bucket:
                    behind.append((step, newest, end))
        httpx.post(f"{server.url}/api/runs/{run_id}/stop")
    assert len(ends) > 1  # the axis grew while we looked
    assert behind == []  # (step 1.5 s before, the newest plotted step, the axis end)
