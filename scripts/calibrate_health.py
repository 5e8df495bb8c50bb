"""Measure what the health badges judge, on the lecture's network trained healthy and broken, and
print the table app/health.py's thresholds are chosen from.

    python scripts/calibrate_health.py [--steps-default 200000] [--steps-short 2000] [--names PATH]

The default config trains its whole schedule (200k steps: 2-8 min on one CPU thread, 125 s on the
machine that calibrated the rules); the broken ones only their first steps, since what the badges
must catch shows at init. Every run trains in-process on one torch thread, with the real Trainer,
and its measures come from the same bnscope.health.Monitor the rules are written for. Statistics
are taken at the page's cadence, every 100 steps (2,000 samples of the default run; they cost ~1% of its time). update:data is
also tabled per weight, since one layer (the last) is what separates some configs.
Last, it judges every run with the rules in app/health.py and exits 1 where they miss their promise
(the default ok at every stats step, each broken config flagged at step 0): rerun it after changing a
threshold. `--json PATH` also writes every stats step's measures.
"""

import argparse
import json
import platform
import statistics
import sys
import time
from datetime import date

import torch

from bnscope import health
from bnscope.config import RunConfig
from bnscope.train.data import DEFAULT_NAMES, make_splits, read_names
from bnscope.train.trainer import Trainer
from bnscope.train.worker import CommandQueue

# (name, overrides, the rule that must flag it at step 0): what the lecture breaks on purpose
BROKEN = [
    ("gain 5, no BN", dict(gain=5.0, batchnorm=False), "saturation"),  # too hot: tanh saturates
    ("gain 0.5", dict(gain=0.5), "update_to_data"),  # too cold, but BN undoes it in the forward pass
    ("gain 0.5, no BN", dict(gain=0.5, batchnorm=False), "activation_std"),  # activations shrink with depth
    ("no BN", dict(batchnorm=False), "update_to_data"),  # the lecture's kaiming 5/3 without BatchNorm
    ("torch-default, no BN", dict(init="torch-default", batchnorm=False), "activation_std"),
    ("lr 50, no BN", dict(lr=50.0, batchnorm=False), "update_to_data"),
]
MEASURES = [rule.id for rule in health.RULES]


def train(config: RunConfig, words: list[str]) -> tuple[list[tuple[int, health.Measured]], str, float]:
    """The run's measures at every stats step, how it ended, and its wall time."""
    monitor = health.Monitor()
    outcome = {}

    def emit(event: dict) -> None:
        monitor(event)
        if event["type"] == "status":
            outcome["status"] = event["status"] + (f" ({event['message']})" if event["message"] else "")

    splits = make_splits(words, config.block_size)
    trainer = Trainer(config, splits, emit, checkpoint_every=10**9, device=torch.device("cpu"))
    started = time.perf_counter()
    trainer.run(CommandQueue())  # empty: train to the end
    return monitor.history, outcome.get("status", "?"), time.perf_counter() - started


def values(history, rule_id: str, steps: range | None = None) -> list[float]:
    return [v for step, m in history if steps is None or step in steps for v in m.get(rule_id, {}).values()]


def quantile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def fmt(x: float) -> str:
    return f"{x:.3g}" if abs(x) >= 0.01 or x == 0 else f"{x:.2e}"


def table(runs: dict[str, list]) -> str:
    """Per config and measure: step 0 over layers, and the whole run over steps x layers."""
    lines = [
        "| config | measure | step 0: min / median / max | run: min / p50 / p99 / max | flagged at step 0 |",
        "|---|---|---|---|---|",
    ]
    for name, history in runs.items():
        for rule_id in MEASURES:
            at0, run = values(history, rule_id, range(1)), values(history, rule_id)
            if not run:
                continue
            first = " / ".join(fmt(x) for x in (min(at0), statistics.median(at0), max(at0))) if at0 else "-"
            whole = " / ".join(fmt(x) for x in (min(run), quantile(run, 0.5), quantile(run, 0.99), max(run)))
            flagged = "-"
            if at0:
                levels = [health.verdict(rule_id, x) for x in at0]
                flagged = "red" if "red" in levels else "amber" if "amber" in levels else "ok"
            lines.append(f"| {name} | {rule_id} | {first} | {whole} | {flagged} |")
    return "\n".join(lines)


def per_weight(runs: dict[str, list]) -> str:
    """update:data per weight: each config at step 0, and the default run's range over every step."""
    names = list(runs["default"][0][1]["update_to_data"])
    lines = ["| config | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for config, history in runs.items():
        at0 = history[0][1]["update_to_data"]
        lines.append(f"| {config} (step 0) | " + " | ".join(fmt(at0[n]) if n in at0 else "-" for n in names) + " |")
    default = runs["default"]
    for label, pick in (("min", min), ("max", max)):
        row = [pick(m["update_to_data"][n] for _, m in default if n in m["update_to_data"]) for n in names]
        lines.append(f"| default, run {label} | " + " | ".join(fmt(x) for x in row) + " |")
    return "\n".join(lines)


def judged(runs: dict[str, list]) -> list[str]:
    """What app/health.py's rules make of each run; a line starting with FAIL where they miss their
    promise: the default ok at every stats step, each broken config flagged at step 0 by its rule."""
    lines = []
    bad = [(step, c) for step, m in runs["default"] for c in health.checks(m) if c[3] != "ok"]
    if bad:
        step, (rule_id, label, value, level) = bad[0]
        lines.append(
            f"FAIL default: {len(bad)} non-ok badges, first at step {step}: {rule_id} {label} = {fmt(value)} ({level})"
        )
    else:
        lines.append(f"ok   default: every badge ok at every one of {len(runs['default'])} stats steps")
    for name, _, rule_id in BROKEN:
        at0 = health.checks(runs[name][0][1])
        caught = sorted({f"{r} {level}" for r, _, _, level in at0 if level != "ok"})
        ok = any(r == rule_id and level != "ok" for r, _, _, level in at0)
        flags = ", ".join(caught) or "nothing"
        lines.append(f"{'ok  ' if ok else 'FAIL'} {name}: flagged at step 0 by {flags} (must: {rule_id})")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps-default", type=int, default=200_000)
    parser.add_argument("--steps-short", type=int, default=2000, help="steps of each broken config")
    parser.add_argument("--stats-every-default", type=int, default=100)
    parser.add_argument("--names", default=str(DEFAULT_NAMES))
    parser.add_argument("--json", help="also write every stats step's measures here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # the network is small: one thread is fastest, and the machine is shared
    words = read_names(args.names)
    configs = [("default", RunConfig(steps=args.steps_default, stats_every=args.stats_every_default))]
    configs += [(name, RunConfig(steps=args.steps_short, **overrides)) for name, overrides, _ in BROKEN]

    runs, started = {}, time.perf_counter()
    for name, config in configs:
        history, status, seconds = train(config, words)
        runs[name] = history
        print(
            f"{name}: {config.steps:,} steps, stats every {config.stats_every}, {status}, {seconds:.0f} s",
            file=sys.stderr,
        )
    total = time.perf_counter() - started

    print(
        f"Calibrated {date.today()} on {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"1 thread, {total:.0f} s in all; `python {' '.join(sys.argv)}`\n"
    )
    print(table(runs))
    print("\nupdate:data (log10, mean of the last 5) per weight:\n")
    print(per_weight(runs))
    verdicts = judged(runs)
    print("\nWhat the rules in app/health.py make of them:\n\n" + "\n".join(f"    {line}" for line in verdicts))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(runs, f)
    sys.exit(1 if any(line.startswith("FAIL") for line in verdicts) else 0)


if __name__ == "__main__":
    main()
