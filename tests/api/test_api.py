"""The REST API through the real app (TestClient, real SQLite, real worker processes)."""

import csv
import os
import io
import sqlite3

import pytest
import torch

from tests.servers import SMALL, wait_for

LONG = {**SMALL, "steps": 10_000_000}  # trains until stopped


def create(client, **body):
    response = client.post("/api/runs", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def wait_status(client, run_id, *statuses, timeout=90):
    def reached():
        run = client.get(f"/api/runs/{run_id}").json()
        return run if run["status"] in statuses else None

    return wait_for(reached, timeout=timeout)


def test_health(client):
    assert client.get("/healthz").json() == {"status": "ok", "runs": 0, "training": 0, "queued": 0, "streams": 0}


def test_a_run_trains_in_a_worker_process_to_the_end_and_its_history_is_kept(client):
    run = create(client, config=SMALL)
    assert (
        run["status"] in ("queued", "created", "running") and run["config"]["gain"] == 5 / 3
    )  # overrides on the defaults
    finished = wait_status(client, run["id"], "finished")
    assert finished["step"] == SMALL["steps"]
    assert finished["worker"]["backend"] == "process" and finished["worker"]["pid"] not in (os.getpid(), None)
    assert finished["layers"] == {
        "activations": ["tanh1", "tanh2"],
        "weights": ["C", "linear1", "linear2", "linear3"],
        "norms": ["batchnorm1", "batchnorm2", "batchnorm3"],
    }
    history = client.get(f"/api/runs/{run['id']}/history").json()
    assert history["bucket"] == 1 and history["start"] == 0 and history["end"] == SMALL["steps"]
    loss = history["series"]["loss"]
    assert loss["steps"] == list(range(SMALL["steps"]))  # few points: nothing averaged
    assert 2.0 < loss["values"][-1] < 3.4 and abs(loss["values"][0] - 3.3) < 0.15
    assert history["stats_steps"] == list(range(0, SMALL["steps"], SMALL["stats_every"]))
    assert {a["name"] for a in history["latest_stats"]["activations"]} == {"tanh1", "tanh2"}
    finals = {e["split"]: e["loss"] for e in history["timeline"] if e["type"] == "eval" and e.get("final")}
    assert set(finals) == {"train", "dev", "test"}
    assert [e["status"] for e in history["timeline"] if e["type"] == "status"] == [
        "queued",
        "created",
        "running",
        "finished",
    ]


def test_a_worker_trains_below_the_servers_priority_so_the_server_answers_at_once(client):
    from bnscope.train.worker import WORKER_NICENESS

    run = create(client, config=LONG)
    running = wait_status(client, run["id"], "running")
    server_niceness = os.getpriority(os.PRIO_PROCESS, 0)
    assert os.getpriority(os.PRIO_PROCESS, running["worker"]["pid"]) == min(server_niceness + WORKER_NICENESS, 19)
    client.post(f"/api/runs/{run['id']}/stop")


def test_history_over_a_range_averages_buckets_that_start_on_multiples_of_the_bucket(client):
    run = create(client, config=SMALL)
    wait_status(client, run["id"], "finished")
    url = f"/api/runs/{run['id']}/history"
    raw = client.get(url, params={"max_points": 10_000}).json()["series"]["loss"]["values"]
    part = client.get(url, params={"start": 100, "end": 300, "max_points": 20}).json()
    assert part["bucket"] == 16 and part["start"] == 96 and part["end"] == 300
    steps, values = part["series"]["loss"]["steps"], part["series"]["loss"]["values"]
    assert steps == list(range(96, 300, 16))
    assert values[1] == pytest.approx(sum(raw[112:128]) / 16)
    assert values[-1] == pytest.approx(sum(raw[288:300]) / 12)  # the last bucket: what there is of it
    empty = client.get(url, params={"start": 300, "end": 100}).json()
    assert empty["series"]["loss"] == {"steps": [], "values": []} or empty["end"] == 301


def test_stats_at_a_step_returns_the_nearest_recorded_one_before_it(client):
    run = create(client, config=SMALL)
    wait_status(client, run["id"], "finished")
    stats = client.get(f"/api/runs/{run['id']}/stats", params={"step": 149}).json()
    assert stats["step"] == 100
    assert sum(stats["activations"][0]["hist"]) == 32 * SMALL["n_hidden"]  # every activation of the batch counted


def test_histograms_over_time_and_the_export(client):
    run = create(client, config=SMALL)
    wait_status(client, run["id"], "finished")
    heat = client.get(f"/api/runs/{run['id']}/histograms", params={"kind": "activations", "max_steps": 4}).json()
    assert heat["steps"] == [0, 100, 250, 350] and set(heat["layers"]) == {"tanh1", "tanh2"}
    assert all(sum(column) == 32 * SMALL["n_hidden"] for column in heat["layers"]["tanh1"]["counts"])
    export = client.get(f"/api/runs/{run['id']}/export", params={"format": "csv"})
    assert export.status_code == 200 and "attachment" in export.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(export.text)))
    assert rows[0][0] == "step" and "loss" in rows[0] and "saturation/tanh1" in rows[0]
    assert [int(r[0]) for r in rows[1:]] == list(range(SMALL["steps"]))
    whole = client.get(f"/api/runs/{run['id']}/export", params={"format": "json"}).json()
    assert whole["run"]["id"] == run["id"] and len(whole["series"]["loss"]["values"]) == SMALL["steps"]


