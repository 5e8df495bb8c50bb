"""bnscope.watch(model): your own network's insides, live on the dashboard, from your own loop.

    import bnscope
    run = bnscope.watch(model, optimizer, every=100, server="http://127.0.0.1:8000")
    for x, y in batches:                     # your loop, unchanged
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(); loss.backward(); optimizer.step()
        run.log(loss=loss.item())            # optional: values for the step
    run.close()                              # or: with bnscope.watch(...) as run:

What a step is: with an optimizer, one `optimizer.step()` (its step hooks count them), so
evaluation forwards and gradient accumulation never shift the count. Without one, one backward
pass through the model. Every `every` steps (step 0 first) the step is sampled: its forward is
probed (the activations' outputs, and their gradients through tensor hooks), and after the
optimizer's step the statistics (bnscope.train.diagnostics.collect) and update:data (the change the step
made to each weight, whatever the optimizer) leave in one device-to-host copy. Between samples
there are no hooks on the layers: a pre-hook on the model and the optimizer's step hooks do a few
Python operations a step.

The events are those of a bnscope run (bnscope.events): `model` at the start, `stats` at every
sample, `scalars` with the losses run.log was given for consecutive steps (about every 0.1 s, as
the trainer sends its own) and update:data, `metrics` for run.log's other values, `status`
finished at close. A background thread hands them (bnscope.watched.sender) to a recording process
(bnscope.watched.process) that sends them to a server or writes them into a data directory's store.
Few events matter all the same: the thread's pickling still takes the GIL from the loop.

torch.compile (tested on a CPU, torch 2.13, backends aot_eager and inductor): watch() before or after
compile() gives the eager run's statistics (the compiled module's own names, without `_orig_mod.`); the
hooks cost one recompile when they first appear. fullgraph=True refuses the sampled step's tensor hooks
("Unsafe side effect"): compile without it. A CUDA model's statistics are computed on the device, with
one copy to the host a sampled step (not tested on a GPU here).
"""

import atexit
import logging
import math
import time
import warnings
from pathlib import Path

import torch
import torch.nn as nn

from bnscope.events import model_event, scalars_event, stats_event
from bnscope.train import diagnostics
from bnscope.watched.process import ProcessSink
from bnscope.watched.sender import CLOSE_SECONDS, HttpSink, Sender, StoreSink

log = logging.getLogger("bnscope.watch")
SCALARS_SECONDS = 0.1  # how often the logged losses go out: ~10 updates a second for a live chart


def watch(
    model: "nn.Module | list",
    optimizer: torch.optim.Optimizer | None = None,
    *,
    every: int = 100,
    name: str | None = None,
    server: str | None = None,
    data_dir: str | Path | None = None,
    weights: dict[str, torch.Tensor] | None = None,
) -> "WatchedRun":
    """Watch `model` train: every `every` steps its activations, gradients, weights, update:data
    and BatchNorm statistics go to a running `bnscope serve` at `server` (a URL; the token from
    BNSCOPE_TOKEN), or, without a server, into `data_dir` (default ~/.bnscope) for a later
    `bnscope serve --data-dir`. Returns the run: `run.log(name=value, ...)`, `run.close()`.

    `model` may also be the lecture's list of hand-written layers (each keeping its output in `.out`,
    with `.parameters()`), trained by hand with no optimizer; `weights` names tensors outside the layers
    (the lecture's {"C": C}); see bnscope.watched.layers."""
    lecture = _check(model, optimizer, every, server, data_dir, weights)
    module = model if lecture else getattr(model, "_orig_mod", model)  # a torch.compile'd model: its own module's names
    params = list(weights.values()) if weights else []
    params += [p for layer in model for p in layer.parameters()] if lecture else list(module.parameters())
    kind = "layers" if lecture else type(module).__name__
    name = name or kind
    description = {
        "model": kind,
        "parameters": sum(p.numel() for p in params),
        "optimizer": type(optimizer).__name__ if optimizer is not None else None,
        "every": every,
        "device": str(params[0].device) if params else "cpu",
        "torch": str(
            torch.__version__
        ),  # a str: torch's own TorchVersion would make the recording process import torch
    }
    sink = _store_sink(data_dir, name, description) if server is None else HttpSink(server, name, description)
    if lecture:
        from bnscope.watched.layers import WatchedLayers

        return WatchedLayers(list(model), dict(weights or {}), every, Sender(ProcessSink(sink)))
    return WatchedRun(module, optimizer, every, Sender(ProcessSink(sink)))


