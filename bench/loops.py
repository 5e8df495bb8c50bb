"""Training loops for the peer comparisons, one step a call, on the default network:

  autograd_step   the lecture's loop through torch.nn and autograd: model(Xb), F.cross_entropy,
                  loss.backward(), p.data += -lr * p.grad
  fused_step      what bnscope's trainer runs: bnscope.models.fused.ManualBackprop (the backward
                  written out) and one _foreach_add_ update
  TensorBoardLog  SummaryWriter logging what bnscope records at bnscope's cadences, the usual way:
                  every step's loss; at each stats step add_histogram of every tanh output, its
                  gradient and every weight's gradient, and the same scalars as bnscope's series
                  (saturation, dead, act_mean, act_std, grad_std per tanh; grad_to_data per weight;
                  running_mean, running_var, norm_gain per BatchNorm; lr), each with .item();
                  update:data per weight at its cadence; the dev loss at its cadence.
                  Not logged: bnscope's |t| > 0.99 image and BatchNorm running vectors (no peer).

A step with a logger hands it the loss, every tanh output and its gradient: the fused step keeps
them (ManualBackprop.h, .dh); the autograd step keeps them at a stats step only, with the hooks of
bnscope.train.diagnostics.probe (the lecture's retain_grad()).
"""

import tempfile
import time
from typing import Callable

import torch
import torch.nn.functional as F

from bnscope.train import diagnostics
from bnscope.config import RunConfig
from bnscope.train.data import Splits
from bnscope.models.fused import ManualBackprop
from bnscope.train.trainer import build_model, split_loss

Step = Callable[[], None]


class TensorBoardLog:
    def __init__(self, config: RunConfig, splits: Splits, model, layers: diagnostics.Layers):
        from torch.utils.tensorboard import SummaryWriter

        self.logdir = tempfile.TemporaryDirectory(prefix="bnscope-bench-tb-")
        self.writer = SummaryWriter(self.logdir.name)
        self.config, self.splits, self.model, self.layers = config, splits, model, layers
        self.tanhs = [name for name, _, _ in layers.activations]
        self.bns = [(name, module) for name, _, module in layers.norms]

    def wants_stats(self, i: int) -> bool:
        return i % self.config.stats_every == 0

    def log(
        self, i: int, loss: torch.Tensor, outputs: list[torch.Tensor], grads: list[torch.Tensor], lr: float
    ) -> None:
        """Before the update: the step's loss and, at a stats step, its statistics."""
        w = self.writer
        w.add_scalar("loss", loss.item(), i)
        if not self.wants_stats(i):
            return
        w.add_scalar("lr", lr, i)
        for name, h, dh in zip(self.tanhs, outputs, grads):
            w.add_histogram(f"act/{name}", h, i)
            w.add_histogram(f"act_grad/{name}", dh, i)
            w.add_scalar(f"saturation/{name}", (h.abs() > diagnostics.SATURATION).float().mean().item() * 100, i)
            w.add_scalar(f"dead/{name}", (h.abs() > diagnostics.DEAD).all(0).sum().item(), i)
            w.add_scalar(f"act_mean/{name}", h.mean().item(), i)
            w.add_scalar(f"act_std/{name}", h.std().item(), i)
            w.add_scalar(f"grad_std/{name}", dh.std().item(), i)
        for name, _, p in self.layers.weights:
            w.add_histogram(f"weight_grad/{name}", p.grad, i)
            w.add_scalar(f"grad_to_data/{name}", (p.grad.std() / p.data.std()).item(), i)
        for name, bn in self.bns:
            w.add_scalar(f"running_mean/{name}", bn.running_mean.mean().item(), i)
            w.add_scalar(f"running_var/{name}", bn.running_var.mean().item(), i)
            w.add_scalar(f"norm_gain/{name}", bn.weight.mean().item(), i)

    def after_update(self, i: int, lr: float) -> None:
        if i % self.config.update_every == 0:
            for name, _, p in self.layers.weights:
                self.writer.add_scalar(f"update_to_data/{name}", ((lr * p.grad).std() / p.data.std()).log10().item(), i)
        if i % self.config.dev_every == 0:
            self.writer.add_scalar("dev_loss", split_loss(self.model, self.splits, "dev"), i)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
        self.logdir.cleanup()


def _batches(config: RunConfig, splits: Splits):
    g = torch.Generator().manual_seed(config.seed)  # the trainer's minibatch order
    while True:
        ix = torch.randint(0, splits.Xtr.shape[0], (config.batch_size,), generator=g)
        yield splits.Xtr[ix], splits.Ytr[ix]


def autograd_step(config: RunConfig, splits: Splits, tensorboard: bool = False) -> tuple[Step, TensorBoardLog | None]:
    model = build_model(config)
    parameters = list(model.parameters())
    layers = diagnostics.lecture_layers(model)
    tb = TensorBoardLog(config, splits, model, layers) if tensorboard else None
    batches, i = _batches(config, splits), 0

    def step() -> None:
        nonlocal i
        Xb, Yb = next(batches)
        lr = config.lr_at(i)
        if tb is not None and tb.wants_stats(i):
            with diagnostics.probe(layers) as kept:  # the lecture's layer.out.retain_grad()
                loss = F.cross_entropy(model(Xb), Yb)
                for p in parameters:
                    p.grad = None
                loss.backward()
            tb.log(i, loss.detach(), kept.outputs, kept.grads, lr)
        else:
            loss = F.cross_entropy(model(Xb), Yb)
            for p in parameters:
                p.grad = None
            loss.backward()
            if tb is not None:
                tb.log(i, loss.detach(), [], [], lr)
        for p in parameters:
            p.data += -lr * p.grad
        if tb is not None:
            tb.after_update(i, lr)
        i += 1

    return step, tb


def fused_step(config: RunConfig, splits: Splits, tensorboard: bool = False) -> tuple[Step, TensorBoardLog | None]:
    model = build_model(config)
    parameters = list(model.parameters())
    backprop = ManualBackprop(model)
    tb = TensorBoardLog(config, splits, model, diagnostics.lecture_layers(model)) if tensorboard else None
    batches, i = _batches(config, splits), 0

    def step() -> None:
        nonlocal i
        Xb, Yb = next(batches)
        lr = config.lr_at(i)
        loss = backprop(Xb, Yb)
        if tb is not None:
            tb.log(i, loss, backprop.h, backprop.dh, lr)
        with torch.no_grad():
            torch._foreach_add_(parameters, [p.grad for p in parameters], alpha=-lr)
        if tb is not None:
            tb.after_update(i, lr)
        i += 1

    return step, tb


def steps_window(step: Step, tb: TensorBoardLog | None, steps: int) -> Callable[[], tuple[int, float]]:
    """A window of exactly `steps` steps, timed up to the logger's flush to disk: (steps, seconds)."""

    def window() -> tuple[int, float]:
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        if tb is not None:
            tb.flush()
        return steps, time.perf_counter() - t0

    return window
