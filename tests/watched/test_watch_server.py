"""bnscope.watch with a real `bnscope serve` process: a run recorded without a server and served
later, a run streamed live, and the server frozen, stopped, restarted or gone while the user's loop
trains on."""

import signal
import threading
import time

import httpx
import pytest
import torch
import torch.nn.functional as F

import bnscope
from bnscope.watched.sender import QUEUE_EVENTS
from tests.watched.test_watch import ACTIVATIONS, NORMS, WEIGHTS, Net, batch
from tests.servers import LiveServer, live_server, wait_for

pytestmark = pytest.mark.slow  # a real `bnscope serve` training runs

TOKEN = "watch-test-token-0123456789"
QUIET = {"BNSCOPE_AUTOSTART": "false"}
LAYERS = {"activations": list(ACTIVATIONS), "weights": WEIGHTS, "norms": list(NORMS)}


def api(server, path: str, **params):
    response = httpx.get(server.url + path, params=params, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def make():
    torch.manual_seed(0)
    model = Net()
    return model, torch.optim.SGD(model.parameters(), lr=0.05), torch.Generator().manual_seed(5)


def train(run, model, optimizer, g, steps: int, metric: str = "loss") -> float:
    """The user's loop, logging the loss as `metric`; its wall time."""
    t0 = time.monotonic()
    for _ in range(steps):
        x, y = batch(g)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        run.log(**{metric: loss.item()})
    return time.monotonic() - t0


def test_a_run_recorded_without_a_server_is_served_later_by_its_layers_names(tmp_path):
    model, optimizer, g = make()
    with bnscope.watch(model, optimizer, every=5, data_dir=tmp_path / "data", name="offline") as run:
        train(run, model, optimizer, g, 20)

    with live_server(tmp_path / "data", env=QUIET) as server:
        (listed,) = httpx.get(server.url + "/api/runs").json()
        assert (listed["name"], listed["source"], listed["status"], listed["step"]) == (
            "offline",
            "watched",
            "finished",
            20,
        )
        assert listed["layers"] == LAYERS
        assert (listed["watched"]["model"], listed["watched"]["optimizer"], listed["watched"]["every"]) == (
            "Net",
            "SGD",
            5,
        )
        history = httpx.get(f"{server.url}/api/runs/{listed['id']}/history").json()
        assert history["stats_steps"] == [0, 5, 10, 15]
        assert history["series"]["loss"]["steps"] == list(range(20))
        for name in (
            "saturation/relu",
            "dead/shared.1",
            "grad_std/block.act",
            "grad_to_data/inp",
            "update_to_data/shared.0",
            "running_mean/bn",
            "norm_gain/block.norm",
        ):
            assert history["series"][name]["steps"] == [0, 5, 10, 15], name
        assert [a["name"] for a in history["latest_stats"]["activations"]] == list(ACTIVATIONS)
        heatmap = httpx.get(f"{server.url}/api/runs/{listed['id']}/histograms", params={"kind": "weight_grads"}).json()
        assert list(heatmap["layers"]) == WEIGHTS


def test_a_streamed_run_trains_on_through_a_frozen_a_stopped_and_a_restarted_server(tmp_path, monkeypatch):
    server = LiveServer(tmp_path / "data", "--token", TOKEN, env=QUIET).start()
    try:
        monkeypatch.setenv("BNSCOPE_TOKEN", "not-the-servers-token-at-all")
        stranger = bnscope.watch(Net(), every=1, server=server.url, name="stranger")
        stranger.log(loss=1.0)
        with pytest.warns(UserWarning, match="3 of the run's events were not recorded"):
            refused = stranger.close(timeout=5)
        assert refused["sent"] == 0 and list(refused["dropped_why"]) == ["the server refused the run"]

        monkeypatch.setenv("BNSCOPE_TOKEN", TOKEN)
        model, optimizer, g = make()
        run = bnscope.watch(model, optimizer, every=5, server=server.url, name="live")
        train(run, model, optimizer, g, 20)
        # it is listed with its layers' names while it trains, and its statistics arrive
        assert run.flush(timeout=30)  # all it reported so far is on the server now
        (listed,) = api(server, "/api/runs")  # (the stranger's run was never made)
        assert (listed["name"], listed["source"], listed["status"], listed["step"]) == (
            "live",
            "watched",
            "running",
            20,
        )
        assert listed["layers"] == LAYERS
        run_id = listed["id"]
        # a training run's history is what the store holds (the writer is about a second behind)
        wait_for(lambda: api(server, f"/api/runs/{run_id}/history")["stats_steps"] == [0, 5, 10, 15])
        stats = api(server, f"/api/runs/{run_id}/stats", step=10)
        assert stats["step"] == 10 and {a["name"]: a["kind"] for a in stats["activations"]} == ACTIVATIONS

        # frozen (SIGSTOP: it takes connections and never answers): the loop does not wait for it.
        # Were it to wait, it would wait until the watchdog thaws the server 30 s later.
        server.process.send_signal(signal.SIGSTOP)
        watchdog = threading.Timer(30, server.process.send_signal, (signal.SIGCONT,))
        watchdog.start()
        frozen_s = train(run, model, optimizer, g, 100)
        server.process.send_signal(signal.SIGCONT)
        watchdog.cancel()
        assert frozen_s < 15

        # stopped: the loop goes on, the events wait; restarted (same port, same data): they arrive
        server.stop()
        assert train(run, model, optimizer, g, 30) < 15
        server.start()
        train(run, model, optimizer, g, 10)
        summary = run.close(timeout=30)
        assert summary["dropped"] == 0 and run.steps == 160

        final = api(server, f"/api/runs/{run_id}")
        assert (final["status"], final["step"]) == ("finished", 160)
        history = api(server, f"/api/runs/{run_id}/history")
        assert history["stats_steps"] == list(range(0, 160, 5))
        assert history["series"]["loss"]["steps"] == list(range(160))
        statuses = [(e["status"], e["message"]) for e in history["timeline"] if e["type"] == "status"]
        assert ("running", "reconnected") in statuses and statuses[-1][0] == "finished"
    finally:
        server.stop()


def test_a_server_gone_for_good_costs_the_loop_nothing_and_close_reports_every_dropped_event(tmp_path):
    model, optimizer, g = make()
    with live_server(tmp_path / "data", env=QUIET) as server:
        run = bnscope.watch(model, optimizer, every=5, server=server.url)
        # logged as another metric than `loss` (whose values go out together): one event a step
        train(run, model, optimizer, g, 20, metric="seen")
        before = 1 + 20 + 4 * 2  # model, a metrics event a step, stats and update:data at 0, 5, 10, 15
        # the server numbers its own `running` status first: all is there at last_event_id 1 + before
        wait_for(lambda: [r for r in httpx.get(server.url + "/api/runs").json() if r["last_event_id"] == 1 + before])
        time.sleep(0.3)  # the answer to the last ingest is on its way back
    train(run, model, optimizer, g, 30, metric="seen")  # 30 metrics, stats and update:data at 20, 25, ..., 45
    t0 = time.monotonic()
    for i in range(QUEUE_EVENTS + 5000):  # more than the queue holds
        run.log(i=i)
    assert time.monotonic() - t0 < 10
    after = 30 + 6 * 2 + QUEUE_EVENTS + 5000 + 1  # ... and the `finished` status
    with pytest.warns(UserWarning, match=f"{after} of the run's events were not recorded"):
        summary = run.close(timeout=1)
    assert (summary["sent"], summary["dropped"]) == (before, after)
    assert set(summary["dropped_why"]) == {
        "the queue was full (the server slow or away)",
        "the server was away when the run closed",
    }


def test_events_the_server_finds_invalid_are_dropped_and_counted_and_the_rest_arrive(tmp_path):
    model, optimizer, g = make()
    with live_server(tmp_path / "data", env=QUIET) as server:
        run = bnscope.watch(model, optimizer, every=10**6, server=server.url)
        assert run.flush(timeout=30)  # the model event on its own: a refused request drops all it held
        run.log(**{"x" * 1000: 1.0})  # a metric name over the schema's bound: a 422 for that request
        assert run.flush(timeout=30)
        train(run, model, optimizer, g, 5)
        with pytest.warns(UserWarning, match="1 of the run's events were not recorded"):
            summary = run.close(timeout=30)
        assert summary["dropped_why"] == {"the server found them invalid": 1}
        (listed,) = api(server, "/api/runs")
        assert listed["status"] == "finished"
        assert api(server, f"/api/runs/{listed['id']}/history")["series"]["loss"]["steps"] == list(range(5))
