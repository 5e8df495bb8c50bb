"""Which layers a run reports, named once (Layers): the lecture network's by the lecture's names, any
model's by their qualified names; and the Probe that keeps an autograd step's activations and their
gradients."""

from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property

import torch
import torch.nn as nn

from bnscope.train.diagnostics.kinds import ACTIVATIONS, NORMS, WEIGHTED, _kind


@dataclass(frozen=True)
class Layers:
    """The layers a run reports, each (name, kind, module or parameter), named once."""

    activations: list[tuple[str, str, nn.Module]]
    weights: list[tuple[str, str, nn.Parameter]]
    norms: list[tuple[str, str, nn.Module]]

    def info(self) -> dict:
        """The `model` event's body (bnscope.events.ModelEvent): names and kinds."""
        describe = lambda entries: [{"name": name, "kind": kind} for name, kind, _ in entries]  # noqa: E731
        return {
            "activations": describe(self.activations),
            "weights": describe(self.weights),
            "norms": describe(self.norms),
        }

    @property
    def weight_names(self) -> list[str]:
        return [name for name, _, _ in self.weights]

    @property
    def params(self) -> list[nn.Parameter]:
        return [p for _, _, p in self.weights]

    @cached_property
    def norm_parts(self) -> list[tuple[str, str, nn.Module | None, torch.Tensor | None, torch.Tensor | None]]:
        """Each norm's (name, kind, the module if it keeps running statistics, its gain, its bias), looked
        up once: a module's attributes are slow to ask for, and a statistics sample asks for them all. The gain
        and bias are updated in place (the lecture's `p.data +=`, any torch optimizer); the running statistics,
        which the lecture's layer replaces every step, are read from the module each time."""
        parts = []
        for name, kind, m in self.norms:
            running = m if getattr(m, "running_mean", None) is not None else None
            gain = getattr(m, "weight", None)  # torch's weight / bias: the lecture's bngain / bnbias
            parts.append((name, kind, running, gain, getattr(m, "bias", None) if gain is not None else None))
        return parts


def lecture_layers(mlp: nn.Module) -> Layers:
    """The lecture network's layers by the lecture's names: tanh1.., C and linear1.., batchnorm1..
    (1-based, counted per kind)."""
    tanhs = [m for m in mlp.layers if isinstance(m, nn.Tanh)]
    linears = [m for m in mlp.layers if isinstance(m, nn.Linear)]
    bns = [m for m in mlp.layers if isinstance(m, nn.BatchNorm1d)]
    return Layers(
        activations=[(f"tanh{i}", "tanh", m) for i, m in enumerate(tanhs, 1)],
        weights=[("C", "embedding", mlp.embedding.weight)]
        + [(f"linear{i}", "linear", m.weight) for i, m in enumerate(linears, 1)],
        norms=[(f"batchnorm{i}", "batchnorm", m) for i, m in enumerate(bns, 1)],
    )


def find_layers(model: nn.Module) -> Layers:
    """Any model's layers by qualified name (`named_modules`; a shared module or parameter once): its
    activation modules, its trainable >= 2-D parameters (a module's `weight` goes by the module's name,
    any other as `module.param`), and its normalisation layers."""
    activations, weights, norms = [], [], []
    seen: set[int] = set()  # a parameter two modules share (tied embeddings) is one weight
    for name, module in model.named_modules():
        if (kind := _kind(module, ACTIVATIONS)) is not None:
            activations.append((name or type(module).__name__.lower(), kind, module))
        elif (kind := _kind(module, NORMS)) is not None:
            norms.append((name or kind, kind, module))
        for pname, p in module.named_parameters(recurse=False):
            if p.requires_grad and p.dim() >= 2 and id(p) not in seen:
                seen.add(id(p))
                label = name if pname == "weight" and name else f"{name}.{pname}" if name else pname
                weights.append((label, _kind(module, WEIGHTED) or "weight", p))
    return Layers(activations, weights, norms)


class Probe:
    """Every activation module's output of a training forward pass and, after backward, the loss's
    gradient w.r.t. it (the lecture's `layer.out.retain_grad()`, through a tensor hook on the output:
    never a module backward hook, which in-place ops such as ReLU(inplace=True) break).

      - a module called several times in one forward (shared) keeps every call: `outputs[i]` is then
        the list of its calls' outputs (collect treats each call's units as units of their own)
      - a forward in eval mode or without grad (an evaluation between steps) is not kept
      - `new_forward()` forgets what was kept: call it as a training forward begins, so that with
        gradient accumulation the last micro-batch's outputs and gradients are the ones measured
    """

    def __init__(self, layers: Layers):
        self._calls: list[list[torch.Tensor]] = [[] for _ in layers.activations]
        self._grads: list[dict[int, torch.Tensor]] = [{} for _ in layers.activations]
        self._handles = [
            module.register_forward_hook(self._keeper(i)) for i, (_, _, module) in enumerate(layers.activations)
        ]

    def _keeper(self, i: int):
        calls, grads = self._calls[i], self._grads[i]

        def keep(module, inputs, out):
            if not (module.training and torch.is_grad_enabled() and isinstance(out, torch.Tensor)):
                return
            j = len(calls)
            calls.append(out.detach())
            if out.requires_grad:
                out.register_hook(lambda grad: grads.__setitem__(j, grad.detach()))

        return keep

    def new_forward(self) -> None:
        for calls, grads in zip(self._calls, self._grads):
            calls.clear()
            grads.clear()

    @property
    def outputs(self) -> list[torch.Tensor | list[torch.Tensor] | None]:
        """Each activation's output (None: not called; a list: one a call)."""
        return [None if not calls else calls[0] if len(calls) == 1 else list(calls) for calls in self._calls]

    @property
    def grads(self) -> list[torch.Tensor | list[torch.Tensor] | None]:
        """The loss's gradient w.r.t. each output, shaped as `outputs` (None: none arrived; a call of a
        shared module that got none contributed nothing to the loss: zeros)."""
        out = []
        for calls, grads in zip(self._calls, self._grads):
            if not grads:
                out.append(None)
            else:
                each = [grads.get(j, torch.zeros_like(o)) for j, o in enumerate(calls)]
                out.append(each[0] if len(each) == 1 else each)
        return out

    def measured(self, layers: Layers) -> tuple[Layers, list, list]:
        """(the layers with the activations that were called, their outputs, their gradients): what
        `collect` takes."""
        kept = [i for i, calls in enumerate(self._calls) if calls]
        outputs, grads = self.outputs, self.grads
        only = Layers([layers.activations[i] for i in kept], layers.weights, layers.norms)
        return only, [outputs[i] for i in kept], [grads[i] for i in kept]

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


@contextmanager
def probe(layers: Layers):
    """`with probe(layers) as p:` forward and backward; then p.outputs and p.grads. The hooks exist
    only inside the `with`, so ordinary steps pay nothing."""
    p = Probe(layers)
    try:
        yield p
    finally:
        p.close()
