"""The dashboard in a real browser: Debian's Chromium driven by Playwright, against a real `bnscope
serve`. This module holds the helpers the other browser tests (test_page_*.py) use, and the tour of
the default network: it fills live, says how healthy it is, leaves nothing to the cloud, fits 1440,
1024 and 400 px, meets AA contrast, and its legends work from the keyboard."""

from urllib.parse import urlparse

import httpx
from playwright.sync_api import Page

from tests.conftest import REPO
from tests.browser import LOCAL_HOSTS, guarded_page, wait_for_traces
from tests.servers import live_server

ARTIFACTS = REPO / "artifacts"


def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / f"{name}.png")


# WCAG AA: every visible text of the page against the background behind it (disabled controls exempt)
CONTRAST = """() => {
  const rgb = (c) => (c.match(/[\\d.]+/g) ?? []).map(Number);
  const lum = ([r, g, b]) => [r, g, b].map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; })
    .reduce((s, v, i) => s + v * [0.2126, 0.7152, 0.0722][i], 0);
  const background = (node) => {
    for (; node; node = node.parentElement) {
      const c = rgb(getComputedStyle(node).backgroundColor);
      if (c.length === 3 || c[3] > 0.9) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const failures = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode.parentElement;
    if (!walker.currentNode.textContent.trim() || !node.checkVisibility({opacityProperty: true}) || node.closest(':disabled, .js-plotly-plot')) continue;
    if (node.closest('.legend-table tr.off, [aria-pressed="false"]')) continue;  // struck out on purpose
    const style = getComputedStyle(node);
    const [a, b] = [lum(rgb(style.color)), lum(background(node))];
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < 4.5) failures.push(`${ratio.toFixed(2)}: ${walker.currentNode.textContent.trim().slice(0, 40)}`);
  }
  return [...new Set(failures)];
}"""


def test_the_default_network_live_healthy_offline_and_accessible(chromium, tmp_path):
    with live_server(tmp_path / "data") as server:  # autostarts the default network
        with guarded_page(chromium) as page:
            page.goto(server.url)
            wait_for_traces(page, "panel-loss", "t.some((x) => x.name === 'run 1 train' && x.x.length >= 5)")
            page.wait_for_selector("#run-table td.col-status .status-running")
            assert page.locator("#run-chips .chip-label").inner_text() == "#1 default"

            # health: badges from the server's rules, and each panel's line says what holds now
            page.wait_for_selector("#panel-health a.badge[href='#panel-saturation']")
            rules = {r["id"] for r in httpx.get(f"{server.url}/api/health/rules").json()["rules"]}
            assert {"saturation", "update_to_data"} <= rules
            verdict = page.locator("#panel-saturation .verdict")
            levels = page.locator("#panel-health a.badge[href='#panel-saturation']").evaluate_all(
                "(bs) => bs.map((b) => b.className)"
            )
            worst = "red" if any("red" in c for c in levels) else "amber" if any("amber" in c for c in levels) else "ok"
            assert worst in verdict.get_attribute("class")

            # nothing offers the cloud: no Chart Studio, no link out of the machine
            page.locator("#panel-loss .chart").hover()
            titles = page.locator("#panel-loss .modebar-btn").evaluate_all(
                "(bs) => bs.map((b) => b.getAttribute('data-title'))"
            )
            assert "download plot as a png" in [t.lower() for t in titles] and not any(
                "Chart Studio" in t or "cloud" in t.lower() for t in titles
            )
            hrefs = page.locator("a[href]").evaluate_all("(links) => links.map((a) => a.href)")
            assert all(urlparse(h).hostname in LOCAL_HOSTS for h in hrefs)

            # a legend row is a button: reachable and usable from the keyboard (charts draw once on screen)
            page.locator("#panel-saturation").scroll_into_view_if_needed()
            toggle = page.locator("#panel-saturation .layer-toggle").first
            toggle.focus()
            page.keyboard.press("Enter")
            page.wait_for_function(
                "() => document.querySelector('#panel-saturation .layer-toggle').getAttribute('aria-pressed') === 'false'"
            )
            wait_for_traces(page, "panel-saturation", "t.length && t[0].visible === false")
            page.keyboard.press("Enter")

            assert page.evaluate(CONTRAST) == []
            for width in (1440, 1024, 400):
                page.set_viewport_size({"width": width, "height": 900 if width > 400 else 800})
                page.wait_for_timeout(1500)
                assert page.evaluate("document.documentElement.scrollWidth") <= width, f"sideways scroll at {width} px"
                screenshot(page, f"dashboard-{width}")
            # at 1024 px a chart is on the first screen
            page.set_viewport_size({"width": 1024, "height": 768})
            page.wait_for_timeout(500)
            assert page.locator("#panel-loss .chart").bounding_box()["y"] < 768


HOSTILE = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>'


def test_a_hostile_run_name_is_shown_as_text_and_never_runs(chromium, server):
    httpx.post(
        f"{server.url}/api/runs", json={"name": HOSTILE, "config": {"n_hidden": 16, "n_layers": 1, "steps": 300}}
    )
    page = chromium.new_page()
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(server.url)
    page.wait_for_function("(name) => document.body.innerText.includes(name)", arg=HOSTILE)
    assert page.evaluate("window.pwned") is None
    assert page.locator("img[src='x']").count() == 0 and dialogs == []
    page.close()