@pytest.mark.slow
def test_a_paired_run_copies_its_partner_but_the_changed_setting(client):
    first = create(client, config={**SMALL, "seed": 7})
    pair = create(client, paired_with=first["id"], config={"batchnorm": False})
    assert pair["paired_with"] == first["id"]
    assert pair["config"] == {**first["config"], "batchnorm": False}
    assert pair["differs"] == {"batchnorm": False}
    for run in (first, pair):
        wait_status(client, run["id"], "finished")
    a = client.get(f"/api/runs/{first['id']}/history").json()["series"]
    b = client.get(f"/api/runs/{pair['id']}/history").json()["series"]
    assert a["loss"]["steps"] == b["loss"]["steps"]  # compared at matched steps
    assert "running_mean/batchnorm1" in a and "running_mean/batchnorm1" not in b


@pytest.mark.slow
def test_a_sweep_queues_paired_runs_over_one_settings_values(client, settings):
    response = client.post("/api/sweeps", json={"config": {**SMALL, "steps": 200}, "vary": {"gain": [0.5, 1.0, 3.0]}})
    assert response.status_code == 201, response.text
    sweep = response.json()
    runs = [client.get(f"/api/runs/{i}").json() for i in sweep["runs"]]
    assert [r["config"]["gain"] for r in runs] == [0.5, 1.0, 3.0]
    assert all(r["sweep_id"] == sweep["id"] for r in runs)
    assert [r["paired_with"] for r in runs] == [None, runs[0]["id"], runs[0]["id"]]
    assert {r["config"]["seed"] for r in runs} == {SMALL.get("seed", 2147483647)}
    for run in runs:
        wait_status(client, run["id"], "finished")
    (listed,) = client.get("/api/sweeps").json()
    assert listed["setting"] == "gain" and listed["values"] == [0.5, 1.0, 3.0] and listed["runs"] == sweep["runs"]
    bad = [
        ({"vary": {"gain": [1.0]}}, "vary"),
        ({"vary": {"gain": [1.0, -1.0]}}, "gain"),
        ({"vary": {"colour": [1, 2]}}, "colour"),
        ({"vary": {"gain": [1, 2], "seed": [1, 2], "lr": [0.1, 0.2], "n_embd": [2, 4]}}, "vary"),
        (
            {"vary": {"gain": [1, 2, 3, 4], "seed": list(range(16)), "lr": [0.01 * i for i in range(1, 6)]}},
            "at most 256",
        ),
        ({"vary": {"n_hidden": [900, 901], "seed": list(range(16))}}, "parameters in all"),
        ({"vary": {"gain": [1, 1.0]}}, "repeat"),
    ]
    for body, field in bad:
        response = client.post("/api/sweeps", json=body)
        assert response.status_code == 422 and field in response.text, (body, response.text)
    assert len(client.get("/api/runs").json()) == 3  # nothing was made by any of them


