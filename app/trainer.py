"""One run of training, a step at a time: the lecture's loop with pause / resume / stop and a
live learning rate between steps, emitting plain-dict events to whoever listens.

Events (each a JSON-ready dict with "type" and "step"):
  status   the run's status changed: running, paused, finished, stopped, diverged, failed
  control  a user action took effect between steps (pause, resume, stop, lr)
  scalars  every step's minibatch loss since the last one, and the update:data ratios measured
           at their cadence; sent every ~0.1 s and before any other event, so order is kept
  stats    activation / gradient / BatchNorm statistics at a stats step (see diagnostics)
  eval     loss on a whole split in eval mode: dev at its cadence, train/dev/test at the end
The trainer never waits on a listener: `emit` must return at once.
"""

import copy
import math
import threading
import time
from typing import Callable

import torch
import torch.nn.functional as F

from bnscope import diagnostics
from bnscope.config import RunConfig
from bnscope.data import VOCAB_SIZE, Splits
from bnscope.models import MLP
from bnscope.models.fused import ManualBackprop

Emit = Callable[[dict], None]
FLUSH_SECONDS = 0.1  # how often the per-step losses go out: ~10 updates a second for a live chart
SNAPSHOT_SECONDS = 0.2  # how stale the weights that live samples come from may be


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Trainer:
    def __init__(self, config: RunConfig, splits: Splits, emit: Emit | None = None, device: torch.device | None = None):
        self.config = config
        self.device = device or pick_device()
        self.emit = emit or (lambda event: None)
        self.Xtr, self.Ytr = splits.Xtr.to(self.device), splits.Ytr.to(self.device)
        self.Xdev, self.Ydev = splits.Xdev.to(self.device), splits.Ydev.to(self.device)
        self.splits = splits
        # two generators: the init draws and the minibatch order, so a paired run that changes
        # the network's shape still sees exactly the same batches
        init_gen = torch.Generator().manual_seed(config.seed)
        self.batch_gen = torch.Generator().manual_seed(config.seed)
        self.model = MLP(vocab_size=VOCAB_SIZE, generator=init_gen, **config.model_kwargs()).to(self.device)
        self.backprop = ManualBackprop(self.model)  # the forward and backward pass, written out
        self.params = list(self.model.parameters())
        self.weights = diagnostics.weights(self.model)
        self.step = 0  # steps done; the next step's index
        self.base_lr = config.lr
        self.status = "created"
        self.message = ""
        self.steps_per_s = 0.0
        # held for the length of a step: readers see whole steps only. Re-entrant, so a listener
        # may take a checkpoint (state_dict) from inside an event emitted during a step
        self.lock = threading.RLock()
        self._resume = threading.Event()
        self._resume.set()
        self._stop = threading.Event()
        self._failure = ""
        self._snapshot: tuple[float, int, torch.nn.Module] | None = None  # (taken at, step, eval copy)
        self._pending_loss: list[torch.Tensor] = []
        self._pending_ud: list[tuple[int, torch.Tensor]] = []
        self._last_flush = (time.perf_counter(), 0)

    # ---- control, from any thread -----------------------------------------------------------
    @property
    def lr(self) -> float:
        return self.config.lr_at(self.step, self.base_lr)

    def pause(self) -> None:
        self._resume.clear()

    def resume(self) -> None:
        self._resume.set()

    def stop(self) -> None:
        self._stop.set()
        self._resume.set()  # wake a paused loop so it can see the stop

    def fail(self, message: str) -> None:
        """Stop between steps with status `failed` (e.g. its events can no longer be saved)."""
        self._failure = message
        self.stop()

    def set_lr(self, lr: float) -> None:
        """A new base learning rate from the next step on (the decay after lr_decay_step still applies)."""
        with self.lock:
            self.base_lr = lr
            self.emit({"type": "control", "action": "lr", "step": self.step, "lr": lr})

    # ---- the loop ---------------------------------------------------------------------------
    def run(self) -> str:
        """Train until `steps`, a stop, or divergence. Returns the final status; never raises."""
        try:
            self._set_status("running")
            while self.step < self.config.steps:
                if not self._resume.is_set():
                    self._flush()
                    self._set_status("paused")
                    self.emit({"type": "control", "action": "pause", "step": self.step})
                    self._resume.wait()
                    if not self._stop.is_set():
                        self.emit({"type": "control", "action": "resume", "step": self.step})
                        self._set_status("running")
                        self._last_flush = (time.perf_counter(), self.step)
                if self._stop.is_set():
                    self._flush()
                    if self._failure:
                        self._set_status("failed", self._failure)
                        return self.status
                    self.emit({"type": "control", "action": "stop", "step": self.step})
                    self._set_status("stopped")
                    return self.status
                with self.lock:
                    self._train_step()
                if time.perf_counter() - self._last_flush[0] >= FLUSH_SECONDS:
                    self._flush()
                if self.status == "diverged":
                    return self.status
            self._flush()
            if self.status == "diverged":
                return self.status
            self._emit_final_eval()
            self._set_status("finished")
        except Exception as err:  # one run's fault must not take down the server or other runs
            self._set_status("failed", f"{type(err).__name__}: {err}")
        return self.status

    def _train_step(self) -> None:
        cfg, i = self.config, self.step
        # minibatch construct (the generator stays on the CPU: the same batches on every device)
        ix = torch.randint(0, self.Xtr.shape[0], (cfg.batch_size,), generator=self.batch_gen).to(self.device)
        Xb, Yb = self.Xtr[ix], self.Ytr[ix]  # (B, block_size), (B,)
        # forward and backward pass: the loss, every p.grad, and every tanh output with its gradient
        loss = self.backprop(Xb, Yb)
        stats = diagnostics.collect(self.model, self.backprop.h, self.backprop.dh) if i % cfg.stats_every == 0 else None
        # update
        lr = self.lr
        with torch.no_grad():
            torch._foreach_add_(self.params, [p.grad for p in self.params], alpha=-lr)
        if i % cfg.update_every == 0:
            self._pending_ud.append((i, diagnostics.update_to_data(self.weights, lr)))
        self._pending_loss.append(loss)
        self.step = i + 1
        want_dev = i % cfg.dev_every == 0
        if stats is not None or want_dev:
            self._flush()  # the losses up to this step go first, and a divergence ends the step here
            if self.status == "diverged":
                return
        if stats is not None:
            self.emit({"type": "stats", "step": i, **stats})
        if want_dev:
            self.emit({"type": "eval", "step": i, "split": "dev", "loss": self.evaluate("dev")})

    def _flush(self) -> None:
        """Send the pending losses and ratios as one `scalars` event; stop the run at a non-finite loss."""
        if not self._pending_loss:
            return
        now = time.perf_counter()
        first = self.step - len(self._pending_loss)
        losses_t = torch.stack(self._pending_loss)
        finite = torch.isfinite(losses_t)
        diverged_at = None if bool(finite.all()) else first + int((~finite).nonzero()[0])
        losses = losses_t.nan_to_num(nan=0.0).tolist()  # non-finite values are cut off below
        ud_steps = [s for s, _ in self._pending_ud]
        ud = torch.stack([r for _, r in self._pending_ud]).tolist() if self._pending_ud else []
        # a weight whose gradient is exactly 0 (every unit saturated) has log10(0) = -inf: no value
        ud = [[v if math.isfinite(v) else None for v in row] for row in ud]
        if diverged_at is not None:
            losses = losses[: diverged_at - first]
            keep = sum(1 for s in ud_steps if s < diverged_at)
            ud_steps, ud = ud_steps[:keep], ud[:keep]
        t0, step0 = self._last_flush
        if now > t0:
            self.steps_per_s = (self.step - step0) / (now - t0)
        self._last_flush = (now, self.step)
        self._pending_loss.clear()
        self._pending_ud.clear()
        self.emit({
            "type": "scalars", "step": first, "loss": losses, "lr": self.lr,
            "ud_steps": ud_steps, "ud": ud, "steps_per_s": self.steps_per_s,
        })  # fmt: skip
        if diverged_at is not None:
            self.step = diverged_at
            self._set_status("diverged", f"loss became non-finite at step {diverged_at}")

    def _set_status(self, status: str, message: str = "") -> None:
        self.status, self.message = status, message
        self.emit({"type": "status", "step": self.step, "status": status, "message": message})

    # ---- evaluation and sampling --------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, split: str) -> float:
        """Mean loss over a whole split in eval mode (BatchNorm uses its running statistics)."""
        X, Y = self.splits.split(split)
        self.model.eval()
        try:
            return F.cross_entropy(self.model(X.to(self.device)), Y.to(self.device)).item()
        finally:
            self.model.train()

    def _emit_final_eval(self) -> None:
        for split in ("train", "dev", "test"):
            self.emit({"type": "eval", "step": self.step, "split": split, "loss": self.evaluate(split), "final": True})

    def snapshot(self) -> tuple[int, torch.nn.Module]:
        """(step, an eval-mode copy of the network at that whole step), for sampling in another
        thread. A copy is never changed afterwards; while training, a new one is taken at most
        every SNAPSHOT_SECONDS, so a burst of sample requests costs one copy, not one each."""
        with self.lock:
            taken_at, step, _ = self._snapshot or (0.0, -1, None)
            if step != self.step and time.monotonic() - taken_at >= SNAPSHOT_SECONDS:
                self._snapshot = (time.monotonic(), self.step, copy.deepcopy(self.model).eval())
            return self._snapshot[1], self._snapshot[2]

    # ---- checkpoints --------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything a resumed run needs to continue exactly as an uninterrupted one."""
        with self.lock:
            return {
                "model": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()},
                "step": self.step,
                "base_lr": self.base_lr,
                "batch_gen": self.batch_gen.get_state(),
            }

    def load_state_dict(self, state: dict) -> None:
        with self.lock:
            self.model.load_state_dict(state["model"])
            self.step = int(state["step"])
            self.base_lr = float(state["base_lr"])
            self.batch_gen.set_state(state["batch_gen"])
            self._last_flush = (time.perf_counter(), self.step)
