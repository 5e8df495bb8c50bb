"""What watching costs a user's own loop: bnscope.watch next to wandb.watch and TensorBoard.

    python -m bench --only watch        # or: python -m bench.watch [--quick]

Two networks, each with its own variants: the lecture's, written with torch.nn (bnscope.models.MLP,
RunConfig's defaults), trained with torch.optim.SGD on names.txt; and a small user MLP (20 -> 64 -> 64
-> 5, ReLU, AdamW, batch 64, a random teacher's labels), where bnscope's watch() and close() (the
recording process's start and end) fall inside every window. Autograd, one torch thread, on the CPU,
loss.item() every step. They all train one and the same network, optimizer and minibatch stream in
turn (five copies of the unwatched loop differ by up to 5% for where their tensors lie in memory,
more than the cost measured here). A variant attaches before its window and detaches after it,
untimed (what a user does once, before and after training); each window is exactly `steps` steps
(2,000 in a full run: a multiple of every cadence, so every window holds the same samples), timed
until what it logged is delivered (bnscope: run.flush(), the store written; TensorBoard: the
writer's flush), the variants taking turns A B C ..., A B C ... after a warm-up round. Ratios are
taken round by round against the unwatched loop:

  unwatched                     the loop alone
  bnscope.watch every=N         bnscope.watch(model, optimizer, every=N, data_dir=<temp dir>): a real
                                store (bnscope.sqlite3), written by watch()'s recording process (a child
                                of this one, as for any user); run.log(loss=...) each step; a run a window
                                (watch() before it, close() after), timed until the store has it all
  wandb.watch                   wandb.watch(model, log="all", log_freq=100) in offline mode (a temp dir; unwatch() after a window),
                                wandb.log({"loss": ...}) each step (W&B commits what watch() gathered with a log call);
                                its own service process does the writing: not waited for, not counted
  TensorBoard                   SummaryWriter.add_scalar("loss") each step and, every 100 steps, add_histogram of
                                every activation output and its gradient (hooks on that step's forward only) and of
                                every weight gradient, with the saturation, grad:data and update:data scalars

On a machine others share, steps per CPU-second are given too (cpu_ratios): of this process (all its
threads) and of bnscope's recording process, its child; other processes do not move them, but the
background work counts in full even where it ran beside the loop (and W&B's service process not at all).
"""

import argparse
import contextlib
import os
import tempfile
import time

import psutil
import torch
import torch.nn as nn
import torch.nn.functional as F

import bnscope
from bench import report
from bench.common import interleaved, ratios, spread
from bnscope.train import diagnostics
from bnscope.config import RunConfig
from bnscope.train.data import VOCAB_SIZE, Splits, make_splits, read_names
from bnscope.models import MLP

TITLE = "watch(): a user's own loop watched, against wandb.watch and TensorBoard"
EVERY = 100  # the peers' cadence: wandb's log_freq, TensorBoard's histograms
TARGET = 0.95  # bnscope.watch every=100 against the unwatched loop, on the lecture's network
TARGET_SMALL = 0.9  # and on the small MLP, the recording process's start included


class Network:
    """The one network, optimizer and minibatch stream that every variant trains in turn: the lecture's
    (RunConfig's defaults, SGD, names.txt), or a small user MLP (20 -> 64 -> 64 -> 5, ReLU, AdamW, batch
    64, on a fixed random teacher's labels)."""

    def __init__(self, splits: Splits | None):
        if splits is not None:
            config = RunConfig()
            self.model = MLP(
                vocab_size=VOCAB_SIZE, generator=torch.Generator().manual_seed(config.seed), **config.model_kwargs()
            )
            self.optimizer = torch.optim.SGD(self.model.parameters(), lr=config.lr)
            self.X, self.Y, self.batch_size = splits.Xtr, splits.Ytr, config.batch_size
            self.activation = nn.Tanh
        else:
            g = torch.Generator().manual_seed(0)
            torch.manual_seed(0)
            self.model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 5))
            self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-3)
            self.X = torch.randn(20_000, 20, generator=g)
            self.Y = (self.X @ torch.randn(20, 5, generator=g)).argmax(1)
            self.batch_size, self.activation = 64, nn.ReLU
        self.g = torch.Generator().manual_seed(2147483647)

    def hooked(self) -> bool:
        return any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks for m in self.model.modules()) or bool(
            self.optimizer._optimizer_step_pre_hooks or self.optimizer._optimizer_step_post_hooks
        )


