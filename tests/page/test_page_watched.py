"""A watched model in the page: a user's own network, reported by bnscope.watch from this process to a
real server, appears in the page by its own layer names, in the panels that draw them."""

import httpx
import torch
import torch.nn as nn

import bnscope
from bnscope import health
from tests.servers import live_server
from tests.browser import guarded_page, traces, wait_for_traces


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(8, 16), nn.LayerNorm(16), nn.GELU())
        self.gate = nn.Sigmoid()
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        return self.head(self.gate(self.encoder(x)))


def test_a_watched_models_layers_appear_in_the_page_by_their_names(chromium, tmp_path):
    with live_server(tmp_path / "data", env={"BNSCOPE_AUTOSTART": "false"}) as server:
        torch.manual_seed(0)
        model = Tiny()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        with bnscope.watch(model, optimizer, every=10, name="my tiny net", server=server.url) as run:
            for _ in range(200):
                x = torch.randn(32, 8)
                loss = nn.functional.cross_entropy(model(x), (x[:, 0] > 0).long())
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                run.log(loss=loss.item())
        (listed,) = httpx.get(f"{server.url}/api/runs").json()
        assert listed["source"] == "watched" and listed["name"] == "my tiny net"
        assert listed["layers"]["activations"] == ["encoder.2", "gate"]

        with guarded_page(chromium) as page:
            page.goto(f"{server.url}/?runs={listed['id']}")
            wait_for_traces(page, "panel-loss", "t.some((x) => x.x.length > 50)")
            wait_for_traces(
                page,
                "panel-activations",
                "t.some((x) => x.name.includes('encoder.2')) && t.some((x) => x.name.includes('gate'))",
            )
            names = {t["name"] for t in traces(page, "panel-activations")}
            assert not any("tanh" in name for name in names)  # nothing of the lecture's layer list
            assert "my tiny net" in page.locator("#run-table").inner_text()
            assert "encoder.2" in page.locator("#panel-activations").inner_text()  # its legend names it too

            # GELU's saturation has no calibrated rule: the server says so with the statistics, and the page
            # shows it as not judged, never as a badge judged by tanh's rule
            stats = httpx.get(f"{server.url}/api/runs/{listed['id']}/stats", params={"step": listed["step"]}).json()
            assert stats["not_judged"] == health.not_judged(stats)
            assert {"quantity": "saturation", "label": "encoder.2"} in stats["not_judged"]
            assert not any(b["label"] == "encoder.2" and b["rule"] == "saturation" for b in stats["health"])
            page.locator("#panel-health .badge.not-judged").first.wait_for()
            shown = page.locator("#panel-health .badge-group.not-judged").inner_text()
            assert "Not judged" in shown and "Saturation: encoder.2" in shown
