"""The page follows the server's rules and restates none (bnscope.api.meta): the statuses and the actions each
fits, RunConfig's bounds, the series and histogram kinds it draws. A rule changed on the server changes the
page; a page that kept its own copy fails here."""

import re
from pathlib import Path

import httpx

from bnscope.config import RunConfig
from bnscope.events import ACTIONS, Status
from bnscope.api.meta import page_meta
from tests.browser import guarded_page

REPO = Path(__file__).resolve().parents[2]
STATUS = "|".join(Status.__args__)
# two or more run statuses in a list, or tested one after another: a status set the server owns (bnscope.events)
STATUS_SET = re.compile(rf'\[\s*"({STATUS})"\s*,\s*"({STATUS})"|=== "({STATUS})"\s*\|\|')


def test_meta_is_the_servers_own_rules(server):
    meta = httpx.get(f"{server.url}/api/meta").json()
    assert meta["statuses"] == list(Status.__args__)
    assert meta["actions"] == {action: list(fits) for action, fits in ACTIONS.items()}
    assert meta["config"]["n_layers"] == {"ge": 1, "gt": None, "le": 16, "lt": None}
    assert meta["config"]["lr"] == {"ge": None, "gt": 0, "le": 100, "lt": None}
    assert set(meta["config"]) == {name for name, f in RunConfig.model_fields.items() if f.annotation in (int, float)}
    for name, bounds in meta["config"].items():  # each bound is where RunConfig starts refusing
        past = {
            "ge": bounds["ge"] is not None and bounds["ge"] - 1,
            "gt": bounds["gt"],
            "le": bounds["le"] is not None and bounds["le"] + 1,
        }
        for side, value in past.items():
            if bounds[side] is not None:
                assert _refused({name: value}), f"{name} = {value} is accepted, past its {side} {bounds[side]}"


def _refused(change: dict) -> bool:
    try:
        RunConfig(**change)
    except ValueError:
        return True
    return False


def test_the_page_reads_the_servers_rules(chromium, server):
    meta = httpx.get(f"{server.url}/api/meta").json()
    with guarded_page(chromium) as page:
        page.goto(server.url)
        assert page.evaluate("async () => (await import('/static/meta.js')).META") == meta
        inputs = page.eval_on_selector_all(
            "#settings input[type=number][name], #sweep-form input[type=number]",
            "(xs) => xs.map((x) => [x.name, x.min, x.max])",
        )
        assert {name for name, _, _ in inputs} == {"last_layer_scale", "n_layers", "n_hidden", "steps", "lr", "seed"}
        for name, low, high in inputs:
            bounds = meta["config"][name]
            assert low == ("" if bounds["ge"] is None else str(bounds["ge"])), name
            assert high == ("" if bounds["le"] is None else str(bounds["le"])), name
        gain = page.eval_on_selector("#set-gain-number", "(x) => [x.min, x.max]")
        assert gain == ["", str(meta["config"]["gain"]["le"])]  # gain > 0: no inclusive minimum
        prefix = page.eval_on_selector("#samples-form [name=prefix]", "(x) => [x.maxLength, x.pattern]")
        assert prefix == [meta["prefix_max_length"], meta["prefix_pattern"]]


def test_the_page_restates_no_status_set_series_or_histogram_kind():
    meta = page_meta()
    scripts = {path.name: path.read_text() for path in (REPO / "static").glob("*.js")}
    for name, text in scripts.items():
        assert not STATUS_SET.search(text), f"static/{name} writes a status set of its own: take it from meta.js"
    panels = scripts["panels.js"] + scripts["deadunits.js"]
    drawn = re.findall(r'simplePanel\(\w+, "(\w+)", "(\w+)"', panels)
    drawn += [("norms", prefix) for prefix in re.findall(r'\{ prefix: "(\w+)"', scripts["panels.js"])]
    assert len(drawn) >= 7
    for group, prefix in drawn:
        assert prefix in meta.series[group], f"the page draws {group} series '{prefix}/', which the server never makes"
    kinds = re.findall(r'histogramPanel\(\w+, "(\w+)"', scripts["histograms.js"])
    assert kinds and set(kinds) <= set(meta.histogram_kinds)
    html = (REPO / "templates" / "index.html").read_text()
    fixed = re.findall(r'type="number"[^>]*name="(\w+)"[^>]*\b(?:min|max)="[\d.]+"', html)
    assert not set(fixed) & set(RunConfig.model_fields), f"index.html writes RunConfig bounds itself: {fixed}"