@pytest.mark.slow
def test_runs_beyond_the_slots_wait_queued_and_start_in_order(tmp_path):
    from fastapi.testclient import TestClient

    from bnscope.config import Settings
    from bnscope.api.main import create_app

    with TestClient(create_app(Settings(data_dir=tmp_path, autostart=False, max_runs=1))) as client:
        training = create(client, config=LONG)
        waiting = [create(client, config=LONG)["id"] for _ in range(3)]
        wait_status(client, training["id"], "running")
        assert [client.get(f"/api/runs/{i}").json()["queue_position"] for i in waiting] == [1, 2, 3]
        assert client.get("/healthz").json()["queued"] == 3
        assert client.post(f"/api/runs/{waiting[1]}/stop").json()["status"] == "stopped"  # it leaves the queue
        queued = [waiting[0], *waiting[2:]]
        assert [client.get(f"/api/runs/{i}").json()["queue_position"] for i in queued] == [1, 2]

        def started() -> list[int]:
            return [i for i in queued if client.get(f"/api/runs/{i}").json()["status"] != "queued"]

        order, running = [], training["id"]
        while len(order) < len(queued):
            client.post(f"/api/runs/{running}/stop")  # a slot frees: the oldest queued run takes it, alone
            now = wait_for(lambda: len(started()) > len(order) and started())
            assert len(now) == len(order) + 1, f"one slot, yet {now} left the queue"
            running = next(i for i in now if i not in order)
            order.append(running)
            assert order == queued[: len(order)], f"queued runs {queued} started in the order {order}"
        client.post(f"/api/runs/{running}/stop")


def test_a_full_queue_is_a_429_with_retry_after(tmp_path):
    from fastapi.testclient import TestClient

    from bnscope.config import Settings
    from bnscope.api.main import create_app

    with TestClient(create_app(Settings(data_dir=tmp_path, autostart=False, max_runs=1, max_queued=1))) as client:
        create(client, config=LONG)
        create(client, config=LONG)
        response = client.post("/api/runs", json={"config": SMALL})
        assert response.status_code == 429 and int(response.headers["retry-after"]) > 0
        assert "max_queued" in response.json()["detail"]


def test_pause_resume_stop_rename_and_live_learning_rate(client):
    run = create(client, config=LONG)
    wait_status(client, run["id"], "running")
    patched = client.patch(f"/api/runs/{run['id']}", json={"lr": 0.05, "name": "slower"})
    assert patched.status_code == 200 and patched.json()["lr"] == 0.05 and patched.json()["name"] == "slower"
    assert client.post(f"/api/runs/{run['id']}/pause").json()["status"] == "paused"  # the answer is current
    paused = wait_status(client, run["id"], "paused")
    assert wait_status(client, run["id"], "paused")["step"] == paused["step"]  # no steps while paused
    assert client.post(f"/api/runs/{run['id']}/pause").status_code == 409
    assert client.post(f"/api/runs/{run['id']}/resume").json()["status"] == "running"
    assert client.post(f"/api/runs/{run['id']}/stop").json()["status"] == "stopped"
    timeline = client.get(f"/api/runs/{run['id']}/history").json()["timeline"]
    assert [e["action"] for e in timeline if e["type"] == "control"] == ["lr", "pause", "resume", "stop"]
    assert client.post(f"/api/runs/{run['id']}/resume").status_code == 409  # a stopped run stays stopped
    assert client.patch(f"/api/runs/{run['id']}", json={}).status_code == 422


