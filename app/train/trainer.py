"""One run of training, a step at a time: the lecture's loop, with the user's commands applied
between steps, handing events (bnscope.events) to whoever listens.

    trainer = Trainer(config, splits, emit)
    trainer.run(commands)   # until the last step, a stop, a shutdown or divergence; never raises

`commands` gives what the user asked for (pause, resume, stop, lr, checkpoint, weights, shutdown,
and fail, from the server when the run's events can no longer be saved):
`poll()` without waiting between steps, `wait()` while paused (bnscope.train.worker.CommandQueue). The
trainer makes its own checkpoints, on its own thread: every `checkpoint_every` steps and whenever
training stops, always after the events they cover. `emit` must return at once: the training hot
path never waits on a listener, and a listener never reaches back into the trainer.
"""

import io
import math
import time
from collections import deque
from typing import Callable, Protocol

import torch
import torch.nn.functional as F

from bnscope.train import diagnostics
from bnscope.config import RunConfig
from bnscope.train.data import VOCAB_SIZE, Splits
from bnscope.events import (
    Status,
    control_event,
    eval_event,
    model_event,
    scalars_event,
    stats_event,
    status_event,
)
from bnscope.models import MLP
from bnscope.models.fused import ManualBackprop

Emit = Callable[[dict], None]
FLUSH_SECONDS = 0.1  # how often the per-step losses go out: ~10 updates a second for a live chart
WARMUP_SECONDS = 1.0  # steps/s (and so the ETA) is reported only once the first steps' start-up cost is behind
EXPLODE_STEPS = 500  # a loss that stays above EXPLODE_FACTOR x ln(vocab) for this many steps has exploded
EXPLODE_FACTOR = 2.0  # a healthy run starts at ln(27) = 3.30 and only falls


class Commands(Protocol):
    def poll(self) -> list[dict]: ...  # the commands waiting now (none: an empty list)
    def wait(self) -> dict: ...  # the next command, waiting for it


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def build_model(config: RunConfig, seed_init: bool = True, generator: torch.Generator | None = None) -> MLP:
    """The run's network, built from its config in this one place. Its init is drawn from `generator`,
    by default a new one seeded with the run's seed (seed_init=False: unseeded, for weights about to be loaded)."""
    if generator is None and seed_init:
        generator = torch.Generator().manual_seed(config.seed)
    return MLP(vocab_size=VOCAB_SIZE, generator=generator, **config.model_kwargs())


def load_model(config: RunConfig, state: bytes) -> MLP:
    """A network in eval mode from `weights` or `checkpoint` bytes."""
    saved = torch.load(io.BytesIO(state), map_location="cpu", weights_only=True)
    model = build_model(config, seed_init=False)
    model.load_state_dict(saved.get("model", saved))
    return model.eval()


@torch.no_grad()
def split_loss(model: MLP, splits: Splits, split: str) -> float:
    """Mean loss over a whole split in eval mode (BatchNorm uses its running statistics)."""
    X, Y = splits.split(split)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        return F.cross_entropy(model(X.to(device)), Y.to(device)).item()
    finally:
        model.train(was_training)