class Loop:
    """The user's loop. A variant adds to it at three points: before the forward, after the backward,
    after the optimizer's step; and attaches before a window, detaches after it."""

    key, name = "unwatched", "unwatched (torch.nn, autograd, the network's torch.optim optimizer)"

    def __init__(self, net: Network, workdir: str):
        self.net = net
        self.model, self.optimizer = net.model, net.optimizer
        self.step = 0
        self.workdir = workdir
        self.cpu: list[float] = []  # steps per CPU-second of the process, a window each

    def window(self, steps: int) -> tuple[int, float]:
        """`steps` steps, timed until what they logged is delivered: (steps, seconds); the CPU seconds
        of the process over the same span go to self.cpu."""
        net = self.net
        self.attach()
        t0, cpu0 = time.perf_counter(), time.process_time() + self.helper_cpu()
        for self.step_in_window in range(steps):
            self.begin()
            ix = torch.randint(0, net.X.shape[0], (net.batch_size,), generator=net.g)
            loss = F.cross_entropy(self.model(net.X[ix]), net.Y[ix])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.backward_done()
            self.optimizer.step()
            self.stepped(loss.item())
            self.step += 1
        self.settle()
        seconds, cpu = time.perf_counter() - t0, time.process_time() + self.helper_cpu() - cpu0
        self.detach()
        self.cpu.append(steps / cpu)
        return steps, seconds

    def attach(self) -> None:
        assert not self.net.hooked(), "a variant left its hooks on the network"

    def helper_cpu(self) -> float:
        return 0.0  # CPU seconds of the variant's own helper processes so far

    def detach(self) -> None: ...
    def begin(self) -> None: ...
    def backward_done(self) -> None: ...
    def stepped(self, loss: float) -> None: ...
    def settle(self) -> None: ...  # wait until what was logged is delivered
    def close(self) -> None: ...


class Bnscope(Loop):
    """`timed_start`: watch() (which starts the recording process) inside the window, and close() too."""

    def __init__(self, net: Network, workdir: str, every: int, timed_start: bool = False):
        super().__init__(net, workdir)
        self.key, self.name, self.every = f"watch_{every}", f"bnscope.watch every={every}", every
        self.timed_start = timed_start
        if timed_start:
            self.name += ", watch() and close() in the window"
        self.dropped = 0

    def attach(self) -> None:
        super().attach()
        if not self.timed_start:
            self._watch()
            self.run.flush(timeout=60)  # the store open, the run recorded: what happens once, before training

    def begin(self) -> None:
        if self.timed_start and self.step_in_window == 0:
            self._watch()

    def _watch(self) -> None:
        self.run = bnscope.watch(
            self.model, self.optimizer, every=self.every, data_dir=os.path.join(self.workdir, f"bnscope-{self.every}")
        )

    def stepped(self, loss: float) -> None:
        self.run.log(loss=loss)

    def settle(self) -> None:
        if self.timed_start:
            self.run.flush(timeout=60)  # the recording process has started and written everything but the end
            self.helper_seconds = self._recorder_cpu()
            self.dropped += self.run.close(timeout=60)["dropped"]
        else:
            self.run.flush(timeout=60)

    def helper_cpu(self) -> float:
        return getattr(self, "helper_seconds", 0.0) if self.timed_start else self._recorder_cpu()

    def _recorder_cpu(self) -> float:
        times = psutil.Process(self.run._sender.sink._child.pid).cpu_times()  # the recording process
        return times.user + times.system

    def detach(self) -> None:
        if self.timed_start:
            self.helper_seconds = 0.0
        else:
            self.dropped += self.run.close(timeout=60)["dropped"]


class Wandb(Loop):
    key, name = "wandb", f'wandb.watch(log="all", log_freq={EVERY}), offline'

    def __init__(self, net: Network, workdir: str):
        import wandb

        super().__init__(net, workdir)
        os.environ.update(WANDB_MODE="offline", WANDB_SILENT="true")
        self.wandb = wandb
        self.wandb_run = wandb.init(project="bnscope-bench", dir=workdir, mode="offline")

    def attach(self) -> None:
        super().attach()
        self.wandb_run.watch(self.model, log="all", log_freq=EVERY)

    def detach(self) -> None:
        self.wandb_run.unwatch(self.model)

    def stepped(self, loss: float) -> None:
        self.wandb_run.log({"loss": loss})

    def close(self) -> None:
        self.wandb_run.finish()


