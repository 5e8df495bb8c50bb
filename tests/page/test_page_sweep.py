"""A sweep started from the page, and its gain buttons and BatchNorm switch moving the shown run
between the members at once: the plotted data becomes that member's, at the same shown step."""

import httpx

from tests.servers import SMALL, wait_for
from tests.browser import guarded_page, traces, wait_for_traces


def loss_of(server, run_id, start, end):
    params = {"start": start, "end": end, "max_points": 1000}
    return httpx.get(f"{server.url}/api/runs/{run_id}/history", params=params).json()["series"]["loss"]


def test_a_sweep_makes_gain_and_batchnorm_live(chromium, server):
    base = httpx.post(f"{server.url}/api/runs", json={"config": {**SMALL, "steps": 1500}}).json()["id"]
    with guarded_page(chromium, height=1200) as page:
        page.goto(f"{server.url}/?runs={base}")
        page.wait_for_selector("#sweep-form input[name=steps]")
        for gain in ("1", "1.6666666666666667", "5"):  # keep 0.5 and 3
            page.locator(f"#sweep-form input[name=gain][value='{gain}']").uncheck()
        page.locator("#sweep-form input[name=steps]").fill("1500")
        page.locator("#sweep-form button[type=submit]").click()
        page.wait_for_selector("#sweep-explorer .gain-buttons button")

        sweeps = httpx.get(f"{server.url}/api/sweeps").json()  # one grid: gain x BatchNorm
        assert [s["vary"] for s in sweeps] == [{"gain": [0.5, 3], "batchnorm": [True, False]}]
        members = {
            (r["config"]["gain"], r["config"]["batchnorm"]): r["id"]
            for r in httpx.get(f"{server.url}/api/runs").json()
            if r["sweep_id"]
        }
        for run_id in members.values():
            wait_for(lambda: httpx.get(f"{server.url}/api/runs/{run_id}").json()["status"] == "finished", timeout=120)

        # one member shown; the gain buttons and the switch move it, nothing starts
        page.goto(f"{server.url}/?runs={members[0.5, True]}")
        wait_for_traces(page, "panel-loss", "t.some((x) => x.name === 'run 1 train' && x.x.length > 10)")
        page.locator("#step-scrubber").evaluate("(s) => { s.value = 700; s.dispatchEvent(new Event('input')); }")
        page.locator("#panel-loss .chart-tools input[type=range]").evaluate(
            "(s) => { s.value = 0; s.dispatchEvent(new Event('input')); }"
        )
        count = len(httpx.get(f"{server.url}/api/runs").json())
        for (gain, norm), label in (((3, True), "3"), ((3, False), None)):
            if label:
                page.locator("#sweep-explorer .gain-buttons button", has_text=label).click()
            else:
                page.locator("#sweep-batchnorm").click()
            wanted = members[gain, norm]
            page.wait_for_function("(wanted) => location.search === wanted", arg=f"?runs={wanted}")
            start, end = 0, 1500
            expected = loss_of(server, wanted, start, end)["values"]
            wait_for_traces(
                page,
                "panel-loss",
                f"t.some((x) => x.name === 'run 1 train' && Math.abs(x.y[3] - {expected[3]}) < 1e-9)",
            )
            plotted = next(x for x in traces(page, "panel-loss") if x["name"] == "run 1 train")
            assert plotted["y"] == expected
            assert page.locator("#step-label").inner_text().startswith("step 700")  # the same step
        assert len(httpx.get(f"{server.url}/api/runs").json()) == count  # moving started nothing
