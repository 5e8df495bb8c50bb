"""The REST API through the real app (TestClient, real SQLite, real training threads)."""

from tests.web.conftest import SMALL, wait_for


def create(client, **body):
    response = client.post("/api/runs", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def wait_status(client, run_id, *statuses, timeout=60):
    def reached():
        run = client.get(f"/api/runs/{run_id}").json()
        return run if run["status"] in statuses else None

    return wait_for(reached, timeout=timeout)


def test_health(client):
    assert client.get("/healthz").json() == {"status": "ok", "runs": 0, "training": 0}


def test_a_run_trains_to_the_end_and_its_history_is_kept(client):
    run = create(client, config=SMALL)
    assert run["config"]["n_hidden"] == 32 and run["config"]["gain"] == 5 / 3  # overrides on the defaults
    finished = wait_status(client, run["id"], "finished")
    assert finished["step"] == SMALL["steps"]
    assert [r["id"] for r in client.get("/api/runs").json()] == [run["id"]]
    history = client.get(f"/api/runs/{run['id']}/history").json()
    loss = history["series"]["loss"]
    assert loss["steps"] == list(range(SMALL["steps"]))  # few points: nothing decimated
    assert 2.0 < loss["values"][-1] < 3.4 and abs(loss["values"][0] - 3.3) < 0.15
    assert history["stats_steps"] == list(range(0, SMALL["steps"], SMALL["stats_every"]))
    assert {l["name"] for l in history["latest_stats"]["layers"]} == {"tanh1", "tanh2"}
    finals = {e["split"]: e["loss"] for e in history["timeline"] if e["type"] == "eval" and e.get("final")}
    assert set(finals) == {"train", "dev", "test"}
    assert [e["status"] for e in history["timeline"] if e["type"] == "status"] == ["running", "finished"]


def test_history_is_decimated_evenly_keeping_first_and_last(client):
    run = create(client, config=SMALL)
    wait_status(client, run["id"], "finished")
    history = client.get(f"/api/runs/{run['id']}/history", params={"max_points": 50, "max_histograms": 3}).json()
    steps = history["series"]["loss"]["steps"]
    assert len(steps) <= 50 and steps[0] == 0 and steps[-1] == SMALL["steps"] - 1
    gaps = {b - a for a, b in zip(steps[:-2], steps[1:-1])}
    assert len(gaps) == 1  # evenly spaced (the last point closes the series)
    assert history["stats_steps"][0] == 0 and history["stats_steps"][-1] == 350 and len(history["stats_steps"]) == 3


def test_stats_at_a_step_returns_the_nearest_recorded_one_before_it(client):
    run = create(client, config=SMALL)
    wait_status(client, run["id"], "finished")
    stats = client.get(f"/api/runs/{run['id']}/stats", params={"step": 149}).json()
    assert stats["step"] == 100
    assert sum(stats["layers"][0]["act_hist"]) == 32 * SMALL["n_hidden"]  # every activation of the batch counted


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


def test_pause_resume_stop_and_live_learning_rate(client):
    run = create(client, config={**SMALL, "steps": 1_000_000})
    wait_status(client, run["id"], "running")
    patched = client.patch(f"/api/runs/{run['id']}", json={"lr": 0.05})
    assert patched.status_code == 200 and patched.json()["lr"] == 0.05
    assert client.post(f"/api/runs/{run['id']}/pause").json()["status"] == "paused"  # the answer is current
    paused = wait_status(client, run["id"], "paused")
    assert wait_status(client, run["id"], "paused")["step"] == paused["step"]  # no steps while paused
    assert client.post(f"/api/runs/{run['id']}/pause").status_code == 409
    assert client.post(f"/api/runs/{run['id']}/resume").json()["status"] == "running"
    assert client.post(f"/api/runs/{run['id']}/stop").json()["status"] == "stopped"
    timeline = client.get(f"/api/runs/{run['id']}/history").json()["timeline"]
    actions = [e["action"] for e in timeline if e["type"] == "control"]
    assert actions == ["lr", "pause", "resume", "stop"]
    assert client.post(f"/api/runs/{run['id']}/resume").status_code == 409  # a stopped run stays stopped


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


def test_delete_removes_the_run_and_its_rows(client, settings):
    run = create(client, config=SMALL)
    wait_status(client, run["id"], "finished")
    assert client.delete(f"/api/runs/{run['id']}").status_code == 204
    assert client.get(f"/api/runs/{run['id']}").status_code == 404
    assert client.get(f"/api/runs/{run['id']}/history").status_code == 404
    import sqlite3

    db = sqlite3.connect(settings.data_dir / "bnscope.sqlite3")
    for table in ("runs", "series", "stats", "timeline", "checkpoints"):
        column = "id" if table == "runs" else "run_id"
        assert db.execute(f"SELECT COUNT(*) FROM {table} WHERE {column}=?", (run["id"],)).fetchone()[0] == 0


def test_too_many_runs_is_a_clear_429(client, settings):
    for _ in range(settings.max_runs):
        create(client, config={**SMALL, "steps": 1_000_000})
    response = client.post("/api/runs", json={"config": SMALL})
    assert response.status_code == 429 and "max_runs" in response.text


def test_bad_input_gets_a_4xx_naming_the_field(client):
    cases = [
        ({"config": {"gain": 0}}, "gain"),
        ({"config": {"n_hidden": 5000}}, "n_hidden"),
        ({"config": {"n_layers": 0}}, "n_layers"),
        ({"config": {"batch_size": 1}}, "batch_size"),
        ({"config": {"colour": "red"}}, "colour"),
        ({"config": {"lr": "fast"}}, "lr"),
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


def test_a_prefix_as_long_as_max_len_is_refused(client):
    run = create(client, config=SMALL)
    response = client.get(f"/api/runs/{run['id']}/samples", params={"prefix": "abc", "max_len": 3})
    assert response.status_code == 422 and "max_len" in response.text


def test_a_full_database_fails_the_run_and_the_server_keeps_serving(tmp_path):
    from fastapi.testclient import TestClient

    from bnscope.config import Settings
    from bnscope.server import create_app

    settings = Settings(data_dir=tmp_path, autostart=False, max_db_mb=1)
    with TestClient(create_app(settings)) as client:
        run = create(client, config={**SMALL, "steps": 1_000_000, "stats_every": 1})  # fills it fast
        failed = wait_status(client, run["id"], "failed", timeout=120)
        assert "database or disk is full" in failed["message"]
        assert client.get("/healthz").status_code == 200
        assert client.get(f"/api/runs/{run['id']}/history").status_code == 200  # what was saved is still served
        assert client.get(f"/api/runs/{run['id']}/samples").status_code == 200


def test_every_limit_is_a_clear_422(client):
    too_big = [
        ("n_hidden", 4097), ("n_layers", 17), ("n_embd", 257), ("block_size", 17), ("batch_size", 4097),
        ("steps", 10_000_001), ("lr", 101), ("gain", 21),
    ]  # fmt: skip
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
