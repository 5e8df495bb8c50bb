"""What one statistics sample costs: bnscope.train.diagnostics on the lecture's network, next to one training step.

    python -m bench --only stats        # or: python -m bench.stats_cost [--quick]

The default network (RunConfig's defaults) takes a fused step (bnscope.models.fused) on a real minibatch;
then, in turns, a batch of calls each of: `collect` (a stats event's body: every tanh's and weight's
statistics, histograms and the |t| > 0.99 image, in one device-to-host copy), `update_moments` (what the
trainer keeps of an update:data measurement, every `update_every` steps: each weight's and gradient's sum
and sum of squares; the ratios are taken from them at a flush, many rows at once) and the fused step itself. Per call: the median over rounds of
wall time and of this thread's CPU time (others' load moves the second less). One torch thread.
"""

import argparse
import statistics
import time

import torch

from bench import report
from bnscope.train import diagnostics
from bnscope.config import RunConfig
from bnscope.train.data import make_splits, read_names
from bnscope.models.fused import ManualBackprop
from bnscope.train.trainer import build_model

TITLE = "A statistics sample's cost"
TARGET_MS = 1.0  # a statistics sample of the lecture's network


def measure(quick: bool = False, log=print) -> dict:
    torch.set_num_threads(1)
    config = RunConfig()
    splits = make_splits(read_names(), config.block_size)
    model = build_model(config)
    backprop, layers = ManualBackprop(model), diagnostics.lecture_layers(model)
    ix = torch.randint(0, splits.Xtr.shape[0], (config.batch_size,), generator=torch.Generator().manual_seed(0))
    Xb, Yb = splits.Xtr[ix], splits.Ytr[ix]
    backprop(Xb, Yb)
    calls = {
        "collect": lambda: diagnostics.collect(layers, backprop.h, backprop.dh),
        "update_moments": lambda: diagnostics.update_moments(layers.params),
        "step": lambda: backprop(Xb, Yb),
    }
    n, rounds = (5, 2) if quick else (200, 9)
    wall: dict[str, list[float]] = {key: [] for key in calls}
    cpu: dict[str, list[float]] = {key: [] for key in calls}
    for call in calls.values():  # warm-up: caches, first allocations
        for _ in range(n // 5 + 1):
            call()
    for _ in range(rounds):
        for key, call in calls.items():
            t0, c0 = time.perf_counter(), time.thread_time()
            for _ in range(n):
                call()
            wall[key].append((time.perf_counter() - t0) / n * 1e3)
            cpu[key].append((time.thread_time() - c0) / n * 1e3)
        log("  " + ", ".join(f"{key} {wall[key][-1]:.3f} ms" for key in calls))
    return {
        "calls": n,
        "rounds": rounds,
        "wall_ms": {k: statistics.median(v) for k, v in wall.items()},
        "cpu_ms": {k: statistics.median(v) for k, v in cpu.items()},
        "every": {"collect": config.stats_every, "update_moments": config.update_every, "step": 1},
    }


def markdown(r: dict) -> str:
    step = r["cpu_ms"]["step"]
    rows = [
        [
            f"`{key}`",
            f"{r['wall_ms'][key]:.3f}",
            f"{r['cpu_ms'][key]:.3f}",
            f"every {r['every'][key]:,} steps",
            f"{100 * r['cpu_ms'][key] / r['every'][key] / step:.1f} %",
        ]
        for key in r["wall_ms"]
    ]
    met = r["wall_ms"]["collect"]
    return (
        f"{report.rounds(r['rounds'])} of {r['calls']} calls each, the three taking turns; medians.\n\n"
        + report.table(["call", "wall ms a call", "CPU ms a call", "default cadence", "CPU share of a step"], rows)
        + f"\n\nTarget: a statistics sample (`collect`) of the lecture's network ≤ {TARGET_MS:g} ms: "
        f"{met:.2f} ms wall, {r['cpu_ms']['collect']:.2f} ms CPU ({'met' if met <= TARGET_MS else '**missed**'})."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: a few calls")
    print(markdown(measure(parser.parse_args().quick)))


if __name__ == "__main__":
    main()