def test_samples_are_marked_novel_or_seen_and_reproducible(client):
    run = create(client, config=SMALL)
    wait_status(client, run["id"], "finished")
    url = f"/api/runs/{run['id']}/samples"
    first = client.get(url, params={"n": 20, "seed": 3, "prefix": "ma"}).json()
    assert len(first["samples"]) == 20 and first["step"] == SMALL["steps"]
    assert all(s["name"].startswith("ma") for s in first["samples"])
    assert client.get(url, params={"n": 20, "seed": 3, "prefix": "ma"}).json() == first
    error = client.get(url, params={"prefix": "Ma1"})
    assert error.status_code == 422 and "'1'" in error.text and "'M'" in error.text


def test_live_samples_come_from_the_training_worker(client):
    run = create(client, config=LONG)
    wait_status(client, run["id"], "running")
    wait_for(lambda: client.get(f"/api/runs/{run['id']}").json()["step"] > 200)
    answer = client.get(f"/api/runs/{run['id']}/samples", params={"n": 5, "seed": 1}).json()
    assert len(answer["samples"]) == 5 and answer["step"] > 200
    client.post(f"/api/runs/{run['id']}/stop")


def test_a_run_whose_weights_are_not_finite_has_no_samples_but_a_409_with_its_step(tmp_path):
    """A run that diverged keeps its last weights, NaN and all: sampling them is refused, clearly."""
    from fastapi.testclient import TestClient

    from bnscope.config import Settings
    from bnscope.api.main import create_app

    settings = Settings(data_dir=tmp_path, autostart=False)
    with TestClient(create_app(settings)) as client:
        run = create(client, config=SMALL)
        wait_status(client, run["id"], "finished")
    db = sqlite3.connect(tmp_path / "bnscope.sqlite3")
    step, state = db.execute("SELECT step, state FROM checkpoints WHERE run_id=?", (run["id"],)).fetchone()
    saved = torch.load(io.BytesIO(state), weights_only=True)
    saved["model"]["layers.0.weight"][0, 0] = float("nan")  # what a non-finite step leaves behind
    buffer = io.BytesIO()
    torch.save(saved, buffer)
    db.execute("UPDATE checkpoints SET state=? WHERE run_id=?", (buffer.getvalue(), run["id"]))
    db.commit()
    with TestClient(create_app(settings)) as client:
        response = client.get(f"/api/runs/{run['id']}/samples")
        assert response.status_code == 409 and f"step {step:,}" in response.json()["detail"]
        assert "not finite" in response.json()["detail"]


def test_delete_removes_the_run_and_its_rows(client, settings):
    run = create(client, config=SMALL)
    wait_status(client, run["id"], "finished")
    assert client.delete(f"/api/runs/{run['id']}").status_code == 204
    assert client.get(f"/api/runs/{run['id']}").status_code == 404
    assert client.get(f"/api/runs/{run['id']}/history").status_code == 404
    db = sqlite3.connect(settings.data_dir / "bnscope.sqlite3")
    for table in ("runs", "series", "rollups", "stats", "timeline", "checkpoints"):
        column = "id" if table == "runs" else "run_id"
        assert db.execute(f"SELECT COUNT(*) FROM {table} WHERE {column}=?", (run["id"],)).fetchone()[0] == 0


