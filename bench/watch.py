"""What watching costs a user's own loop: bnscope.watch next to wandb.watch and TensorBoard.

    python -m bench.watch            # ~2 minutes; --quick for a smoke run

Every variant trains the lecture's network written with torch.nn (bnscope.models.MLP, RunConfig's
defaults) with autograd and torch.optim.SGD, on names.txt, one torch thread, on the CPU, calling
loss.item() every step. They take turns in one process, a time window each (A B C ... A B C ...,
the machine's speed drifts), and each row gives steps/s (median, min-max over the rounds) and the
ratio to the unwatched loop measured in the same round (median, min-max):

  unwatched                     the loop alone
  bnscope.watch every=N         bnscope.watch(model, optimizer, every=N, data_dir=<temp dir>): a real
                                store (bnscope.sqlite3, its StoreWriter thread) in this process; run.log(loss=...) each step
  wandb.watch                   wandb.watch(model, log="all", log_freq=100) in offline mode (a temp dir),
                                wandb.log({"loss": ...}) each step (W&B commits what watch() gathered with a log call)
  TensorBoard                   SummaryWriter.add_scalar("loss") each step and, every 100 steps, add_histogram of
                                every activation output and its gradient (hooks on that step's forward only) and of
                                every weight gradient, with the saturation, grad:data and update:data scalars

Between windows each variant's background work (a sender thread, a writer) is let finish before the
next one's window starts, so no variant is charged for another's. On a machine others share, the
steps per CPU-second of this process (all its threads, the settling included) are also given
(cpu_ratio): other processes do not move them, but this process's background work counts in full
even where it ran beside the loop, and W&B's own service process is not counted at all.
`measure()` returns the rows as dicts (the shape of bench.throughput's rows, plus cpu_ratio*).
"""

import argparse
import contextlib
import os
import statistics
import tempfile
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

import bnscope
from bench.throughput import markdown
from bnscope import diagnostics
from bnscope.config import RunConfig
from bnscope.data import VOCAB_SIZE, Splits, make_splits, read_names
from bnscope.models import MLP

EVERY = 100  # the peers' cadence: wandb's log_freq, TensorBoard's histograms


class Loop:
    """The user's loop. A variant adds to it at three points: before the forward, after the backward,
    after the optimizer's step."""

    name = "unwatched (torch.nn, autograd, torch.optim.SGD)"

    def __init__(self, splits: Splits, workdir: str):
        config = RunConfig()
        self.model = MLP(vocab_size=VOCAB_SIZE, generator=torch.Generator().manual_seed(config.seed), **config.model_kwargs())
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=config.lr)
        self.X, self.Y, self.batch_size = splits.Xtr, splits.Ytr, config.batch_size
        self.g = torch.Generator().manual_seed(config.seed)
        self.step = 0
        self.workdir = workdir

    def run_for(self, seconds: float) -> tuple[int, float]:
        steps, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            self.begin()
            ix = torch.randint(0, self.X.shape[0], (self.batch_size,), generator=self.g)
            loss = F.cross_entropy(self.model(self.X[ix]), self.Y[ix])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.backward_done()
            self.optimizer.step()
            self.stepped(loss.item())
            self.step += 1
            steps += 1
        return steps, time.perf_counter() - t0

    def begin(self) -> None: ...
    def backward_done(self) -> None: ...
    def stepped(self, loss: float) -> None: ...
    def settle(self) -> None: ...  # let background work finish before another variant's window
    def close(self) -> None: ...


class Bnscope(Loop):
    def __init__(self, splits: Splits, workdir: str, every: int):
        super().__init__(splits, workdir)
        self.name = f"bnscope.watch every={every}"
        self.run = bnscope.watch(self.model, self.optimizer, every=every, data_dir=os.path.join(workdir, f"bnscope-{every}"))

    def stepped(self, loss: float) -> None:
        self.run.log(loss=loss)

    def settle(self) -> None:
        self.run.flush(timeout=60)

    def close(self) -> None:
        self.dropped = self.run.close(timeout=60)["dropped"]


class Wandb(Loop):
    name = f'wandb.watch(log="all", log_freq={EVERY}), offline'

    def __init__(self, splits: Splits, workdir: str):
        import wandb

        super().__init__(splits, workdir)
        os.environ.update(WANDB_MODE="offline", WANDB_SILENT="true")
        self.wandb = wandb
        self.wandb_run = wandb.init(project="bnscope-bench", dir=workdir, mode="offline")
        wandb.watch(self.model, log="all", log_freq=EVERY)

    def stepped(self, loss: float) -> None:
        self.wandb_run.log({"loss": loss})

    def close(self) -> None:
        self.wandb_run.finish()


