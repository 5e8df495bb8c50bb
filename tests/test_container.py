"""The Dockerfile, built and run with podman (or docker): the image runs as a non-root user, refuses to
serve on 0.0.0.0 without a token, passes its HEALTHCHECK, trains the default run, and keeps its runs in
the volume when the container is replaced. It takes minutes (a build), so it is marked `container` and
skipped unless that marker is asked for:

    python -m pytest -m container tests/test_container.py

BNSCOPE_IMAGE names an image already built (no build then); BNSCOPE_BUILD_ARGS adds to the build's
command line, e.g. a base made from Debian's packages and local wheels (README, "Container").
"""

import json
import os
import re
import shlex
import shutil
import subprocess
import uuid

import httpx
import pytest

from tests.conftest import REPO
from tests.servers import free_port, wait_for

pytestmark = [pytest.mark.container, pytest.mark.slow]

ENGINE = shutil.which("podman") or shutil.which("docker")
TOKEN = "container-test-token-0123456789"
LEAN_BYTES = 1.2e9  # the CPU image: PyTorch's CPU build is ~0.6 GB of it


def engine(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([ENGINE, *args], capture_output=True, text=True, timeout=timeout, check=check)


@pytest.fixture(scope="module")
def image(request):
    if not re.search(r"(?<!not )\bcontainer\b", request.config.getoption("markexpr") or ""):
        pytest.skip("builds and runs the image (minutes): python -m pytest -m container tests/test_container.py")
    if ENGINE is None:
        pytest.skip("neither podman nor docker is installed (apt-get install podman)")
    if os.environ.get("BNSCOPE_IMAGE"):
        return os.environ["BNSCOPE_IMAGE"]
    tag = "localhost/bnscope:test"
    fmt = ["--format", "docker"] if ENGINE.endswith("podman") else []  # OCI images drop HEALTHCHECK
    extra = shlex.split(os.environ.get("BNSCOPE_BUILD_ARGS", ""))
    built = engine("build", *fmt, *extra, "-t", tag, str(REPO), timeout=1800, check=False)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    return tag


@pytest.fixture
def volume():
    name = f"bnscope-test-{uuid.uuid4().hex[:8]}"
    engine("volume", "create", name)
    yield name
    engine("volume", "rm", "-f", name, check=False)


def test_the_image_is_lean_and_runs_as_a_user_not_root(image):
    size = json.loads(engine("image", "inspect", image).stdout)[0]["Size"]
    print(f"image size: {size / 1e6:.0f} MB")
    assert size < LEAN_BYTES
    who = engine("run", "--rm", image, "sh", "-c", "id -u; id -un").stdout.split()
    assert who == ["10001", "bnscope"]


def test_it_refuses_to_serve_on_all_addresses_without_a_token(image):
    refused = engine("run", "--rm", image, check=False)
    assert refused.returncode == 2
    assert "refusing to serve on 0.0.0.0 without an access token" in refused.stderr


def test_it_is_healthy_trains_the_default_run_and_keeps_it_in_the_volume(image, volume):
    port = free_port()
    api = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)

    def start() -> str:
        return engine(
            "run", "-d", "-e", f"BNSCOPE_TOKEN={TOKEN}", "-p", f"127.0.0.1:{port}:8000", "-v", f"{volume}:/data", image
        ).stdout.strip()

    def runs() -> list[dict] | None:
        try:
            return api.get("/api/runs").json()
        except httpx.HTTPError:
            return None

    container = start()
    try:
        if ENGINE.endswith("podman"):  # podman runs the image's HEALTHCHECK on demand; docker on its own schedule
            wait_for(lambda: engine("healthcheck", "run", container, check=False).returncode == 0, timeout=90, every=1)
        else:
            wait_for(
                lambda: engine("inspect", "-f", "{{.State.Health.Status}}", container).stdout.strip() == "healthy",
                timeout=120,
                every=2,
            )
        assert api.get("/api/runs", headers={"Authorization": ""}).status_code == 401  # the token is required
        trained = wait_for(lambda: (r := runs()) and r[0]["step"] >= 2000 and r, timeout=120, every=1)
        assert [(r["id"], r["name"], r["status"]) for r in trained] == [(1, "default", "running")]
        history = api.get("/api/runs/1/history").json()
        assert len(history["series"]["loss"]["steps"]) > 100 and history["stats_steps"]

        engine("stop", "-t", "30", container)  # SIGTERM: the run checkpoints and is interrupted
        engine("rm", container)
        container = start()  # a new container, the same volume
        kept = wait_for(runs, timeout=90, every=1)
        assert [(r["id"], r["status"]) for r in kept] == [(1, "interrupted")]  # no new default run
        assert kept[0]["step"] >= trained[0]["step"]
        assert api.post("/api/runs/1/resume").json()["status"] in ("queued", "created", "running")
        wait_for(lambda: (r := runs()) and r[0]["status"] == "running" and r[0]["step"] > kept[0]["step"], timeout=60)
    finally:
        logs = engine("logs", container, check=False)
        print(logs.stdout[-2000:], logs.stderr[-2000:])
        engine("rm", "-f", container, check=False)
