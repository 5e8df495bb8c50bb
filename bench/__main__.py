"""Run the benchmarks and write the report.

    python -m bench                          # the full run (~30 min on 2 cores): writes BENCHMARKS.md
    python -m bench --quick                  # a smoke run of every section (tiny sizes, figures meaningless),
                                             #   written to a temporary file (or --out): never BENCHMARKS.md
    python -m bench --only latency --only ray   # some sections (also to a temporary file unless --out)
    python -m bench --lecture-names PATH     # the lecture's names file for the learning-quality section

Sections, in order: throughput, event_cost, latency, sampling, workers, ray, page, scale, quality,
watch, startup, hostile, sweeps, stats. The served sections (latency, sampling, workers, ray, page) share one real `bnscope serve`
(process backend, BNSCOPE_MAX_RUNS=4) and its runs (bench.server); hostile has a server of its own,
with bounds shortened for the run. The peers (TensorBoard, W&B
offline), Chromium's playwright and Ray come with `pip install -e ".[bench]"`; a peer that is not
installed is left out of its table.
"""

import argparse
import contextlib
import importlib.util
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from bench import (
    event_cost,
    hostile,
    latency,
    quality,
    ray_local,
    report,
    sampling,
    scale,
    startup,
    stats_cost,
    sweeps,
    throughput,
    watch,
    workers,
)
from bench.common import machine
from bench.load import OtherLoad
from bench.server import BenchServer

REPO = Path(__file__).resolve().parent.parent
BENCHMARKS = REPO / "BENCHMARKS.md"


@dataclass
class Context:
    quick: bool
    names_files: list[Path]
    note: str  # what the quality section leaves out, if anything
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    _served: BenchServer | None = None

    def served(self) -> BenchServer:
        """The shared server, started when a section first needs it."""
        if self._served is None:
            self._served = BenchServer(autostart=True, BNSCOPE_MAX_RUNS="4")
            self.stack.callback(self.close_served)
        return self._served

    def close_served(self) -> None:
        """Stop the shared server, its runs and its Ray processes: after the last section that uses it, so
        that no run it still trains (the page section's) shares the machine with the sections after it."""
        if self._served is not None:
            self._served.close()
            self._served = None


@dataclass(frozen=True)
class Section:
    key: str
    title: str
    measure: Callable[[Context], dict]
    render: Callable[[dict], str]
    served: bool = False  # on the shared server (Context.served)


def _page(ctx: Context) -> dict:
    from bench import page

    if not page.CHROMIUM.exists() or importlib.util.find_spec("playwright") is None:
        return {"skipped": f"needs Chromium at {page.CHROMIUM} and playwright"}
    return page.measure(
        *((1.0, 1) if ctx.quick else (20.0, 3)), warmup_s=1.0 if ctx.quick else 10.0, server=ctx.served()
    )


def _quality(ctx: Context) -> dict:
    return {**quality.measure(ctx.quick, ctx.names_files), "note": ctx.note}