class TensorBoard(Loop):
    name = f"TensorBoard histograms every {EVERY}"

    def __init__(self, splits: Splits, workdir: str):
        from torch.utils.tensorboard import SummaryWriter

        super().__init__(splits, workdir)
        self.writer = SummaryWriter(os.path.join(workdir, "tensorboard"))
        self.activations = [(name, m) for name, m in self.model.named_modules() if isinstance(m, nn.Tanh)]
        self.weights = [(name, p) for name, p in self.model.named_parameters() if p.dim() >= 2]
        self.outputs: dict[str, torch.Tensor] = {}
        self.hooks: list = []

    def begin(self) -> None:
        if self.step % EVERY == 0:  # this step's activations, with their gradients (the lecture's retain_grad)
            def keep(name):
                def hook(module, inputs, out):
                    out.retain_grad()
                    self.outputs[name] = out
                return hook

            self.hooks = [m.register_forward_hook(keep(name)) for name, m in self.activations]

    def backward_done(self) -> None:
        if self.step % EVERY:
            return
        for handle in self.hooks:
            handle.remove()
        i, w = self.step, self.writer
        for name, out in self.outputs.items():
            w.add_histogram(f"activation/{name}", out, i)
            w.add_histogram(f"activation_grad/{name}", out.grad, i)
            w.add_scalar(f"saturation/{name}", (out.abs() > diagnostics.SATURATION).float().mean().item() * 100, i)
        for name, p in self.weights:
            w.add_histogram(f"weight_grad/{name}", p.grad, i)
            w.add_scalar(f"grad_to_data/{name}", (p.grad.std() / p.data.std()).item(), i)
        self.before = [p.detach().clone() for _, p in self.weights]

    def stepped(self, loss: float) -> None:
        self.writer.add_scalar("loss", loss, self.step)
        if self.step % EVERY == 0:
            for (name, p), old in zip(self.weights, self.before):
                self.writer.add_scalar(f"update_to_data/{name}", ((p.detach() - old).std() / p.data.std()).log10().item(), self.step)
            self.outputs.clear()

    def settle(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def measure(rounds: int = 7, window: float = 2.0, warmup: float = 1.0) -> list[dict]:
    """One dict per variant: name, steps_per_s (median, min, max over the rounds) and ratio to the
    unwatched loop's steps/s in the same round (median, min, max)."""
    torch.set_num_threads(1)  # the network is tiny: one thread is the fastest
    splits = make_splits(read_names(), RunConfig().block_size)
    with tempfile.TemporaryDirectory() as workdir:
        variants: list[Loop] = [Loop(splits, workdir), *(Bnscope(splits, workdir, every) for every in (100, 10, 1))]
        for peer in (Wandb, TensorBoard):
            with contextlib.suppress(ImportError):  # a peer that is not installed is left out
                variants.append(peer(splits, workdir))
        for variant in variants:
            variant.run_for(warmup)
            variant.settle()
        rates: dict[str, list[float]] = {v.name: [] for v in variants}
        cpu_rates: dict[str, list[float]] = {v.name: [] for v in variants}
        for _ in range(rounds):
            for variant in variants:
                cpu = time.process_time()
                steps, seconds = variant.run_for(window)
                variant.settle()
                rates[variant.name].append(steps / seconds)
                cpu_rates[variant.name].append(steps / (time.process_time() - cpu))
        for variant in variants:
            variant.close()
    base, cpu_base = rates[variants[0].name], cpu_rates[variants[0].name]
    rows = []
    for name, values in rates.items():
        ratios = [v / b for v, b in zip(values, base)]
        cpu_ratios = [v / b for v, b in zip(cpu_rates[name], cpu_base)]
        rows.append({
            "name": name,
            "steps_per_s": statistics.median(values), "steps_per_s_min": min(values), "steps_per_s_max": max(values),
            "ratio": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
            "cpu_ratio": statistics.median(cpu_ratios), "cpu_ratio_min": min(cpu_ratios), "cpu_ratio_max": max(cpu_ratios),
        })  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: 2 rounds of 0.3 s windows")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--window", type=float, default=2.0, help="seconds each variant runs in a round")
    args = parser.parse_args()
    rounds, window, warmup = (2, 0.3, 0.2) if args.quick else (args.rounds, args.window, 1.0)
    rows = measure(rounds, window, warmup)
    print(markdown(rows).replace("vs bare loop", "vs unwatched"))
    print("\nsteps per CPU-second of this process, vs unwatched (median, min-max):")
    for r in rows:
        print(f"  {r['name']}: {r['cpu_ratio']:.2f}x ({r['cpu_ratio_min']:.2f}-{r['cpu_ratio_max']:.2f})")


if __name__ == "__main__":
    main()
