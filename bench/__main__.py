"""Run every benchmark and write BENCHMARKS.md.

    python -m bench              # the full run (~30 minutes: two 200k-step trainings, a 1M-step run)
    python -m bench --quick      # a smoke run of every part (about a minute); figures meaningless
"""

import argparse
import os
import platform
import time
from pathlib import Path

import torch

from bench import quality, scale, service, throughput
from bnscope.data import DEFAULT_NAMES


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        model = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name"))  # fmt: skip
        cpu = model
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}, 1 torch thread"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: every part, tiny sizes")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "BENCHMARKS.md")
    args = parser.parse_args()
    q = args.quick
    started = time.time()
    sections = [f"# bnscope benchmarks\n\nMachine: {machine()}.  \nCommand: `python -m bench{' --quick' if q else ''}`"
                f" ({time.strftime('%Y-%m-%d')}). Variants compared side by side are interleaved in one process"
                " (A B A B …); figures are medians with min–max over the rounds."]  # fmt: skip
    if q:
        sections.append("**Smoke run (`--quick`): sizes are tiny and the figures mean nothing.**")

    rows = throughput.measure(*((2, 0.3, 0.2) if q else (9, 2.0, 1.0)))
    dev = throughput.measure_dev_eval(2 if q else 5)
    sections.append("## 1. Training throughput (default network)\n\n" + throughput.markdown(rows) +
                    f"\n\nOne dev evaluation ({dev['examples']} examples, eval mode): {dev['seconds'] * 1e3:.0f} ms.")  # fmt: skip

    server = service.measure_server(window_s=1 if q else 8, rounds=1 if q else 3, api_requests=20 if q else 300)
    rates = server["steps_per_s"]
    lat = server["event_latency_ms"]
    sections.append(
        "## 2. Event latency, 3. API under training, 1d. stream clients\n\n"
        "The server trains the default network at full speed (one run).\n\n"
        "| measure | value |\n| --- | ---: |\n"
        + "".join(f"| steps/s with {k} SSE client(s) | {v:.0f} ({server['steps_per_s_range'][k][0]:.0f}–"
                  f"{server['steps_per_s_range'][k][1]:.0f}), {v / rates[0]:.2f}× of none |\n" for k, v in rates.items())
        + f"| stats event latency (step's stats exist → client parsed), n={server['event_count']} | "
          f"p50 {lat['p50']:.1f} ms, p95 {lat['p95']:.1f} ms, p99 {lat['p99']:.1f} ms |\n"
        + "".join(f"| {name} | p50 {v['p50']:.1f} ms, p99 {v['p99']:.1f} ms |\n" for name, v in server["api_ms"].items())
    )  # fmt: skip
    sampling = service.measure_sampling(repeats=2 if q else 5, train_steps=200 if q else 5000)
    cost = service.measure_event_cost(5 if q else 50)
    sections.append(
        "## 4. Sampling throughput (one batch per request, default network)\n\n| names asked | names/s |\n| ---: | ---: |\n"
        + "".join(f"| {n} | {rate:,.0f} |\n" for n, rate in sampling.items())
        + f"\nServer CPU per stats event (JSON once, series rows, compression): {cost['cpu_ms_per_stats_event']:.2f} ms"
          f" for a {cost['stats_event_kib']:.0f} KiB event."
    )  # fmt: skip

    steps = (500, 1_000) if q else (10_000, 100_000, 1_000_000)
    scaled = scale.measure(steps, log=lambda row: None)
    sections.append(
        f"## 5. Scale (small config {scale.SMALL}, one run to {steps[-1]:,} steps)\n\n"
        "| step | server RSS | history answer | history time (median, max of 5) | database |\n| ---: | ---: | ---: | ---: | ---: |\n"
        + "".join(f"| {r['step']:,} | {r['rss_mib']:.0f} MiB | {r['history_kib']:.0f} KiB | {r['history_ms_median']:.0f} ms, "
                  f"{r['history_ms_max']:.0f} ms | {r['db_mib']:.1f} MiB |\n" for r in scaled)
    )  # fmt: skip

    quality_rows = [quality.measure(path, 500 if q else 200_000) for path in (DEFAULT_NAMES, quality.LECTURE_NAMES)
                    if path.exists()]  # fmt: skip
    sections.append(
        "## 6. Learning quality (default network, full schedule)\n\n"
        "| names file | steps | train | dev | test | wall time | steps/s |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n"
        + "".join(f"| {Path(r['names']).name} | {r['steps']:,} | {r.get('train', float('nan')):.4f} | "
                  f"{r.get('dev', float('nan')):.4f} | {r.get('test', float('nan')):.4f} | {r['wall_s']:.0f} s | "
                  f"{r['steps_per_s']:.0f} |\n" for r in quality_rows)
        + "\nThe lecture's single-layer BatchNorm MLP reached dev 2.1048 on makemore-names.txt."
    )  # fmt: skip
    sections.append(f"_Written by `python -m bench` in {time.time() - started:.0f} s._")
    args.out.write_text("\n\n".join(sections) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
