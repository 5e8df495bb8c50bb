"""The benchmark command works end to end: a smoke run (tiny sizes, no timing asserted) writes every
section and every variant row to the file it is given, and never touches the committed BENCHMARKS.md."""

import contextlib
import hashlib
import os
import signal
import subprocess
import sys

import pytest

from bench.__main__ import SECTIONS as BENCH_SECTIONS
from tests.conftest import REPO


pytestmark = pytest.mark.slow  # every section of the bench at smoke sizes, servers and all
# every section python -m bench has, numbered in its order, after the two summaries
SECTIONS = ["Headline figures", "Targets"] + [f"{i}. {section.title}" for i, section in enumerate(BENCH_SECTIONS, 1)]
ROWS = [
    # throughput: every variant and every ratio
    "`autograd`:",
    "`fused`:",
    "`trainer`:",
    "`trainer_bare`:",
    "`fused_tb`:",
    "`autograd_tb`:",
    "`fused` / `autograd`",
    "`trainer` / `fused`",
    "`trainer` / `trainer_bare`",
    "`fused_tb` / `fused`",
    "`autograd_tb` / `autograd`",
    "`trainer` / `fused_tb`",
    # server CPU per event
    "series points (",
    "publish: series points",
    "zlib level 1",
    "`Store.write` in one transaction",
    "total: publish + store write",
    # latency
    "loss point: its step → the trainer emits it",
    "loss point: server publish → SSE client",
    "stats event: its step → the trainer emits it",
    "stats event: server publish → SSE client",
    "control round trip",
    # sampling, workers, ray
    "1 run training, no stream clients",
    "2 runs training, 20 stream clients reading",
    "| 1,000 |",
    "1 run training at once",
    "2 runs training at once",
    "4 runs training at once",
    "1 run, the trainer in-process",
    "With 4 runs training: stats events",
    "steps/s, one run",
    "start-up: server launch",
    "Ray's memory",
    # scale, quality, sweeps
    "| 600 |",
    "| names.txt |",
    "| grid of 4, stacked |",
    "4 runs, a process each (0.2)",
    "| members R |",
    # the targets table: every section's target, those that print their own too
    "| bnscope.watch every=100 vs unwatched, the lecture's network (median) ≥",
    "| bnscope.watch every=100 vs unwatched, a small MLP (median) ≥",
    "| `bnscope train --steps 1` vs the bare script (median) ≤",
    "| a statistics sample of the lecture's network, wall ≤",
]


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else ""


def test_the_benchmark_command_writes_every_section(tmp_path):
    committed = REPO / "BENCHMARKS.md"
    before, mtime = digest(committed), committed.stat().st_mtime_ns if committed.exists() else None
    out = tmp_path / "report.md"
    # a session of its own: a timeout takes the servers and workers the benchmark started down with it
    bench = subprocess.Popen(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = bench.communicate(timeout=480)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(bench.pid, signal.SIGKILL)
    assert bench.returncode == 0, stdout[-2000:] + stderr[-3000:]
    report = out.read_text()
    assert "Smoke run (`--quick`)" in report
    for heading in SECTIONS:
        assert f"## {heading}\n" in report, heading
    for row in ROWS:
        assert row in report, row
    assert report.count("_Produced by `python -m bench --quick --out") == len(SECTIONS) - 2  # a command a section
    assert "Page cost" in report and ("browser CPU" in report or "Skipped: needs Chromium" in report)
    assert digest(committed) == before and (committed.stat().st_mtime_ns if committed.exists() else None) == mtime
