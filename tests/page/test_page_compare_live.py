"""Runs compared while they train, at different steps: every at-step panel (the three histogram panels,
the dead-unit images, the health badges, the legend tables) draws every shown run, each at the shown
step or its nearest recorded statistics, with the values GET /stats gives at that step; a queued run is
marked, not left blank; the step bar says where each run is."""

import time

import httpx
import pytest

from tests.servers import SMALL, live_server, wait_for
from tests.browser import guarded_page

LONG = {**SMALL, "steps": 2_000_000, "stats_every": 100, "dev_every": 50_000}
AHEAD = 10_000  # the first run is this many steps ahead when the second starts
WATCH_SECONDS = 10
HISTOGRAM_PANELS = {  # panel -> (the stats entries it draws, the histogram and range keys)
    "panel-activations": ("activations", "hist", "range"),
    "panel-act-grads": ("activations", "grad_hist", "grad_range"),
    "panel-weight-grads": ("weights", "grad_hist", "grad_range"),
}
MISSING = {"–", "not yet at this step", "no statistics yet"}

# one synchronous read of what every at-step panel shows: the steps it drew each run at, its traces and
# its legend cells (a row a layer, a column a run), and each run's health badges
SNAPSHOT = """(panels) => {
  const out = {panels: {}, health: {}, where: {}};
  for (const id of panels) {
    const section = document.getElementById(id);
    out.panels[id] = {
      steps: JSON.parse(section.querySelector('.at-step').dataset.steps || '{}'),
      traces: [...(section.querySelector('.chart').data ?? [])].map((t) => ({name: t.name, x: Array.from(t.x), y: Array.from(t.y)})),
      cells: [...section.querySelectorAll('.legend tbody tr')].map((tr) => [...tr.querySelectorAll('td.value')].map((td) => td.textContent)),
    };
  }
  const health = document.getElementById('panel-health');
  out.health.steps = JSON.parse(health.querySelector('.at-step').dataset.steps || '{}');
  out.health.rows = [...health.querySelectorAll('.health-row')].map((row) => ({
    slot: row.querySelector('.slot-chip').textContent, text: row.textContent,
    badges: [...row.querySelectorAll('a.badge')].map((b) => [b.querySelector('.badge-label').textContent, b.className.split(' ')[1]]),
  }));
  for (const node of document.querySelectorAll('#step-where .where')) out.where[node.dataset.run] = [node.dataset.drawn, node.textContent];
  return out;
}"""


def density(counts, bounds):
    lo, hi = bounds
    width = (hi - lo) / len(counts) or 1
    total = sum(counts)
    return [c / (total * width) if total else 0 for c in counts]


def start(server, body) -> int:
    return httpx.post(f"{server.url}/api/runs", json=body, timeout=30).json()["id"]


def run_of(server, run_id) -> dict:
    return httpx.get(f"{server.url}/api/runs/{run_id}", timeout=10).json()


def wait_until_drawn(page, run_ids):
    """Until every at-step panel has drawn each of these runs once (the panels draw in the frames after the
    step bar)."""
    panels = [*HISTOGRAM_PANELS, "panel-health"]
    page.wait_for_function(
        """([panels, ids]) => panels.every((panel) => {
      const steps = document.querySelector(`#${panel} .at-step`).dataset.steps;
      return steps !== undefined && ids.every((id) => id in JSON.parse(steps));
    })""",
        arg=[panels, run_ids],
    )


