"""Storage faults against a real `bnscope serve`: a damaged database, a read-only data directory
and a full disk, each explained in one line or one clear answer, with nothing lost."""

import os
import shutil
import subprocess
import sys

import httpx
import pytest

from tests.servers import SMALL, free_port, wait_for

pytestmark = pytest.mark.slow  # a real `bnscope serve` training runs

SERVE = [sys.executable, "-m", "bnscope.cli", "serve"]


def serve_once(data_dir, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*SERVE, "--port", str(free_port()), "--data-dir", str(data_dir), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "BNSCOPE_AUTOSTART": "false"},
    )


def on_a_small_disk(tmp_path, size: str, then: str) -> list[str]:
    """A shell command line that mounts a private tmpfs of `size` at tmp_path/disk and runs `then`."""
    if shutil.which("unshare") is None:
        pytest.skip("needs util-linux's unshare for a private small file system")
    disk = tmp_path / "disk"
    disk.mkdir()
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a private mount namespace here: {probe.stderr.decode().strip()}")
    return [
        "unshare",
        "--user",
        "--map-root-user",
        "--mount",
        "sh",
        "-c",
        f"mount -t tmpfs -o size={size} none {disk} && {then}",
    ]


def test_a_damaged_database_is_refused_at_start_in_one_line_naming_the_file(tmp_path):
    data = tmp_path / "data"
    from bnscope.storage.store import Store

    store = Store(data / "bnscope.sqlite3")
    run = store.create_run("a", {})
    store.write([(run, 1, {"type": "scalars", "step": 0}, "{}", [("loss", i, 1.0) for i in range(100_000)], None)], [])
    store.connect().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    path = data / "bnscope.sqlite3"
    with open(path, "r+b") as f:
        f.seek(path.stat().st_size // 2 // 4096 * 4096)
        f.write(os.urandom(4096 * 4))
    result = serve_once(data)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and "damaged" in lines[0] and "Traceback" not in result.stderr


def test_a_read_only_data_directory_is_one_clear_line_and_exit_2(tmp_path):
    disk = tmp_path / "disk"
    command = on_a_small_disk(
        tmp_path, "1m", f"mount -o remount,ro {disk} && exec {' '.join(SERVE)} --data-dir {disk} --port {free_port()}"
    )
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "not writable" in lines[0] and str(disk) in lines[0] and "Traceback" not in result.stderr


def test_on_a_full_disk_a_delete_is_a_507_and_the_run_stays_and_a_new_run_is_a_507(tmp_path):
    disk, port = tmp_path / "disk", free_port()
    fill, filled = tmp_path / "fill", tmp_path / "filled"  # outside the private disk: the test sees them
    # the server, and beside it in the same mount namespace a shell that, when told, fills the disk. It
    # fills it after a run has finished, not by a failing write: a transaction that fails part-way leaves
    # room in SQLite's log that a small delete could then reuse, so the delete would not meet a full disk
    command = on_a_small_disk(
        tmp_path,
        "3m",
        (
            f"{' '.join(SERVE)} --data-dir {disk} --port {port} & server=$!; trap 'kill $server; wait $server' TERM; "
            f"while [ ! -e {fill} ]; do sleep 0.1; done; cat /dev/zero > {disk}/filler 2>/dev/null; touch {filled}; "
            f"wait $server"
        ),
    )
    server = subprocess.Popen(command, env={**os.environ, "BNSCOPE_AUTOSTART": "false"})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: server.poll() is None and _up(url), timeout=60)
        run = httpx.post(f"{url}/api/runs", json={"config": SMALL}).json()
        wait_for(lambda: httpx.get(f"{url}/api/runs/{run['id']}").json()["status"] == "finished", timeout=180)
        fill.touch()
        wait_for(filled.exists, timeout=30)
        response = httpx.delete(f"{url}/api/runs/{run['id']}")
        assert (
            response.status_code == 507 and "full" in response.json()["detail"] and "kept" in response.json()["detail"]
        )
        assert httpx.get(f"{url}/api/runs/{run['id']}").status_code == 200  # still there, history and all
        assert httpx.get(f"{url}/api/runs/{run['id']}/history").status_code == 200
        refused = httpx.post(f"{url}/api/runs", json={"config": SMALL})  # no room for a new run either
        assert refused.status_code == 507 and "full" in refused.json()["detail"]
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_a_run_that_fills_the_disk_fails_saying_why(tmp_path):
    disk, port = tmp_path / "disk", free_port()
    command = on_a_small_disk(tmp_path, "3m", f"exec {' '.join(SERVE)} --data-dir {disk} --port {port}")
    server = subprocess.Popen(command, env={**os.environ, "BNSCOPE_AUTOSTART": "false"})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: server.poll() is None and _up(url), timeout=60)
        run = httpx.post(f"{url}/api/runs", json={"config": {**SMALL, "steps": 10_000_000, "stats_every": 1}}).json()
        failed = wait_for(
            lambda: (r := httpx.get(f"{url}/api/runs/{run['id']}").json())["status"] == "failed" and r, timeout=180
        )
        assert "full" in failed["message"]
        assert httpx.get(f"{url}/api/runs/{run['id']}/history").status_code == 200  # what was saved is still read
    finally:
        server.terminate()
        server.wait(timeout=30)


def _up(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
