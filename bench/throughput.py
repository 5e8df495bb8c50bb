"""Training throughput: bnscope's trainer against the lecture's bare training loop.

    python -m bench.throughput            # ~2 minutes; --quick for a few seconds' smoke run

Every variant trains the default network (RunConfig()) on names.txt, one thread, on the CPU. The
variants take turns, a time window each, for several rounds (the machine's speed drifts, so they
are interleaved); each row gives steps/s (median and min-max over the rounds) and the ratio to the
bare loop measured in the same round (median and min-max):

  bare loop            the lecture's torch.nn loop: model(Xb), F.cross_entropy, loss.backward(),
                       p.data += -lr * p.grad; no statistics
  fast step            the same step with bnscope.models.fused.ManualBackprop and one _foreach_add_
  trainer ...          bnscope.trainer.Trainer.run() (paused and resumed between windows) with no
                       diagnostics, update:data only, the default cadences, everything every step
  bare + TensorBoard   the bare loop logging the same statistics at the default cadences the usual
                       way: retain_grad on every tanh output, SummaryWriter.add_histogram/add_scalar

`measure()` returns the rows as dicts, for a report that collects them.
"""

import argparse
import contextlib
import statistics
import tempfile
import threading
import time
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from bnscope import diagnostics
from bnscope.config import RunConfig
from bnscope.data import VOCAB_SIZE, Splits, make_splits, read_names
from bnscope.trainer import Trainer
from bnscope.models import MLP
from bnscope.models.fused import ManualBackprop

NEVER = 1_000_000  # the longest cadence: once at step 0, then never again
CPU = torch.device("cpu")


def _model(config: RunConfig) -> MLP:
    return MLP(vocab_size=VOCAB_SIZE, generator=torch.Generator().manual_seed(config.seed), **config.model_kwargs())


def bare_loop(config: RunConfig, splits: Splits) -> Callable[[], None]:
    """One step of the lecture's loop a call."""
    model = _model(config)
    parameters = list(model.parameters())
    g = torch.Generator().manual_seed(config.seed)

    def step() -> None:
        ix = torch.randint(0, splits.Xtr.shape[0], (config.batch_size,), generator=g)
        Xb, Yb = splits.Xtr[ix], splits.Ytr[ix]
        logits = model(Xb)
        loss = F.cross_entropy(logits, Yb)
        for p in parameters:
            p.grad = None
        loss.backward()
        for p in parameters:
            p.data += -config.lr * p.grad

    return step


def fast_step(config: RunConfig, splits: Splits) -> Callable[[], None]:
    """The same step with the backward written out (what the trainer runs, without the trainer)."""
    model = _model(config)
    parameters = list(model.parameters())
    backprop = ManualBackprop(model)
    g = torch.Generator().manual_seed(config.seed)

    def step() -> None:
        ix = torch.randint(0, splits.Xtr.shape[0], (config.batch_size,), generator=g)
        backprop(splits.Xtr[ix], splits.Ytr[ix])
        with torch.no_grad():
            torch._foreach_add_(parameters, [p.grad for p in parameters], alpha=-config.lr)

    return step


def tensorboard_loop(config: RunConfig, splits: Splits, logdir: str) -> Callable[[], None]:
    """The bare loop logging what bnscope shows, at bnscope's cadences, the way it is usually done."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(logdir)
    model = _model(config)
    parameters = list(model.parameters())
    weights = diagnostics.weights(model)
    bns = [m for m in model.layers if isinstance(m, nn.BatchNorm1d)]
    g = torch.Generator().manual_seed(config.seed)
    i = 0

    def step() -> None:
        nonlocal i
        want_stats = i % config.stats_every == 0
        ix = torch.randint(0, splits.Xtr.shape[0], (config.batch_size,), generator=g)
        Xb, Yb = splits.Xtr[ix], splits.Ytr[ix]
        with diagnostics.probe_activations(model) if want_stats else contextlib.nullcontext([]) as tanh_outputs:
            logits = model(Xb)  # a stats step keeps the lecture's layer.out, with retain_grad()
        loss = F.cross_entropy(logits, Yb)
        for p in parameters:
            p.grad = None
        loss.backward()
        writer.add_scalar("loss", loss.item(), i)
        if want_stats:
            for k, out in enumerate(tanh_outputs, 1):
                writer.add_histogram(f"act/tanh{k}", out, i)
                writer.add_histogram(f"grad/tanh{k}", out.grad, i)
                writer.add_scalar(f"saturation/tanh{k}", (out.abs() > diagnostics.SATURATION).float().mean().item() * 100, i)
                writer.add_scalar(f"act_std/tanh{k}", out.std().item(), i)
            for name, w in zip(diagnostics.weight_names(model), weights):
                writer.add_histogram(f"weight_grad/{name}", w.grad, i)
                writer.add_scalar(f"grad_to_data/{name}", (w.grad.std() / w.data.std()).item(), i)
            for k, bn in enumerate(bns, 1):
                writer.add_scalar(f"running_mean/batchnorm{k}", bn.running_mean.mean().item(), i)
                writer.add_scalar(f"running_var/batchnorm{k}", bn.running_var.mean().item(), i)
        for p in parameters:
            p.data += -config.lr * p.grad
        if i % config.update_every == 0:
            for name, w in zip(diagnostics.weight_names(model), weights):
                writer.add_scalar(f"update_to_data/{name}", ((config.lr * w.grad).std() / w.data.std()).log10().item(), i)
        if i % config.dev_every == 0:
            model.eval()
            with torch.no_grad():
                writer.add_scalar("dev_loss", F.cross_entropy(model(splits.Xdev), splits.Ydev).item(), i)
            model.train()
        i += 1

    return step


class TrainerWindow:
    """A Trainer running in its own thread, paused between measuring windows."""

    def __init__(self, config: RunConfig, splits: Splits):
        self.trainer = Trainer(config.model_copy(update={"steps": 10_000_000}), splits, emit=self._on_event, device=CPU)
        self.trainer.pause()  # paused before its first step
        self._controls: list[tuple[str, int, float]] = []
        self._changed = threading.Condition()
        self.thread = threading.Thread(target=self.trainer.run, daemon=True)
        self.thread.start()
        self._wait_for("pause")

    def _on_event(self, event: dict) -> None:
        if event["type"] == "control":
            with self._changed:
                self._controls.append((event["action"], event["step"], time.perf_counter()))
                self._changed.notify_all()

    def _wait_for(self, action: str) -> tuple[int, float]:
        with self._changed:
            self._changed.wait_for(lambda: self._controls and self._controls[-1][0] == action)
            _, step, at = self._controls[-1]
        return step, at

    def run_for(self, seconds: float) -> tuple[int, float]:
        """(steps, seconds) of one window, timed between the trainer's own resume and pause."""
        self.trainer.resume()
        step0, t0 = self._wait_for("resume")
        time.sleep(seconds)
        self.trainer.pause()
        step1, t1 = self._wait_for("pause")
        return step1 - step0, t1 - t0

    def close(self) -> None:
        self.trainer.stop()
        self.thread.join()


