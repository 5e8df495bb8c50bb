"""Sweeps: a gain x BatchNorm grid of 10 trained as stacks, against 0.2's way (one worker process a run,
queued behind the slots) and against one run alone; the per-member cost of a stack by its size; the
lockstep spread; the memory a member adds.

    python -m bench --only sweeps

1. Windows, on a real `bnscope serve` with the default slots (the machine's cores), taking turns round
   by round: one run alone; 10 runs made one by one (as many train as there are slots, the rest wait
   queued: 0.2's sweep); the grid of 10 as one request. Each variant is made fresh, measured over a
   window once every member it starts is training (total steps/s, from GET /api/runs), then deleted.
   Diagnostics at the defaults (stats every 100 steps, update:data every 10, dev every 5,000).
2. Wall time of the whole grid, 20,000 steps a member, from the request until every member finished:
   stacked, and 0.2's way (10 single runs behind the slots).
3. The stacked step alone in this process, for R members of the default network, against the fused
   single-run step (models/fused.py) on the same batches, one thread, taking turns.
"""

import statistics
import time

import psutil
import torch

from bench.common import ratios, spread
from bench.server import BenchServer
from bnscope.config import RunConfig
from bnscope.train.data import make_splits, read_names
from bnscope.models.fused import ManualBackprop
from bnscope.models.stacked import StackedMLP
from bnscope.train.trainer import build_model

TITLE = "Sweeps: a grid trained as stacks"
GRID = {"gain": [0.5, 1.0, 5 / 3, 3.0, 5.0], "batchnorm": [True, False]}
QUICK_GRID = {"gain": [1.0, 3.0], "batchnorm": [True, False]}  # a smoke run: 4 members
SIZES = (1, 2, 4, 8, 16, 32, 64)


def _running(server: BenchServer, ids: list[int], count: int, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while sum(r["status"] == "running" and r["step"] > 0 for r in server.runs() if r["id"] in ids) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"fewer than {count} of runs {ids} training after {timeout:.0f} s")
        time.sleep(0.1)


def _delete(server: BenchServer, ids: list[int]) -> None:
    for run_id in ids:
        server.http.delete(f"/api/runs/{run_id}")


def _worker_rss(server: BenchServer) -> list[float]:
    return server.rss()["workers_mib"]


def _window(server: BenchServer, make, window: float, slots: int) -> dict:
    """Make a variant's runs, wait until those that can train do, then (steps/s, lockstep spread, RSS)."""
    ids, training = make()
    try:
        _running(server, ids, min(training, slots) if training < len(ids) else len(ids))
        time.sleep(1.0)  # past the workers' first slow steps
        spreads, start, t0 = [], server.steps(ids), time.perf_counter()
        while time.perf_counter() - t0 < window:
            steps = [r["step"] for r in server.runs() if r["id"] in ids and r["status"] == "running"]
            spreads.append(max(steps) - min(steps))
            time.sleep(0.25)
        rate = (server.steps(ids) - start) / (time.perf_counter() - t0)
        return {"rate": rate, "spread": max(spreads), "rss": _worker_rss(server)}
    finally:
        _delete(server, ids)


def _wall(server: BenchServer, make, steps: int) -> float:
    t0 = time.perf_counter()
    ids, _ = make(steps)
    try:
        while not all(r["status"] == "finished" for r in server.runs() if r["id"] in ids):
            time.sleep(0.2)
        return time.perf_counter() - t0
    finally:
        _delete(server, ids)