class TensorBoard(Loop):
    key, name = "tensorboard", f"TensorBoard histograms every {EVERY}"

    def __init__(self, net: Network, workdir: str):
        from torch.utils.tensorboard import SummaryWriter

        super().__init__(net, workdir)
        self.writer = SummaryWriter(os.path.join(workdir, "tensorboard"))
        self.activations = [(name, m) for name, m in self.model.named_modules() if isinstance(m, net.activation)]
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
                self.writer.add_scalar(
                    f"update_to_data/{name}", ((p.detach() - old).std() / p.data.std()).log10().item(), self.step
                )
            self.outputs.clear()

    def settle(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def _compare(net: Network, variants: list[Loop], steps: int, rounds: int, log) -> dict:
    try:
        rates = interleaved({v.key: (lambda v=v: v.window(steps)) for v in variants}, rounds, log=log)
    finally:
        for variant in variants:
            variant.close()
    cpu = {v.key: v.cpu[-rounds:] for v in variants}  # the warm-up round's dropped, as interleaved drops it
    return {
        "steps_per_window": steps,
        "rounds": rounds,
        "labels": {v.key: v.name for v in variants},
        "steps_per_s": {key: spread(values) for key, values in rates.items()},
        "ratios": {key: ratios(values, rates["unwatched"]) for key, values in rates.items()},
        "cpu_ratios": {key: ratios(values, cpu["unwatched"]) for key, values in cpu.items()},
        "dropped": {v.key: v.dropped for v in variants if isinstance(v, Bnscope)},
    }


def _peers(net: Network, workdir: str) -> list[Loop]:
    peers = []
    for peer in (Wandb, TensorBoard):
        with contextlib.suppress(ImportError):  # a peer that is not installed is left out
            peers.append(peer(net, workdir))
    return peers


def measure(quick: bool = False, log=print) -> dict:
    """Per network: steps/s of each variant (median, min, max over the rounds), its ratio to the unwatched
    loop round by round, and the same ratio in steps per CPU-second of the process."""
    torch.set_num_threads(1)  # the networks are tiny: one thread is the fastest
    steps, rounds = (100, 1) if quick else (2000, 7)
    splits = make_splits(read_names(), RunConfig().block_size)
    out = {}
    with tempfile.TemporaryDirectory(prefix="bnscope-bench-watch-") as workdir:
        net = Network(splits)
        variants = [
            Loop(net, workdir),
            *(Bnscope(net, workdir, every) for every in (100, 10, 1)),
            *_peers(net, workdir),
        ]
        out["lecture"] = _compare(net, variants, steps, rounds, log)
        small = Network(None)
        variants = [Loop(small, workdir), Bnscope(small, workdir, 100, timed_start=True), *_peers(small, workdir)]
        out["small"] = _compare(small, variants, steps, 1 if quick else 2 * rounds - 1, log)
    return out


def markdown(r: dict) -> str:
    parts = []
    for key, title, target in (
        ("lecture", "The lecture's network (RunConfig's defaults), SGD", TARGET),
        (
            "small",
            "A small user MLP (20 → 64 → 64 → 5, ReLU), AdamW, batch 64; bnscope's "
            "watch() and close() inside each window",
            TARGET_SMALL,
        ),
    ):
        n = r[key]
        rows = [
            [label, report.rate(n["steps_per_s"][k]), report.x(n["ratios"][k]), report.x(n["cpu_ratios"][k])]
            for k, label in n["labels"].items()
        ]
        met = n["ratios"]["watch_100"]["median"]
        parts.append(
            f"**{title}.** Windows of {n['steps_per_window']:,} steps each, {report.rounds(n['rounds'])} after a "
            "warm-up round; bnscope records into a real store in a temporary data directory.\n\n"
            + report.table(
                [
                    "variant",
                    "steps/s, median (min–max)",
                    "vs unwatched (round by round)",
                    "vs unwatched, steps per CPU-second",
                ],
                rows,
            )
            + f"\n\nTarget: bnscope.watch every=100 ≥ {target:g}× the unwatched loop: {met:.2f}× "
            f"({'met' if met >= target else '**missed**'}). Events bnscope dropped: {sum(n['dropped'].values())}."
        )
    return "\n\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: one round of 100-step windows")
    args = parser.parse_args()
    print(markdown(measure(args.quick)))


if __name__ == "__main__":
    main()
