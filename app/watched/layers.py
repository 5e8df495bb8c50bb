"""bnscope.watch(layers): the lecture's own network, a list of hand-written layers, watched in its own loop.

    run = bnscope.watch(layers, weights={"C": C}, every=100, data_dir="runs")
    for i in range(max_steps):
        ...                                  # the lecture's forward pass, layer by layer
        for layer in layers:
            layer.out.retain_grad()          # as the lecture does: the activations' gradients
        for p in parameters:
            p.grad = None
        loss.backward()
        for p in parameters:
            p.data += -lr * p.grad
        run.log(loss=loss.item())            # ends the step (or run.step(), then run.log() for it)
    run.close()

A layer is any callable that keeps its output in `.out` and lists its tensors in `.parameters()` (the
lecture's Linear, BatchNorm1d, Tanh). There are no hooks to count steps with: `run.log()` ends one (one call
a step, every value of the step in it), or, once the loop calls `run.step()`, that does. On a sampled step
(every `every`, step 0 first) its end reads what the loop left: each activation layer's `.out` and its
`.grad` (where retained), each weight's `.grad`, and update:data from the change the step made to each
weight (a copy of the weights is taken at the end of the step before). Names are the lecture's: `tanh1 ·
layers[2]` (the first Tanh, at position 2), `linear1 · layers[0]` (its weight), `batchnorm1 · layers[1]`
(its gamma and beta, bngain and bnbias, and its running mean and var), and the extra `weights` by their keys
(the embedding table C).
"""

import math

import torch

from bnscope.events import stats_event
from bnscope.train import diagnostics
from bnscope.watched.hooks import WatchedRun

# a layer's kind by its class's name: the lecture's classes are named as torch.nn's
ACTIVATION_NAMES = {cls.__name__: kind for cls, kind in diagnostics.ACTIVATIONS.items()}
WEIGHT_NAMES = {"Linear": "linear", "Embedding": "embedding", "Conv1d": "conv", "Conv2d": "conv"}
NORM_NAMES = {"BatchNorm1d": "batchnorm", "LayerNorm": "layernorm"}


class _Norm:
    """A lecture norm layer as bnscope.train.diagnostics reads a torch one: its gamma and beta as weight and bias,
    its running statistics read when asked (the lecture's layer replaces those tensors every step)."""

    def __init__(self, layer):
        self.layer = layer

    def __getattr__(self, name: str):
        alias = {"weight": "gamma", "bias": "beta"}.get(name, name)
        return getattr(self.layer, alias, None)


def layers_of(layers: list, weights: dict[str, torch.Tensor]) -> diagnostics.Layers:
    """The lecture's network's layers by the lecture's names (see the module's docstring)."""
    counts: dict[str, int] = {}

    def label(kind: str, i: int) -> str:
        counts[kind] = counts.get(kind, 0) + 1
        return f"{kind}{counts[kind]} · layers[{i}]"

    activations, found, norms = [], [(name, "embedding", w) for name, w in weights.items()], []
    for i, layer in enumerate(layers):
        cls = type(layer).__name__
        if (kind := ACTIVATION_NAMES.get(cls)) is not None:
            activations.append((label(kind, i), kind, layer))
        elif (kind := NORM_NAMES.get(cls)) is not None:
            norms.append((label(kind, i), kind, _Norm(layer)))
        else:
            matrices = [p for p in layer.parameters() if p.dim() >= 2]
            kind = WEIGHT_NAMES.get(cls, "weight")
            name = label(kind, i) if matrices else None
            found += [(name if len(matrices) == 1 else f"{name}.{j}", kind, p) for j, p in enumerate(matrices)]
    return diagnostics.Layers(activations, found, norms)


class WatchedLayers(WatchedRun):
    """A watched list of lecture-style layers: `run.log()` or `run.step()` ends a step (see the module)."""

    def __init__(self, layers: list, weights: dict[str, torch.Tensor], every: int, sender):
        self._explicit = False  # the loop calls run.step(): log() only adds values
        super().__init__(None, None, every, sender, layers_of(layers, weights))

    def _attach(self) -> list:
        self._before = diagnostics.snapshot(self.layers.params)  # step 0 is sampled: its update measured from here
        return []

    def log(self, **values: float) -> None:
        """Values for the step: `run.log(loss=loss.item())` ends the step in progress with them; once the
        loop counts steps with run.step(), they are for the step it just ended."""
        self._forwarded = not self._explicit  # the step in progress's, else the one just ended
        super().log(**values)
        if not self._explicit:
            self._end_step()

    def step(self) -> None:
        """End a step (once called, run.log() no longer does: call it after run.step())."""
        self._explicit = True
        self._end_step()

    def _end_step(self) -> None:
        step = self.steps
        try:
            if step % self.every == 0 and self._failures < 3:
                self._measure_layers(step)
        except Exception as err:  # noqa: BLE001 - statistics must never end the user's training
            self._failed(f"statistics at step {step}", err)
        finally:
            self.steps = step + 1
            self._forwarded = False
            if self.steps % self.every == 0 and self._failures < 3:
                self._before = diagnostics.snapshot(self.layers.params)  # the next sampled step's weights before it

    def _measure_layers(self, step: int) -> None:
        kept = [
            (entry, entry[2].out)
            for entry in self.layers.activations  # a layer not called yet has no .out
            if isinstance(getattr(entry[2], "out", None), torch.Tensor)
        ]
        layers = diagnostics.Layers([entry for entry, _ in kept], self.layers.weights, self.layers.norms)
        outputs = [out.detach() for _, out in kept]
        grads = [out.grad.detach() if out.retains_grad and out.grad is not None else None for _, out in kept]
        extra = {"ud": diagnostics.step_to_data(self._before, self.layers.params)} if self._before is not None else {}
        self._before = None
        body, values = diagnostics.collect_with(layers, outputs, grads, extra)  # the one device-to-host copy
        self._emit(stats_event(step, body))
        if "ud" in values:
            self._send_scalars(step, [v if math.isfinite(v) else None for v in values["ud"]], None)