def test_a_watched_run_takes_its_events_and_is_drawn_like_any_other(client):
    response = client.post("/api/watched", json={"name": "my cnn", "description": {"model": "CNN", "every": 10}})
    assert response.status_code == 201
    run = response.json()
    assert run["source"] == "watched" and run["config"] is None and run["watched"] == {"model": "CNN", "every": 10}
    layers = {
        "activations": [{"name": "features.1", "kind": "relu"}],
        "weights": [{"name": "features.0", "kind": "conv"}],
        "norms": [],
    }
    act = {
        "name": "features.1",
        "kind": "relu",
        "units": 8,
        "mean": 0.3,
        "std": 0.5,
        "saturation": 40.0,
        "dead": 1,
        "hist": [1] * 50,
        "range": [0.0, 2.0],
        "grad_mean": None,
        "grad_std": None,
        "grad_hist": [0] * 50,
        "grad_range": [-1.0, 1.0],
    }
    events = [
        {"type": "model", "step": 0, **layers},
        {"type": "metrics", "step": 0, "values": {"loss": 2.5, "acc": 0.1}},
        {"type": "stats", "step": 0, "activations": [act], "weights": [], "norms": []},
        {"type": "metrics", "step": 1, "values": {"loss": 2.0}},
    ]
    answer = client.post(f"/api/runs/{run['id']}/ingest", json={"events": events})
    assert answer.status_code == 200 and answer.json()["accepted"] == 4
    described = client.get(f"/api/runs/{run['id']}").json()
    assert (
        described["layers"]["activations"] == ["features.1"]
        and described["status"] == "running"
        and described["step"] == 2
    )

    def stored():  # a training run's history is what the store holds: the writer is about a second behind
        history = client.get(f"/api/runs/{run['id']}/history").json()
        return history if history["run"]["step"] == 2 else None

    history = wait_for(stored)
    assert history["series"]["loss"] == {"steps": [0, 1], "values": [2.5, 2.0]}
    assert history["series"]["metric/acc"]["values"] == [0.1] and history["series"]["saturation/features.1"][
        "values"
    ] == [40.0]
    # bad input: a 422 naming the field, and nothing of it kept
    for bad, field in (
        ({"type": "stats", "step": -1, "activations": [], "weights": [], "norms": []}, "step"),
        ({"type": "checkpoint", "step": 1, "state": "x"}, "type"),
        ({"type": "status", "step": 1, "status": "queued", "message": ""}, "status"),
    ):
        response = client.post(f"/api/runs/{run['id']}/ingest", json={"events": [bad]})
        assert response.status_code == 422 and field in response.text, response.text
    assert client.get(f"/api/runs/{run['id']}/samples").status_code == 409  # its network is not here
    done = client.post(
        f"/api/runs/{run['id']}/ingest",
        json={"events": [{"type": "status", "step": 2, "status": "finished", "message": ""}]},
    )
    assert done.status_code == 200 and client.get(f"/api/runs/{run['id']}").json()["status"] == "finished"
    assert client.post(f"/api/runs/{run['id']}/ingest", json={"events": events}).status_code == 409


def test_bad_input_gets_a_4xx_naming_the_field(client):
    cases = [
        ({"config": {"gain": 0}}, "gain"),
        ({"config": {"n_hidden": 5000}}, "n_hidden"),
        ({"config": {"n_layers": 0}}, "n_layers"),
        ({"config": {"batch_size": 1}}, "batch_size"),
        ({"config": {"colour": "red"}}, "colour"),
        ({"config": {"lr": "fast"}}, "lr"),
        ({"config": {"batchnorm": 0}}, "batchnorm"),  # strict: 0 is not false
        ({"paired_with": 0}, "paired_with"),
    ]
    for body, field in cases:
        response = client.post("/api/runs", json=body)
        assert response.status_code == 422, (body, response.text)
        assert field in response.text
    assert client.post("/api/runs", json={"paired_with": 999}).status_code == 404
    assert client.get("/api/runs/999").status_code == 404
    assert client.get("/api/runs/abc").status_code == 422
    assert client.get("/api/runs").json() == []  # nothing was created by any of it


