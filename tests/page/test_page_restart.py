"""The server stops and starts again with the page open: the page drops "live" while it is down,
then shows the run interrupted and lets it be resumed within a few seconds, without a reload."""

import time

import httpx

from tests.servers import SMALL, live_server
from tests.browser import WAIT_MS


def test_after_a_restart_the_page_shows_interrupted_and_resume_within_seconds(chromium, tmp_path):
    with live_server(tmp_path / "data", env={"BNSCOPE_AUTOSTART": "false"}) as server:
        run = httpx.post(f"{server.url}/api/runs", json={"config": {**SMALL, "steps": 2_000_000}}).json()["id"]
        page = chromium.new_page()
        page.set_default_timeout(WAIT_MS)
        page.goto(f"{server.url}/?runs={run}")
        row = f"#run-table tr[data-run='{run}']"
        page.wait_for_selector(f"{row} .status-running")
        page.wait_for_function("() => document.querySelector('#connection').textContent === 'live'")

        server.stop()
        page.wait_for_function("() => document.querySelector('#connection').textContent !== 'live'", timeout=5000)
        assert page.locator(f"{row} .col-speed").inner_text() == "–"  # no speed while it cannot be known

        server.start()
        restarted = time.monotonic()
        page.wait_for_selector(f"{row} .status-interrupted", timeout=8000)
        page.wait_for_selector(f"{row} button[data-action=resume]:not([disabled])", timeout=3000)
        assert time.monotonic() - restarted < 8
        assert page.locator("#connection").inner_text() != "live"  # nothing of this run streams now
        page.close()