class Trainer:
    def __init__(
        self,
        config: RunConfig,
        splits: Splits,
        emit: Emit | None = None,
        *,
        checkpoint_every: int = 10_000,
        device: torch.device | None = None,
    ):
        self.config = config
        self.device = device or pick_device()
        self.emit = emit or (lambda event: None)
        self.checkpoint_every = checkpoint_every
        self.splits = splits
        self.Xtr, self.Ytr = splits.Xtr.to(self.device), splits.Ytr.to(self.device)
        init_gen = torch.Generator().manual_seed(config.seed)
        self.model = build_model(config, generator=init_gen).to(self.device)
        # the minibatch order: bnscope's own ("own") draws it from a second generator of the same seed, so
        # a paired run that changes the network's shape still sees exactly the same batches; the lecture's
        # notebook draws it from the init's generator, right after the init ("lecture")
        self.batch_gen = init_gen if config.batch_order == "lecture" else torch.Generator().manual_seed(config.seed)
        self.backprop = ManualBackprop(self.model)  # the forward and backward pass, written out
        self.layers = diagnostics.lecture_layers(self.model)
        self.params = list(self.model.parameters())
        self.step = 0  # steps done: the next step's index
        self.base_lr = config.lr  # the user may change it; the decay after lr_decay_step still applies
        self.paused = False
        self.outcome: tuple[Status, str] | None = None  # how the run ends, once decided
        self._pending_loss: list[torch.Tensor] = []
        self._pending_ud: list[tuple[int, float, torch.Tensor]] = []  # (step, lr, update_moments)
        self._next_checkpoint = checkpoint_every
        self._speed = _Speedometer()
        self._recent = _RecentLoss(EXPLODE_STEPS)

    @property
    def lr(self) -> float:
        return self.config.lr_at(self.step, self.base_lr)

    # ---- the loop ---------------------------------------------------------------------------
    def run(self, commands: Commands) -> Status:
        """Train until `steps`, a stop, a shutdown or divergence. Returns the final status; never raises."""
        try:
            self.emit(model_event(self.step, self.layers.info()))
            self._set_status("running")
            self._speed.start(self.step)
            while self.step < self.config.steps and self.outcome is None:
                self._obey(commands.poll())
                while self.paused and self.outcome is None:
                    self._obey([commands.wait()])
                if self.outcome is not None:
                    break
                self._train_step()
                if self._speed.since_flush() >= FLUSH_SECONDS:
                    self._flush()
                if self.step >= self._next_checkpoint and self.outcome is None:
                    self._checkpoint()
            self._flush()
            if self.outcome is None:
                self._emit_final_eval()
                self.outcome = ("finished", "")
            self._checkpoint()
            self._set_status(*self.outcome)
        except Exception as err:  # one run's fault must not take down its worker's server or other runs
            self._set_status("failed", f"{type(err).__name__}: {err}")
        return self.outcome[0] if self.outcome else "failed"

    def _train_step(self) -> None:
        cfg, i = self.config, self.step
        # minibatch construct (the generator stays on the CPU: the same batches on every device)
        ix = torch.randint(0, self.Xtr.shape[0], (cfg.batch_size,), generator=self.batch_gen).to(self.device)
        Xb, Yb = self.Xtr[ix], self.Ytr[ix]  # (B, block_size), (B,)
        # forward and backward pass: the loss, every p.grad, and every tanh output with its gradient
        loss = self.backprop(Xb, Yb)
        # update
        lr = self.lr
        with torch.no_grad():
            torch._foreach_add_(self.params, [p.grad for p in self.params], alpha=-lr)
        # the statistics after the update, where the lecture measures them: its grad:data divides by the
        # weight's std after the step, as bnscope.watch's (taken after optimizer.step()) does
        stats = None
        if i % cfg.stats_every == 0:
            stats = diagnostics.collect(self.layers, self.backprop.h, self.backprop.dh)
        if i % cfg.update_every == 0:
            self._pending_ud.append((i, lr, diagnostics.update_moments(self.layers.params)))
        self._pending_loss.append(loss)
        self.step = i + 1
        if stats is not None or i % cfg.dev_every == 0:
            self._flush()  # the losses up to this step go first, and a divergence ends the step here
            if self.outcome is not None:
                return
            if stats is not None:
                self.emit(stats_event(i, stats))
            if i % cfg.dev_every == 0:
                self.emit(eval_event(i, "dev", self.evaluate("dev")))

    # ---- between steps: the user's commands ------------------------------------------------------
    def _obey(self, commands: list[dict]) -> None:
        if commands:
            self._flush()  # what a command changes is marked after the steps done before it
        for command in commands:
            op = command["op"]
            if op == "pause" and not self.paused:
                self.paused = True
                self.emit(control_event(self.step, "pause"))
                self._checkpoint()
                self._set_status("paused")
            elif op == "resume" and self.paused:
                self.paused = False
                self.emit(control_event(self.step, "resume"))
                self._set_status("running")
                self._speed.start(self.step)
            elif op == "stop":
                self.emit(control_event(self.step, "stop"))
                self.outcome = ("stopped", "")
            elif op == "fail":  # e.g. its events can no longer be saved
                self.outcome = ("failed", command["message"])
            elif op == "shutdown":  # the server is going away: save, and be resumed after its restart
                self.outcome = ("interrupted", command.get("message", "the server stopped; resume to continue"))
            elif op == "lr":
                self.base_lr = float(command["lr"])
                self.emit(control_event(self.step, "lr", self.base_lr))
            elif op == "checkpoint":
                self._checkpoint()
            elif op == "weights":
                self.emit({"type": "weights", "step": self.step, "state": self._save({"model": self._model_state()})})

    # ---- events ----------------------------------------------------------------------------------
    def _flush(self) -> None:
        """Send the pending losses and ratios as one `scalars` event; end the run at a non-finite or
        exploded loss."""
        if not self._pending_loss:
            return
        first = self.step - len(self._pending_loss)
        losses = torch.stack(self._pending_loss).tolist()
        ud_steps = [s for s, _, _ in self._pending_ud]
        ud = self._update_to_data() if self._pending_ud else []
        self._pending_loss.clear()
        self._pending_ud.clear()
        body, diverged_at = scalars(first, losses, ud_steps, ud)
        if diverged_at is not None:
            self.step = diverged_at
        self.emit(
            scalars_event(
                **body, lr=self.lr, steps_per_s=self._speed.flushed(self.step), ud_names=self.layers.weight_names
            )
        )
        self.outcome = divergence(diverged_at, self._recent, body["loss"], first, self.step) or self.outcome

    def _update_to_data(self) -> list[list[float]]:
        """The pending update:data rows, from their moments, all at once."""
        moments = torch.stack([m for _, _, m in self._pending_ud])  # (k, 2, 2P)
        lrs = torch.tensor([lr for _, lr, _ in self._pending_ud], device=moments.device)
        sizes = tuple(p.numel() for p in self.layers.params)
        return diagnostics.update_to_data_rows(moments, sizes, lrs).tolist()

    def _set_status(self, status: Status, message: str = "") -> None:
        self.emit(status_event(self.step, status, message))

    def _checkpoint(self) -> None:
        self._flush()  # the losses it covers go out first: a checkpoint is never ahead of the history
        self.emit({"type": "checkpoint", "step": self.step, "state": self._save(self.state_dict())})
        self._next_checkpoint = self.step + self.checkpoint_every

    # ---- evaluation ------------------------------------------------------------------------------
    def evaluate(self, split: str) -> float:
        return split_loss(self.model, self.splits, split)

    def _emit_final_eval(self) -> None:
        for split in ("train", "dev", "test"):
            self.emit(eval_event(self.step, split, self.evaluate(split), final=True))

    # ---- checkpoints ------------------------------------------------------------------------------
    def _model_state(self) -> dict:
        return {k: v.detach().cpu() for k, v in self.model.state_dict().items()}

    @staticmethod
    def _save(state: dict) -> bytes:
        buffer = io.BytesIO()
        torch.save(state, buffer)
        return buffer.getvalue()

    def state_dict(self) -> dict:
        """Everything a resumed run needs to continue exactly as an uninterrupted one (in lecture batch
        order `batch_gen` is the init's generator: its state is where the init and the batches so far left it)."""
        return {
            "model": self._model_state(),
            "step": self.step,
            "base_lr": self.base_lr,
            "batch_gen": self.batch_gen.get_state(),
        }

    def load_checkpoint(self, state: bytes) -> None:
        saved = torch.load(io.BytesIO(state), map_location="cpu", weights_only=True)
        self.model.load_state_dict(saved["model"])
        self.step = int(saved["step"])
        self.base_lr = float(saved["base_lr"])
        self.batch_gen.set_state(saved["batch_gen"])
        self._next_checkpoint = self.step + self.checkpoint_every