def test_every_limit_is_a_clear_422(client):
    too_big = [
        ("n_hidden", 4097),
        ("n_layers", 17),
        ("n_embd", 257),
        ("block_size", 17),
        ("batch_size", 4097),
        ("steps", 10_000_001),
        ("lr", 101),
        ("gain", 21),
    ]
    for field, value in too_big:
        response = client.post("/api/runs", json={"config": {field: value}})
        assert response.status_code == 422 and field in response.text, (field, response.text)
    response = client.post("/api/runs", json={"config": {"n_hidden": 4096, "n_layers": 16}})
    assert response.status_code == 422 and "parameters" in response.text  # each fits, together too large
    assert client.post("/api/runs", json={"name": "x" * 101}).status_code == 422
    assert client.patch("/api/runs/1", json={"lr": 0}).status_code == 422
    for params in ({"n": 1001}, {"n": 0}, {"max_len": 51}, {"temperature": 0}, {"prefix": "a" * 21}):
        response = client.get("/api/runs/1/samples", params=params)
        assert response.status_code == 422 and next(iter(params)) in response.text, params
    assert client.get("/api/runs").json() == []


def test_a_prefix_as_long_as_max_len_is_the_whole_name(client):
    run = create(client, config=SMALL)
    wait_status(client, run["id"], "finished")
    response = client.get(f"/api/runs/{run['id']}/samples", params={"prefix": "abcd", "max_len": 3, "n": 4})
    assert response.status_code == 200 and [s["name"] for s in response.json()["samples"]] == ["abcd"] * 4


def test_a_full_database_fails_the_run_and_the_server_keeps_serving(tmp_path):
    from fastapi.testclient import TestClient

    from bnscope.config import Settings
    from bnscope.api.main import create_app

    settings = Settings(data_dir=tmp_path, autostart=False, max_db_mb=1)
    with TestClient(create_app(settings)) as client:
        run = create(client, config={**SMALL, "steps": 1_000_000, "stats_every": 1})  # fills it fast
        failed = wait_status(client, run["id"], "failed", timeout=120)
        assert "database or disk is full" in failed["message"]
        assert client.get("/healthz").status_code == 200
        assert client.get(f"/api/runs/{run['id']}/history").status_code == 200  # what was saved is still served
        assert client.get(f"/api/runs/{run['id']}/samples").status_code == 200


def test_every_stats_event_carries_its_health_badges_judged_by_the_servers_rules(client):
    from bnscope.health import verdict

    run = create(client, config={**SMALL, "gain": 5.0, "batchnorm": False, "n_layers": 4})
    wait_status(client, run["id"], "finished")
    stats = client.get(f"/api/runs/{run['id']}/stats", params={"step": 0}).json()
    badges = {(b["rule"], b["label"]): b for b in stats["health"]}
    for layer in stats["activations"]:
        badge = badges[("saturation", layer["name"])]
        assert badge["value"] == layer["saturation"] and badge["level"] == verdict("saturation", layer["saturation"])
    assert {b["level"] for b in stats["health"] if b["rule"] == "saturation"} & {
        "amber",
        "red",
    }  # gain 5, no BN: saturated
    rules = {r["id"] for r in client.get("/api/health/rules").json()["rules"] if "tanh" in r["kinds"]}
    # every rule for a tanh network, update:data too: step 0's ratios come before its stats
    assert {b["rule"] for b in stats["health"]} == rules


def test_a_query_parameter_given_twice_is_a_422_naming_it_unless_it_is_a_list(client):
    run = create(client, config={**SMALL, "steps": 50})
    wait_status(client, run["id"], "finished")
    # read as its last value, a second start would hide a first one out of bounds
    twice = client.get(f"/api/runs/{run['id']}/history", params=[("start", 10**17), ("start", 0)])
    assert twice.status_code == 422 and twice.json()["detail"][0]["loc"] == ["query", "start"]
    listed = client.get(f"/api/runs/{run['id']}/history", params=[("series", "loss"), ("series", "lr")])
    assert listed.status_code == 200 and set(listed.json()["series"]) == {"loss", "lr"}
