"""The lecture notebook's mode through the server: the preset's run serves the notebook's step-1000
statistics (what the dashboard draws) and, as GET samples documents, its 20 names; the page says which
mode a run is in, and its What if… form changes the mode of a paired run."""

import httpx
import pytest
from fastapi.testclient import TestClient

from bnscope.config import Settings
from bnscope.api.main import create_app
from tests.train.test_lecture_parity import NAMES, NOTEBOOK, PRINTED_NAMES, PRINTED_TANH, PRINTED_WEIGHTS, SAMPLE_SEED
from tests.servers import SMALL, wait_for
from tests.browser import guarded_page


@pytest.mark.skipif(not NAMES.exists(), reason=f"the lecture's names file is not at {NAMES}")
@pytest.mark.slow
def test_the_notebook_presets_run_serves_the_notebooks_statistics_and_names(tmp_path):
    settings = Settings(data_dir=tmp_path / "data", autostart=False, names=NAMES)
    with TestClient(create_app(settings)) as client:
        run = client.post("/api/runs", json=NOTEBOOK["body"]).json()
        wait_for(lambda: client.get(f"/api/runs/{run['id']}").json()["status"] == "finished", timeout=180)

        stats = client.get(f"/api/runs/{run['id']}/stats", params={"step": 1000}).json()
        assert stats["step"] == 1000
        for layer, (std, saturation, grad_std) in zip(stats["activations"], PRINTED_TANH, strict=True):
            assert (f"{layer['std']:.2f}", f"{layer['saturation']:.2f}") == (std, saturation)
            assert layer["grad_std"] == pytest.approx(grad_std, rel=1e-4)
        for weight, printed in zip(stats["weights"], PRINTED_WEIGHTS, strict=True):
            assert (weight["grad_std"], weight["grad_to_data"]) == pytest.approx(printed, rel=1e-4)

        params = {"n": 20, "seed": SAMPLE_SEED, "one_at_a_time": True}  # as the route's documentation says
        samples = client.get(f"/api/runs/{run['id']}/samples", params=params).json()["samples"]
        assert [s["name"] for s in samples] == PRINTED_NAMES


def test_the_page_shows_a_runs_mode_and_pairs_a_run_in_another(chromium, server):
    body = {"config": {**SMALL, "batch_order": "lecture", "bn_variance": "unbiased"}}
    base = httpx.post(f"{server.url}/api/runs", json=body).json()["id"]
    plain = httpx.post(f"{server.url}/api/runs", json={"config": SMALL}).json()["id"]
    with guarded_page(chromium, height=1200) as page:
        page.goto(f"{server.url}/?runs={base}")
        mode = "notebook mode: the lecture's batch order, BatchNorm with x.var()"
        page.wait_for_selector(f"#run-table tr[data-run='{base}'] td.col-name >> text={mode}")
        assert "notebook mode" not in page.locator(f"#run-table tr[data-run='{plain}'] td.col-name").inner_text()

        # the What if… form follows the shown run, and one change starts a paired run with it
        form = page.locator("#settings")
        page.wait_for_function("() => document.querySelector('#settings [name=batch_order]').value === 'lecture'")
        assert form.locator("select[name=bn_variance]").input_value() == "unbiased"
        form.locator("select[name=batch_order]").select_option("own")
        assert "batch_order=own" in page.locator("#settings-diff").inner_text()
        page.locator("#btn-apply").click()
        (paired,) = wait_for(lambda: [r for r in httpx.get(f"{server.url}/api/runs").json() if r["id"] > plain])
        mode = (paired["config"]["batch_order"], paired["config"]["bn_variance"], paired["config"]["n_hidden"])
        assert mode == ("own", "unbiased", SMALL["n_hidden"])