def scalars(first: int, losses: list[float], ud_steps: list[int], ud: list[list[float]]) -> tuple[dict, int | None]:
    """A `scalars` event's series (bnscope.events.ScalarsEvent): the losses from step `first` and the
    update:data rows, cut before the first non-finite loss; and that loss's step (None: all finite)."""
    diverged_at = next((first + i for i, loss in enumerate(losses) if not math.isfinite(loss)), None)
    if diverged_at is not None:
        losses = losses[: diverged_at - first]
        keep = sum(1 for s in ud_steps if s < diverged_at)
        ud_steps, ud = ud_steps[:keep], ud[:keep]
    # a weight whose gradient is exactly 0 (every unit saturated) has log10(0) = -inf: no value
    ud = [[v if math.isfinite(v) else None for v in row] for row in ud]
    return {"step": first, "loss": losses, "ud_steps": ud_steps, "ud": ud}, diverged_at


def divergence(diverged_at: int | None, recent: "_RecentLoss", losses: list[float], first: int, step: int):
    """How a run ends after a flush: ("diverged", why) at a non-finite or exploded loss, else None."""
    if diverged_at is not None:
        return "diverged", f"loss became non-finite at step {diverged_at}"
    if (exploded := recent.add(first, losses)) is not None:
        start, mean = exploded
        return "diverged", (
            f"loss exploded: mean {mean:.3g} over steps {start:,}-{step - 1:,}, "
            f"where a healthy run starts at ln({VOCAB_SIZE}) = {math.log(VOCAB_SIZE):.2f}"
        )
    return None