def _check(model, optimizer, every, server, data_dir, weights) -> bool:
    """watch()'s arguments, refused with a TypeError or ValueError that says why; whether `model` is
    the lecture's list of layers."""
    lecture = isinstance(model, (list, tuple))
    if lecture:
        if (
            optimizer is not None
            or not model
            or not all(callable(getattr(layer, "parameters", None)) for layer in model)
        ):
            raise TypeError(
                "watch() takes an nn.Module, or a list of layers that each have .parameters() (no optimizer)"
            )
    elif not isinstance(model, nn.Module):
        raise TypeError(f"watch() takes an nn.Module or a list of layers, not {type(model).__name__}")
    elif weights is not None:
        raise TypeError("weights= names tensors outside a list of layers; an nn.Module's are its own")
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"every must be a whole number of steps >= 1, not {every!r}")
    if server is not None and data_dir is not None:
        raise ValueError("give server (stream to a running bnscope serve) or data_dir (record for later), not both")
    return lecture


def _store_sink(data_dir, name, description) -> StoreSink:
    if data_dir is None:
        from bnscope.config import Settings  # the server's own default data directory (pydantic: only here)

        data_dir = Settings.model_fields["data_dir"].default
    return StoreSink(data_dir, name, description)


class WatchedRun:
    """A watched model's run. `steps`: steps done. `log()` and `close()` never raise and never wait
    for the network; what could not be sent is reported by close()."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None,
        every: int,
        sender: Sender,
        layers: diagnostics.Layers | None = None,
    ):
        self.model, self.optimizer, self.every = model, optimizer, every
        self.layers = layers if layers is not None else diagnostics.find_layers(model)
        self.steps = 0
        self.summary: dict | None = None  # close()'s answer
        self._sender = sender
        self._forwarded = False  # a training forward since the last step: run.log's values belong to it
        self._probe: diagnostics.Probe | None = None
        self._before: list[torch.Tensor] | None = None  # the weights before a sampled optimizer step
        self._losses: list[float | None] = []  # run.log's losses for consecutive steps, from step _losses_from
        self._losses_from = 0
        self._sent_at = (0, time.perf_counter())  # (step, time) of the last scalars event: steps/s
        self._failures = 0
        self._emit(model_event(0, self.layers.info()))
        self._hooks = self._attach()
        atexit.register(self._at_exit)

    def _attach(self) -> list:
        """The hooks that count steps and probe the sampled ones; the first sample armed."""
        hooks = [self.model.register_forward_pre_hook(self._forward_begins)]
        if self.optimizer is not None:
            hooks += [
                self.optimizer.register_step_pre_hook(self._step_begins),
                self.optimizer.register_step_post_hook(self._step_ends),
            ]
        else:
            hooks.append(self.model.register_forward_hook(self._forward_ends))
        self._arm()
        return hooks

    # ---- the user's calls ---------------------------------------------------------------------------
    def log(self, **values: float) -> None:
        """Values for the step in progress (after a training forward), else for the step just taken:
        `run.log(loss=loss.item(), acc=acc)`. `loss` is drawn as the run's loss curve; the others as
        metric/<name>. (A tensor is turned into a number here: on a GPU that waits for it.)"""
        try:
            at = self.steps if self._forwarded else max(self.steps - 1, 0)
            numbers = {key: _number(v) for key, v in values.items()}
            if "loss" in numbers:
                loss, following = numbers.pop("loss"), self._losses_from + len(self._losses)
                if self._losses and at == following - 1:
                    self._losses[-1] = loss  # the same step again: its last loss stands, as in the store
                else:
                    if self._losses and at != following:
                        self._send_scalars()  # not the next step: a new run of losses
                    if not self._losses:
                        self._losses_from = at
                    self._losses.append(loss)
                if time.perf_counter() - self._sent_at[1] >= SCALARS_SECONDS:
                    self._send_scalars()
            if numbers:
                self._emit({"type": "metrics", "step": at, "values": numbers})
        except Exception as err:  # noqa: BLE001 - a logging slip must not end the user's training
            log.warning("bnscope.watch: run.log() skipped: %s: %s", type(err).__name__, err)

    def flush(self, timeout: float = CLOSE_SECONDS) -> bool:
        """Wait until what the run reported so far is on the server (or in the store); False when it is
        not after `timeout` seconds. Training never needs this: for a notebook cell, or a benchmark."""
        self._send_scalars()
        return self._sender.flush(timeout)

    def close(self, status: str = "finished", message: str = "", *, timeout: float = CLOSE_SECONDS) -> dict:
        """Take the hooks off, mark the run `status` (finished, stopped, failed), and send what is
        queued, waiting up to `timeout` seconds. Returns {"sent", "dropped", "dropped_why"} (events);
        a warning says when some were dropped."""
        if self.summary is not None:
            return self.summary
        for handle in self._hooks:
            handle.remove()
        if self._probe is not None:
            self._probe.close()
            self._probe = None
        atexit.unregister(self._at_exit)
        self._send_scalars()
        self._emit({"type": "status", "step": self.steps, "status": status, "message": message[:1000]})
        self.summary = self._sender.close(timeout)
        if self.summary["dropped"]:
            why = "; ".join(f"{n} {reason}" for reason, n in self.summary["dropped_why"].items())
            warnings.warn(
                f"bnscope.watch: {self.summary['dropped']} of the run's events were not recorded ({why})", stacklevel=2
            )
        return self.summary

    def __enter__(self) -> "WatchedRun":
        return self

    def __exit__(self, kind, err, tb) -> bool:
        if err is None:
            self.close()
        elif isinstance(err, KeyboardInterrupt):
            self.close("stopped", "interrupted (Ctrl-C)")
        else:
            self.close("failed", f"{kind.__name__}: {err}")
        return False

    def _at_exit(self) -> None:  # the script ended without close(): send what is queued
        self.close()

    # ---- hooks: a few Python operations a step, the probe's only on sampled steps ---------------------
    def _forward_begins(self, module, args) -> None:
        if module.training and torch.is_grad_enabled():  # not an evaluation
            self._forwarded = True
            if self._probe is not None:
                self._probe.new_forward()  # with gradient accumulation: the last micro-batch's

    def _step_begins(self, optimizer, args, kwargs) -> None:
        if self._probe is not None and self.layers.params:
            try:
                self._before = diagnostics.snapshot(self.layers.params)
            except Exception as err:  # noqa: BLE001
                self._failed("update:data", err)

    def _step_ends(self, optimizer, args, kwargs) -> None:
        self._stepped(optimizer.param_groups[0].get("lr") if optimizer.param_groups else None)

    def _forward_ends(self, module, args, output) -> None:
        """Without an optimizer a step is a backward pass: counted when the gradient reaches the model's
        output, measured once the whole backward is done (autograd's end-of-backward callback)."""
        if module.training and torch.is_grad_enabled() and (out := _first_grad_tensor(output)) is not None:
            out.register_hook(self._backward_begins)

    def _backward_begins(self, grad) -> None:
        torch.autograd.Variable._execution_engine.queue_callback(lambda: self._stepped(None))

    def _stepped(self, lr) -> None:
        """A step is done: measure it if it was sampled, then count it and arm the next sample."""
        step = self.steps
        try:
            if self._probe is not None:
                self._measure(step, lr)
        except Exception as err:  # noqa: BLE001 - statistics must never end the user's training
            self._failed(f"statistics at step {step}", err)
        finally:
            self._before = None
            self.steps = step + 1
            self._forwarded = False
            if self.steps % self.every == 0:
                self._arm()

    def _arm(self) -> None:
        if self._probe is None and self._failures < 3:
            self._probe = diagnostics.Probe(self.layers)

    def _measure(self, step: int, lr) -> None:
        probe, self._probe = self._probe, None
        probe.close()
        layers, outputs, grads = probe.measured(self.layers)
        extra = {"ud": diagnostics.step_to_data(self._before, self.layers.params)} if self._before is not None else {}
        body, values = diagnostics.collect_with(layers, outputs, grads, extra)  # the one device-to-host copy
        self._emit(stats_event(step, body))
        if "ud" in values:
            self._send_scalars(step, [v if math.isfinite(v) else None for v in values["ud"]], lr)

    def _send_scalars(self, ud_step: int | None = None, ud: list | None = None, lr=None) -> None:
        """The pending losses (and an update:data row) as one `scalars` event, as the trainer sends them."""
        if not self._losses and ud is None:
            return
        if lr is None and self.optimizer is not None and self.optimizer.param_groups:
            lr = self.optimizer.param_groups[0].get("lr")
        now = time.perf_counter()
        (last_step, last_time), self._sent_at = self._sent_at, (self.steps, now)
        rate = (self.steps - last_step) / (now - last_time) if self.steps > last_step and now > last_time else 0.0
        self._emit(
            scalars_event(
                step=self._losses_from if self._losses else self.steps,
                loss=self._losses,
                lr=_number(lr) if lr is not None else None,
                steps_per_s=rate,
                ud_names=self.layers.weight_names if ud is not None else [],
                ud_steps=[ud_step] if ud is not None else [],
                ud=[ud] if ud is not None else [],
            )
        )
        self._losses = []

    def _emit(self, event: dict) -> None:
        self._sender.put(event)

    def _failed(self, what: str, err: Exception) -> None:
        self._failures += 1
        log.warning(
            "bnscope.watch: %s failed (%s: %s)%s",
            what,
            type(err).__name__,
            err,
            "; no more statistics for this run" if self._failures >= 3 else "",
        )


def _number(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _first_grad_tensor(output) -> torch.Tensor | None:
    """The first tensor of a forward's output (a tensor, or one inside a tuple, list or dict) that
    gradients flow into."""
    if isinstance(output, torch.Tensor):
        return output if output.requires_grad else None
    items = output.values() if isinstance(output, dict) else output if isinstance(output, (tuple, list)) else ()
    return next((t for item in items if (t := _first_grad_tensor(item)) is not None), None)
