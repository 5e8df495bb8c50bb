"""Measure what the health badges judge on networks of other activation families, healthy and broken,
through bnscope.watch's own path, and print the table app/health.py's per-family rules are chosen from.

    python scripts/calibrate_families.py [--steps 1500] [--only NAME]

The healthy runs are the examples (examples/cnn.py: ReLU, AdamW; examples/transformer_block.py: GELU,
AdamW, their own settings and step counts) and the lecture's MLP (bnscope.models.MLP, BatchNorm on)
with its tanhs swapped for sigmoid, ReLU, GELU or SiLU, trained with SGD at the lecture's lr. The broken
ones break what each family's rule is for, at init:

  dead ReLUs       the CNN with its BatchNorms' bias (beta) at -5: every ReLU's input is below 0 for
                   nearly every example
  exploding gain   the transformer with its MLPs' first Linear x10; the MLPs without BatchNorm at gain 5
  sigmoid hot      the sigmoid MLP without BatchNorm at gain 5 (the lecture's too-hot tanh, for a sigmoid)

Every run is watched by bnscope.watch with an in-memory sender (events straight to
bnscope.health.Monitor), statistics every `every` steps; one torch thread. `calibrated()` is what
tests/test_health_families.py trains, shorter.
"""

import argparse
import importlib.util
import math
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from bnscope import health
from bnscope.config import RunConfig
from bnscope.train.data import VOCAB_SIZE, make_splits, read_names
from bnscope.models import MLP
from bnscope.watched.hooks import WatchedRun

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SWAPS = {
    "sigmoid": (nn.Sigmoid, 1.0),
    "relu": (nn.ReLU, math.sqrt(2)),
    "gelu": (nn.GELU, math.sqrt(2)),
    "silu": (nn.SiLU, math.sqrt(2)),
}


def example(name: str):
    """examples/<name>.py as a module (the examples are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Recorder:
    """A watched run's sender that hands each event to a health.Monitor, in this thread, and keeps every
    quantity of every layer and weight, judged or not, as (step, {quantity/kind: [values]})."""

    def __init__(self):
        self.monitor = health.Monitor()
        self.raw: list[tuple[int, dict[str, list[float]]]] = []

    def put(self, event: dict) -> None:
        self.monitor(event)
        if event["type"] == "stats":
            raw: dict[str, list[float]] = {}
            for a in event["activations"]:
                for quantity in health.LAYER_QUANTITIES:
                    if (value := health._layer_value(quantity, a)) is not None:
                        raw.setdefault(f"{quantity}/{a['kind']}", []).append(value)
            acts = event["activations"]
            if len(acts) > 1 and acts[0]["grad_std"] and acts[-1]["grad_std"] is not None:
                raw["gradient_flow"] = [acts[-1]["grad_std"] / acts[0]["grad_std"]]
            raw["update_to_data"] = [sum(v) / len(v) for v in self.monitor._recent.ud.values() if v]
            self.raw.append((event["step"], raw))

    def flush(self, timeout: float = 0) -> bool:
        return True

    def close(self, timeout: float = 0) -> dict:
        return {"sent": 0, "dropped": 0, "dropped_why": {}}


def watched(model: nn.Module, optimizer, every: int, batches, loss_of, steps: int) -> Recorder:
    """Train `steps` steps watched: what was recorded."""
    recorder = Recorder()
    run = WatchedRun(model, optimizer, every, recorder)
    try:
        for _ in range(steps):
            x, y = next(batches)
            loss = loss_of(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            run.log(loss=loss.item())
    finally:
        run.close()
    return recorder


def minibatches(X: torch.Tensor, Y: torch.Tensor, size: int, generator: torch.Generator | None = None):
    """Random minibatches of (X, Y), for ever."""
    while True:
        ix = torch.randint(0, X.shape[0], (size,), generator=generator)
        yield X[ix], Y[ix]


def cnn(steps: int, broken: bool = False, every: int = 20):
    ex = example("cnn")
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    X, Y = ex.synthetic_images(2048, g)
    model = ex.SmallCNN()
    if broken:  # dead ReLUs: every input of them negative
        with torch.no_grad():
            for bn in (model.bn1, model.bn2, model.head[3]):
                bn.bias.fill_(-5.0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    batches = minibatches(X, Y, 64)
    return watched(model, optimizer, every, batches, F.cross_entropy, steps)


def transformer(steps: int, broken: bool = False, every: int = 50):
    ex = example("transformer_block")
    torch.manual_seed(0)
    X, Y = ex.sequences(sorted(make_splits(read_names(), ex.BLOCK_SIZE).train_words))
    model = ex.TinyTransformer()
    if broken:  # an exploding gain: the MLPs' first Linear x10
        with torch.no_grad():
            for block in model.blocks:
                block.mlp[0].weight.mul_(10.0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    batches = minibatches(X, Y, 64)
    return watched(
        model,
        optimizer,
        every,
        batches,
        lambda logits, y: F.cross_entropy(logits.view(-1, VOCAB_SIZE), y.view(-1)),
        steps,
    )


def mlp(kind: str, steps: int, batchnorm: bool = True, gain: float | None = None, every: int = 100):
    """The lecture's MLP with `kind` in place of its tanhs, trained as the lecture trains it (SGD)."""
    config = RunConfig(batchnorm=batchnorm, gain=gain if gain is not None else SWAPS[kind][1])
    model = MLP(vocab_size=VOCAB_SIZE, generator=torch.Generator().manual_seed(config.seed), **config.model_kwargs())
    for i, layer in enumerate(model.layers):
        if isinstance(layer, nn.Tanh):
            model.layers[i] = SWAPS[kind][0]()
    splits = make_splits(read_names(), config.block_size)
    g = torch.Generator().manual_seed(config.seed)
    batches = minibatches(splits.Xtr, splits.Ytr, 32, g)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr)
    return watched(model, optimizer, every, batches, F.cross_entropy, steps)


