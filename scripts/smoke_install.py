"""Check an installed bnscope as a user meets it, from a directory that is not the checkout.

    python scripts/smoke_install.py WHEEL     # run with the Python of a fresh venv the wheel is installed in

It checks that the wheel holds the one package `bnscope` (with its page, templates and names.txt);
that `bnscope --version` answers; that `bnscope train` trains 100 steps and saves weights that
`bnscope sample` reads; and that `bnscope serve` serves the page and every script, style sheet and
module it names, Plotly and the offline API docs included, while training the default network.
Exits 1 with what failed.
"""

import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from pathlib import Path

ASSET = re.compile(r'(?:src|href)="(/[^"]+)"')
IMPORT = re.compile(r'from "\./([^"]+)"')


def check_wheel(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = sorted({n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))})
    assert tops == ["bnscope"], f"the wheel installs {tops}, not just bnscope"
    for what, end in (
        ("names.txt", "bnscope/names.txt"),
        ("the page", "bnscope/templates/index.html"),
        ("its script", "bnscope/static/dashboard.js"),
        ("the networks", "bnscope/models/mlp.py"),
    ):
        assert any(n.endswith(end) for n in names), f"the wheel has no {what} ({end})"
    print(f"wheel: {wheel.name}, {wheel.stat().st_size / 1024:.0f} KiB, {len(names)} files, top level {tops}")


def bnscope(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["bnscope", *args], capture_output=True, text=True, timeout=300, **kwargs)


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.status == 200, f"{url}: {response.status}"
        return response.read()


def check_commands(work: Path) -> None:
    version = bnscope("--version")
    assert version.returncode == 0 and version.stdout.startswith("bnscope "), version
    trained = bnscope("train", "--steps", "100", "--n-hidden", "32", "--out", str(work / "w.pt"), "--quiet")
    assert trained.returncode == 0 and "finished at step 100" in trained.stdout, trained.stdout + trained.stderr
    sampled = bnscope("sample", str(work / "w.pt"), "-n", "3", "--seed", "1")
    assert sampled.returncode == 0 and len(sampled.stdout.splitlines()) == 3, sampled
    print("train, sample: ok")


def check_serve(work: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        ["bnscope", "serve", "--port", str(port), "--data-dir", str(work / "data")],
        env={**os.environ, "BNSCOPE_MAX_RUNS": "1"},
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                get(url + "/healthz")
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "bnscope serve did not come up"
                time.sleep(0.3)
        page = get(url + "/").decode()
        assets = set(ASSET.findall(page)) - {"/login"}
        modules = [a for a in assets if a.endswith(".js") and a.startswith("/static/")]
        while modules:  # the page's ES modules, and the modules they import
            source = get(url + modules.pop()).decode()
            for name in IMPORT.findall(source):
                if f"/static/{name}" not in assets:
                    assets.add(f"/static/{name}")
                    modules.append(f"/static/{name}")
        for asset in sorted(assets):
            if not asset.startswith("data:"):
                get(url + asset)
        docs = get(url + "/docs").decode()
        for asset in ASSET.findall(docs):
            get(url + asset)
        deadline = time.monotonic() + 90
        while b'"status":"running"' not in get(url + "/api/runs/1"):
            assert time.monotonic() < deadline, "the default network did not start training"
            time.sleep(0.5)
        print(f"serve: the page and {len(assets)} assets, /docs, and the default run training: ok")
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> int:
    wheel = Path(sys.argv[1]).resolve()
    check_wheel(wheel)
    with tempfile.TemporaryDirectory(prefix="bnscope-smoke-") as tmp:
        work = Path(tmp)
        os.chdir(work)  # anywhere but the checkout: nothing may be found through the repository's layout
        check_commands(work)
        check_serve(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
