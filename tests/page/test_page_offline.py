"""Offline, truly: /docs and /redoc render from files this server serves (no CDN, nothing blocked by
the pages' own Content-Security-Policy), and no request leaves the machine."""

from tests.browser import guarded_page


def test_docs_list_the_operations_offline(chromium, server):
    with guarded_page(chromium) as page:
        page.goto(f"{server.url}/docs")
        page.wait_for_selector(".opblock")
        paths = page.locator(".opblock-summary-path").all_inner_texts()
        assert "/api/runs" in paths and "/api/runs/{run_id}/history" in paths and "/api/sweeps" in paths


def test_redoc_renders_offline(chromium, server):
    with guarded_page(chromium) as page:
        page.goto(f"{server.url}/redoc")
        page.get_by_text("/api/runs/{run_id}/history").first.wait_for()
        hrefs = page.locator("a[href]").evaluate_all("(links) => links.map((a) => a.href)")
        assert hrefs and all(href.startswith(server.url) for href in hrefs)  # no link leaves the machine
