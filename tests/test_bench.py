"""The benchmark command works end to end (a smoke run: tiny sizes, no timing asserted)."""

import subprocess
import sys

from tests.conftest import REPO


def test_the_benchmark_command_writes_every_section(tmp_path):
    out = tmp_path / "BENCHMARKS.md"
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = out.read_text()
    for heading in ("## 1. Training throughput", "## 2. Event latency", "## 4. Sampling", "## 5. Scale", "## 6. Learning"):
        assert heading in report
    for variant in ("bare loop", "fast step", "trainer, default cadences", "TensorBoard"):
        assert variant in report
    assert "names.txt" in report and "Smoke run" in report