def _served(quick: bool, log) -> dict:
    window, rounds, steps = (1.0, 1, 200) if quick else (12.0, 3, 20_000)
    net = {"n_hidden": 16, "n_layers": 1} if quick else {}  # a smoke run: the tiniest network
    vary = QUICK_GRID if quick else GRID
    members = len(vary["gain"]) * len(vary["batchnorm"])
    with BenchServer() as server:
        slots = psutil.cpu_count() or 1

        def one(steps: int = 10_000_000):
            return [server.create(steps=steps, **net)["id"]], 1

        def singles(steps: int = 10_000_000):  # 0.2's sweep: one run a member, behind the slots
            configs = [{"gain": g, "batchnorm": bn} for g in vary["gain"] for bn in vary["batchnorm"]]
            return [server.create(steps=steps, **net, **c)["id"] for c in configs], slots

        def grid(steps: int = 10_000_000):
            body = {"config": {"steps": steps, **net}, "vary": vary}
            return server._ok(server.http.post("/api/sweeps", json=body))["runs"], members

        variants = {"one": one, "singles": singles, "grid": grid}  # named in markdown()
        seen: dict[str, list[dict]] = {name: [] for name in variants}
        for round_ in range(rounds):
            for name, make in variants.items():
                seen[name].append(_window(server, make, window, slots))
            log(f"  round {round_ + 1}/{rounds}: " + ", ".join(f"{n} {seen[n][-1]['rate']:.0f}/s" for n in variants))
        rates = {name: [w["rate"] for w in windows] for name, windows in seen.items()}
        log("  wall time of the grid, stacked and 0.2's way ...")
        wall = {"grid": _wall(server, grid, steps), "singles": _wall(server, singles, steps)}
        return {
            "window_s": window,
            "rounds": rounds,
            "slots": slots,
            "wall_steps": steps,
            "rates": {name: spread(values) for name, values in rates.items()},
            "vs_one": {name: ratios(values, rates["one"]) for name, values in rates.items()},
            "spread_steps": max(w["spread"] for w in seen["grid"]),
            "rss_one": statistics.median(max(w["rss"]) for w in seen["one"]),
            "rss_stack": statistics.median(max(w["rss"]) for w in seen["grid"]),
            "members": members,
            "stack_size": -(-members // slots),
            "wall_s": wall,
        }


def _per_member(quick: bool, log) -> dict:
    """The stacked step's time per member for R members, against the fused single-run step."""
    torch.set_num_threads(1)
    steps, rounds = (20, 1) if quick else (100, 3)
    splits = make_splits(read_names(), 3)
    config = RunConfig()
    single = ManualBackprop(build_model(config))
    gen = torch.Generator().manual_seed(0)
    out: dict[int, list[float]] = {R: [] for R in SIZES}
    for _ in range(rounds):
        for R in SIZES if not quick else SIZES[:3]:
            net = StackedMLP([build_model(config) for _ in range(R)], ["biased"] * R, torch.device("cpu"))
            ix = torch.randint(0, splits.Xtr.shape[0], (R, config.batch_size), generator=gen)
            Xb, Yb = splits.Xtr[ix], splits.Ytr[ix]
            net.set_rates([0.01] * R, [True] * R)
            t0 = time.perf_counter()
            for _ in range(steps):
                single(Xb[0], Yb[0])
            one = time.perf_counter() - t0
            net.step(Xb, Yb)  # warm
            t0 = time.perf_counter()
            for _ in range(steps):
                net.step(Xb, Yb)
            out[R].append((time.perf_counter() - t0) / one)  # a stack's step in single-run steps
        log("  per member: " + ", ".join(f"R={R} {out[R][-1] / R:.2f}" for R in SIZES if out[R]))
    return {R: spread(v) for R, v in out.items() if v}


def measure(quick: bool, log=print) -> dict:
    return {"served": _served(quick, log), "per_member": _per_member(quick, log)}


def markdown(result: dict) -> str:
    s, pm = result["served"], result["per_member"]
    label = {
        "one": "one run alone",
        "singles": f"{s['members']} runs, a process each (0.2)",
        "grid": f"grid of {s['members']}, stacked",
    }
    rows = "\n".join(
        f"| {label[name]} | {r['median']:.0f} ({r['min']:.0f}–{r['max']:.0f}) | {s['vs_one'][name]['median']:.2f}× "
        f"({s['vs_one'][name]['min']:.2f}–{s['vs_one'][name]['max']:.2f}) |"
        for name, r in s["rates"].items()
    )
    wall = s["wall_s"]
    sizes = "\n".join(
        f"| {R} | {v['median']:.2f} ({v['min']:.2f}–{v['max']:.2f}) | {v['median'] / R:.2f} | {R / v['median']:.2f}× |"
        for R, v in pm.items()
    )
    per_member_mib = (s["rss_stack"] - s["rss_one"]) / max(1, s["stack_size"] - 1)
    return (
        f"Total steps/s of every member together, {s['rounds']} rounds of {s['window_s']:.0f}-s windows, "
        f"{s['slots']} slots (the default: one a core), the default network and diagnostics:\n\n"
        "| variant | steps/s, all members | against one run alone |\n|---|---|---|\n" + rows + "\n\n"
        f"**Target: the grid at ≥ 2.5× one run alone.** Lockstep: the members' steps were at most "
        f"{s['spread_steps']} apart (GET /api/runs every 0.25 s; statistics every 100 steps).\n\n"
        f"Wall time of the whole grid, {s['wall_steps']:,} steps a member, request to the last member finished "
        f"(one each): stacked {wall['grid']:.0f} s, 0.2's way {wall['singles']:.0f} s "
        f"({wall['singles'] / wall['grid']:.2f}× longer).\n\n"
        f"Memory: a worker training one run {s['rss_one']:.0f} MiB; a stack of {s['stack_size']} "
        f"{s['rss_stack']:.0f} MiB: {per_member_mib:.1f} MiB a member beyond the first (resident, psutil).\n\n"
        "The stacked step in this process (no diagnostics, one thread), R members of the default network, against "
        "the fused single-run step on the same batches:\n\n"
        "| members R | step time / one single-run step | per member | per-member throughput |\n|---|---|---|---|\n"
        + sizes
        + "\n"
    )