def _looped(step: Callable[[], None]) -> Callable[[float], tuple[int, float]]:
    def run_for(seconds: float) -> tuple[int, float]:
        steps, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            step()
            steps += 1
        return steps, time.perf_counter() - t0

    return run_for


def measure(rounds: int = 7, window: float = 2.0, warmup: float = 1.0) -> list[dict]:
    """One dict per variant: name, steps_per_s (median, min, max over the rounds) and ratio to the
    bare loop's steps/s of the same round (median, min, max)."""
    torch.set_num_threads(1)  # the network is tiny: one thread is the fastest
    base = RunConfig()
    splits = make_splits(read_names(), base.block_size)
    quiet = dict(stats_every=NEVER, update_every=NEVER, dev_every=NEVER)
    trainer_configs = {
        "trainer, no diagnostics": base.model_copy(update=quiet),
        "trainer, update:data every step": base.model_copy(update={**quiet, "update_every": 1}),
        f"trainer, default cadences (stats {base.stats_every}, update:data {base.update_every}, dev {base.dev_every})": base,
        "trainer, all statistics every step (no dev)": base.model_copy(update={**quiet, "stats_every": 1, "update_every": 1}),
    }
    with tempfile.TemporaryDirectory() as logdir:
        trainers = {name: TrainerWindow(config, splits) for name, config in trainer_configs.items()}
        variants = {
            "bare loop (lecture, torch.nn + autograd)": _looped(bare_loop(base, splits)),
            "fast step (bnscope.models.fused)": _looped(fast_step(base, splits)),
            **{name: t.run_for for name, t in trainers.items()},
            "bare loop + TensorBoard, default cadences": _looped(tensorboard_loop(base, splits, logdir)),
        }
        for run_for in variants.values():
            run_for(warmup)
        rates: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(rounds):
            for name, run_for in variants.items():
                steps, seconds = run_for(window)
                rates[name].append(steps / seconds)
        for t in trainers.values():
            t.close()
    bare = rates[next(iter(variants))]
    rows = []
    for name, values in rates.items():
        ratios = [v / b for v, b in zip(values, bare)]
        rows.append({
            "name": name,
            "steps_per_s": statistics.median(values), "steps_per_s_min": min(values), "steps_per_s_max": max(values),
            "ratio": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
        })  # fmt: skip
    return rows


def measure_dev_eval(repeats: int = 5) -> dict:
    """One evaluation of the full dev split (Trainer.evaluate), median seconds."""
    torch.set_num_threads(1)
    config = RunConfig()
    trainer = Trainer(config, make_splits(read_names(), config.block_size), device=CPU)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        trainer.evaluate("dev")
        times.append(time.perf_counter() - t0)
    return {"name": "dev eval", "seconds": statistics.median(times), "examples": trainer.Xdev.shape[0]}


def markdown(rows: list[dict]) -> str:
    lines = [
        "| variant | steps/s (median, min-max) | vs bare loop (median, min-max) |",
        "| --- | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['steps_per_s']:.0f} ({r['steps_per_s_min']:.0f}-{r['steps_per_s_max']:.0f}) "
            f"| {r['ratio']:.2f}x ({r['ratio_min']:.2f}-{r['ratio_max']:.2f}) |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds' smoke run: 2 rounds of 0.3 s windows")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--window", type=float, default=2.0, help="seconds each variant runs in a round")
    args = parser.parse_args()
    rounds, window, warmup = (2, 0.3, 0.2) if args.quick else (args.rounds, args.window, 1.0)
    rows = measure(rounds, window, warmup)
    print(markdown(rows))
    dev = measure_dev_eval(2 if args.quick else 5)
    no_diag = next(r for r in rows if r["name"] == "trainer, no diagnostics")["steps_per_s"]
    every = RunConfig().dev_every
    print(
        f"\ndev eval ({dev['examples']} examples): {dev['seconds'] * 1e3:.1f} ms, "
        f"{dev['seconds'] * no_diag:.0f} steps' worth of the trainer without diagnostics; "
        f"every {every} steps it adds {dev['seconds'] * no_diag / every * 100:.1f}% to a step"
    )


if __name__ == "__main__":
    main()