SECTIONS = [
    Section(
        "throughput", "Training step and logging overhead", lambda c: throughput.measure(c.quick), report.throughput
    ),
    Section("event_cost", "Server CPU per event", lambda c: event_cost.measure(c.quick), report.event_cost),
    Section(
        "latency", "Event latency, step → client", lambda c: latency.measure(c.quick, c.served()), report.latency, True
    ),
    Section(
        "sampling",
        "Sampling latency through the API",
        lambda c: sampling.measure(c.quick, c.served()),
        report.sampling,
        True,
    ),
    Section("workers", "Workers: runs at once", lambda c: workers.measure(c.quick, c.served()), report.workers, True),
    Section(
        "ray",
        "Ray (local) against worker processes",
        lambda c: ray_local.measure(c.quick, c.served()),
        report.ray,
        True,
    ),
    Section("page", "Page cost", _page, report.page, True),
    Section("scale", "Scale: one run to 1M steps", lambda c: scale.measure(c.quick), report.scale),
    Section("quality", "Learning quality over 3 seeds", _quality, report.quality),
    Section("watch", watch.TITLE, lambda c: watch.measure(c.quick), watch.markdown),
    Section("startup", startup.TITLE, lambda c: startup.measure(c.quick), startup.markdown),
    Section("hostile", hostile.TITLE, lambda c: hostile.measure(c.quick), hostile.markdown),
    Section("sweeps", sweeps.TITLE, lambda c: sweeps.measure(c.quick), sweeps.markdown),
    Section("stats", stats_cost.TITLE, lambda c: stats_cost.measure(c.quick), stats_cost.markdown),
]


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: every section, tiny sizes, figures meaningless"
    )
    parser.add_argument(
        "--out", type=Path, help="write the report here (default: BENCHMARKS.md for a full run, else a temporary file)"
    )
    parser.add_argument("--only", action="append", metavar="SECTION", help="run only this section (repeatable)")
    parser.add_argument(
        "--lecture-names",
        type=Path,
        default=None,
        help=f"the lecture's names file for the quality section (default: {quality.LECTURE_NAMES} if it exists)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    known = [s.key for s in SECTIONS]
    if args.only and (unknown := set(args.only) - set(known)):
        print(
            f"python -m bench: no section {', '.join(sorted(unknown))}; sections: {', '.join(known)}", file=sys.stderr
        )
        return 2
    chosen = [s for s in SECTIONS if not args.only or s.key in args.only]
    out = args.out or (
        BENCHMARKS
        if not args.quick and not args.only
        else Path(tempfile.mkstemp(prefix="bnscope-bench-", suffix=".md")[1])
    )
    from bnscope.train.data import DEFAULT_NAMES

    lecture = args.lecture_names or (quality.LECTURE_NAMES if quality.LECTURE_NAMES.exists() else None)
    if lecture is not None and not lecture.exists():
        print(f"python -m bench: --lecture-names {lecture}: no such file", file=sys.stderr)
        return 2
    note = (
        ""
        if lecture
        else (
            f"The lecture's names file was not measured: no --lecture-names given and "
            f"{quality.LECTURE_NAMES} does not exist."
        )
    )
    if note:
        print(note)
    command = " ".join(["python -m bench", *argv])
    import torch

    torch.set_num_threads(1)
    ctx = Context(args.quick, [DEFAULT_NAMES] + ([lecture] if lecture else []), note)
    results, bodies = {}, []
    started, start_machine = time.time(), machine()
    with OtherLoad() as whole, ctx.stack:
        for number, section in enumerate(chosen, 1):
            print(f"[{time.strftime('%H:%M:%S')}] {number}/{len(chosen)} {section.key}: {section.title}", flush=True)
            at_start, t0 = os.getloadavg(), time.perf_counter()
            with OtherLoad() as other:
                results[section.key] = section.measure(ctx)
            if not any(later.served for later in chosen[number:]):
                ctx.close_served()
            bodies.append(
                f"## {number}. {section.title}\n\n"
                f"_Produced by `{command}` (this section alone: `python -m bench --only {section.key}`), "
                f"{time.perf_counter() - t0:.0f} s. Machine: {report.machine_line(start_machine)}; "
                f"{report.load_line(at_start, other.summary())}._\n\n" + section.render(results[section.key])
            )
    other = whole.summary()
    wall = time.time() - started
    verdict = (
        "**The machine was busy with other work during this run: figures are noisy; read the ratios, measured "
        "side by side.**"
        if report.busy(other, start_machine["cores"])
        else "The machine was otherwise quiet."
    )
    header = [
        "# bnscope benchmarks",
        f"`{command}`, {start_machine['date']}, {wall / 60:.0f} min. {verdict} Other processes used "
        f"{other['mean_cores']:.2f} of {start_machine['cores']} cores on average ({other['max_cores']:.2f} at most in a "
        f"{other['every']:g}-s sample); load average {start_machine['load'][0]:.2f} at start.",
        f"Machine: {report.machine_line(start_machine)}.",
        "Variants compared side by side take turns (A B C A B C …) and give medians with min–max over the rounds; "
        "ratios are taken round by round. Latencies are nearest-rank percentiles over every event or request.",
    ]
    if args.quick:
        header.append("**Smoke run (`--quick`): sizes are tiny and the figures mean nothing.**")
    header += [
        "## Headline figures",
        report.headline(results),
        "## Targets",
        report.render_targets(report.targets(results)),
    ]
    out.write_text("\n\n".join(header + bodies) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