def runs(steps: int) -> dict:
    """name -> (train it, healthy?)."""
    out = {
        "cnn (ReLU, AdamW)": (lambda: cnn(600), True),
        "cnn, dead ReLUs": (lambda: cnn(100, broken=True), False),
        "transformer (GELU, AdamW)": (lambda: transformer(1500), True),
        "transformer, MLP gain x10": (lambda: transformer(200, broken=True), False),
    }
    for kind in SWAPS:
        out[f"mlp {kind}, BN"] = (lambda kind=kind: mlp(kind, steps), True)
    out["mlp sigmoid, no BN, gain 5"] = (lambda: mlp("sigmoid", 200, batchnorm=False, gain=5.0), False)
    out["mlp gelu, no BN, gain 5"] = (lambda: mlp("gelu", 200, batchnorm=False, gain=5.0), False)
    out["mlp silu, no BN, gain 5"] = (lambda: mlp("silu", 200, batchnorm=False, gain=5.0), False)
    out["mlp relu, no BN, gain 5"] = (lambda: mlp("relu", 200, batchnorm=False, gain=5.0), False)
    return out


def table(raw) -> list[str]:
    """Per quantity: step 0's min..max over layers, and the whole run's min / p50 / max."""
    by_measure: dict[str, tuple[list[float], list[float]]] = {}
    for step, measured in raw:
        for measure, values in measured.items():
            first, run = by_measure.setdefault(measure, ([], []))
            run.extend(values)
            if step == 0:
                first.extend(values)
    lines = []
    for measure, (first, run) in by_measure.items():
        if run:
            at0 = f"{min(first):.3g}..{max(first):.3g}" if first else "-"
            lines.append(
                f"  {measure:22s} step 0 {at0:18s} run {min(run):.3g} / {statistics.median(run):.3g} / {max(run):.3g}"
            )
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3000, help="steps of each healthy MLP")
    parser.add_argument("--only", action="append", help="a run whose name contains this (repeatable)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    failed = 0
    for name, (train, healthy) in runs(args.steps).items():
        if args.only and not any(part in name for part in args.only):
            continue
        started = time.perf_counter()
        recorder = train()
        history = recorder.monitor.history
        judged = [(step, c) for step, m in history for c in health.checks(m)]
        bad = [(step, c) for step, c in judged if c[3] != "ok"]
        at0 = sorted({f"{c[0]} {c[1]} {c[3]}" for step, c in bad if step == 0})
        ok = not bad if healthy else any(c[3] == "red" for step, c in bad if step == 0)
        failed += not ok
        print(
            f"{'ok  ' if ok else 'FAIL'} {name}: {len(history)} stats steps, {time.perf_counter() - started:.0f} s; "
            + (f"{len(bad)} badges not ok" + (f", first {bad[0]}" if bad else "") if healthy else f"at step 0: {at0}")
        )
        print("\n".join(table(recorder.raw)))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