def check_snapshot(server, shot, drawn_ids):
    """Every run in `drawn_ids` (slot order) is drawn in every at-step panel with its own statistics at the
    step that panel says it drew it at."""
    stats_cache: dict[tuple[int, int], dict] = {}

    def stats(run_id, step):
        if (run_id, step) not in stats_cache:
            stats_cache[run_id, step] = httpx.get(f"{server.url}/api/runs/{run_id}/stats", params={"step": step}).json()
        return stats_cache[run_id, step]

    for panel, (group, hist, bounds) in HISTOGRAM_PANELS.items():
        seen = shot["panels"][panel]
        drawn_steps = {int(k): v for k, v in seen["steps"].items()}
        assert set(drawn_steps) >= set(drawn_ids), f"{panel} drew {sorted(drawn_steps)}, not every run of {drawn_ids}"
        by_name = {t["name"]: t for t in seen["traces"]}
        for slot, run_id in enumerate(drawn_ids, 1):
            mine = stats(run_id, drawn_steps[run_id])
            assert mine["step"] == drawn_steps[run_id]  # a recorded statistics step of that run
            entries = [e for e in mine[group] if e.get(hist)]
            assert entries, f"run {run_id} has no {group} at step {mine['step']}"
            for entry in entries:
                trace = by_name.get(f"run {slot} {entry['name']}")
                assert trace is not None, f"{panel}: no trace of run {slot} {entry['name']} (traces: {sorted(by_name)})"
                assert trace["y"] == pytest.approx(density(entry[hist], entry[bounds]), rel=1e-9, abs=1e-12)
        for row in seen["cells"]:
            assert len(row) >= len(drawn_ids) and not MISSING & set(row[: len(drawn_ids)]), f"{panel} table: {row}"
    health = {row["slot"]: row for row in shot["health"]["rows"]}
    health_steps = {int(k): v for k, v in shot["health"]["steps"].items()}
    for slot, run_id in enumerate(drawn_ids, 1):
        badges = sorted(health[str(slot)]["badges"])
        expected = sorted([b["label"], b["level"]] for b in stats(run_id, health_steps[run_id])["health"])
        assert badges and badges == expected, f"run {run_id}'s health row: {badges} != {expected}"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # two slots: two runs train while a third waits queued
    env = {"BNSCOPE_AUTOSTART": "false", "BNSCOPE_MAX_RUNS": "2"}
    with live_server(tmp_path_factory.mktemp("compare-live") / "data", env=env) as running:
        yield running


@pytest.mark.slow
def test_two_training_runs_far_apart_are_both_drawn_in_every_at_step_panel(chromium, server):
    # BatchNorm off trains faster: it goes first, so the gap only grows
    first = start(server, {"config": {**LONG, "batchnorm": False}})
    wait_for(lambda: run_of(server, first)["step"] >= AHEAD, timeout=120, every=0.5)
    second = start(server, {"config": {"batchnorm": True}, "paired_with": first})
    wait_for(lambda: run_of(server, second)["step"] >= 500, timeout=60, every=0.2)
    try:
        with guarded_page(chromium, height=3200) as page:
            page.goto(f"{server.url}/?runs={first},{second}")
            wait_until_drawn(page, [first, second])
            gaps, drawn_steps, deadline = [], set(), time.monotonic() + WATCH_SECONDS
            while time.monotonic() < deadline:
                shot = page.evaluate(SNAPSHOT, list(HISTOGRAM_PANELS))
                check_snapshot(server, shot, [first, second])
                ahead, behind = run_of(server, first)["step"], run_of(server, second)["step"]
                gaps.append(ahead - behind)
                drawn_steps.add(shot["panels"]["panel-activations"]["steps"][str(second)])
                for run_id in (first, second):  # the step bar says where each run is
                    assert "at step" in shot["where"][str(run_id)][1] and "running" in shot["where"][str(run_id)][1]
                page.wait_for_timeout(700)
            assert min(gaps) >= AHEAD // 2, f"the runs came too close to test this: {gaps}"
            assert len(drawn_steps) >= 3, f"the panels did not follow the training runs: {drawn_steps}"
    finally:
        for run_id in (first, second):
            httpx.post(f"{server.url}/api/runs/{run_id}/stop", timeout=30)


@pytest.mark.slow
def test_three_runs_one_queued_the_queued_one_is_marked_and_the_others_drawn(chromium, server):
    first = start(server, {"config": LONG})
    wait_for(lambda: run_of(server, first)["step"] >= AHEAD, timeout=120, every=0.5)
    second = start(server, {"config": {"gain": 3.0}, "paired_with": first})
    third = start(server, {"config": {"batchnorm": False}, "paired_with": first})  # no free slot: it waits
    wait_for(lambda: run_of(server, second)["step"] >= 500, timeout=60, every=0.2)
    try:
        assert run_of(server, third)["status"] == "queued"
        with guarded_page(chromium, height=3200) as page:
            page.goto(f"{server.url}/?runs={first},{second},{third}")
            wait_until_drawn(page, [first, second])
            deadline = time.monotonic() + WATCH_SECONDS
            while time.monotonic() < deadline:
                shot = page.evaluate(SNAPSHOT, list(HISTOGRAM_PANELS))
                check_snapshot(server, shot, [first, second])
                for panel in HISTOGRAM_PANELS:
                    assert all(row[2] in MISSING - {"–"} for row in shot["panels"][panel]["cells"])  # marked, not blank
                    assert not any(t["name"].startswith("run 3 ") for t in shot["panels"][panel]["traces"])
                where = shot["where"][str(third)][1]
                assert "queued" in where and any(mark in where for mark in MISSING - {"–"}), where
                page.wait_for_timeout(700)
    finally:
        for run_id in (first, second, third):
            httpx.post(f"{server.url}/api/runs/{run_id}/stop", timeout=30)
