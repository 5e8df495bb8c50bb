"""What the page tests share: Debian's Chromium (one per session: the `chromium` fixture in conftest.py),
a page that refuses and records every request off the machine and every console error, and a panel's traces."""

from contextlib import contextmanager
from urllib.parse import urlparse

from playwright.sync_api import Page

WAIT_MS = 40_000  # generous: a slow 2-core CI machine trains and runs the browser at once
LOCAL_HOSTS = {"127.0.0.1", "localhost"}

# The traces of a panel's (first) chart: [{name, x, y, type}]
TRACES = """(panel) => [...(document.querySelector(`#${panel} .chart`)?.data ?? [])]
  .map((t) => ({name: t.name, type: t.type, x: Array.from(t.x ?? []), y: Array.from(t.y ?? []), visible: t.visible}))"""


@contextmanager
def guarded_page(browser, width: int = 1440, height: int = 900, **options):
    """A page whose every request off the machine is refused and recorded, and whose console errors and
    page errors are recorded; the test fails if either list is not empty at the end."""
    page = browser.new_page(viewport={"width": width, "height": height}, **options)
    problems: list[str] = []

    def route(route):
        if urlparse(route.request.url).hostname in LOCAL_HOSTS or route.request.url.startswith(("data:", "blob:")):
            return route.continue_()
        problems.append(f"request off the machine: {route.request.url}")
        return route.abort()

    page.route("**/*", route)
    page.on("console", lambda message: message.type == "error" and problems.append(f"console: {message.text}"))
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.set_default_timeout(WAIT_MS)
    try:
        yield page
    finally:
        page.close()  # before the server stops: its live streams end with the page
    assert problems == []


def traces(page: Page, panel: str) -> list[dict]:
    return page.evaluate(TRACES, panel)


def wait_for_traces(page: Page, panel: str, condition: str) -> None:
    """Wait until `condition` (a JS expression over `t`, the panel's traces) holds."""
    page.wait_for_function(f"(panel) => {{ const t = ({TRACES})(panel); return {condition}; }}", arg=panel)