class _Speedometer:
    """Steps per second for the live view and the ETA: measured over the flushes after a warm-up
    (the first steps pay one-off costs), 0 until then; an EMA so one slow flush does not jump it."""

    def __init__(self):
        self.rate = 0.0
        self._started = self._flushed_at = time.perf_counter()
        self._step = 0

    def start(self, step: int) -> None:
        self.rate = 0.0
        self._started = self._flushed_at = time.perf_counter()
        self._step = step

    def since_flush(self) -> float:
        return time.perf_counter() - self._flushed_at

    def flushed(self, step: int) -> float:
        now = time.perf_counter()
        if now - self._started < WARMUP_SECONDS:
            self._flushed_at, self._step = now, step  # the warm-up's steps are not counted
            return 0.0
        window = (step - self._step) / (now - self._flushed_at) if now > self._flushed_at else self.rate
        self.rate = window if self.rate == 0 else 0.7 * self.rate + 0.3 * window
        self._flushed_at, self._step = now, step
        return self.rate


class _RecentLoss:
    """The mean loss over the last `span` steps (at flush granularity), to tell a run whose loss
    exploded: it stays well above where any healthy run starts (ln(vocab)) for the whole span."""

    def __init__(self, span: int):
        self.span = span
        self.windows: deque[tuple[int, int, float]] = deque()  # (first step, count, sum)
        self.count, self.total = 0, 0.0
        self.limit = EXPLODE_FACTOR * math.log(VOCAB_SIZE)

    def add(self, first: int, losses: list[float]) -> tuple[int, float] | None:
        """Fold in a flush's losses; (first step of the span, its mean loss) if the loss exploded."""
        if not losses:
            return None
        self.windows.append((first, len(losses), sum(losses)))
        self.count += len(losses)
        self.total += self.windows[-1][2]
        while self.count - self.windows[0][1] >= self.span:
            _, n, s = self.windows.popleft()
            self.count, self.total = self.count - n, self.total - s
        if self.count >= self.span and self.total / self.count > self.limit:
            return self.windows[0][0], self.total / self.count
        return None
