"""What the lecture plots, for any nn.Module: computed on the tensor side, converted to Python once.

  activations  every activation module's output: mean, std, saturation % (the flat part of its
               function: tanh |t| > 0.97, sigmoid < 0.03 or > 0.97, ReLU family <= 0), a histogram,
               dead units; and the gradient flowing into it (mean, std, histogram)
  weights      every weight matrix or kernel (>= 2-D): its gradient's mean, std and histogram, and
               grad:data = std(grad) / std(weight)
  updates      update:data = log10(std(lr * grad) / std(weight)) per weight (~ -3 is healthy)
  norms        every normalisation layer: running mean / var (BatchNorm) and its affine gain and bias

`lecture_layers(mlp)` names the lecture network's layers as the lecture does (tanh3, linear2,
batchnorm1, C); `find_layers(model)` names any model's by their qualified module names. The
trainer hands `collect` the tensors its fused step kept; a `Probe` keeps them for an autograd step
(hooks that exist only while it is open: bnscope.watch opens one on sampled steps only). The event
types are in bnscope.events.

None of this runs on an ordinary step. Each statistic is computed for all layers at once (one op
over the flattened tensors, a row index telling which layer an element belongs to) and converted
with a single .tolist(): on a small network the cost is the number of torch ops, not the arithmetic.
"""

import functools
import math
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

HIST_BINS = 50
SATURATION = 0.97  # the lecture's "saturated" tanh: |t| > 0.97
DEAD = 0.99  # the lecture's white pixel |t| > 0.99; a unit white for the whole batch is dead
MAX_IMAGE_BITS = 1 << 16  # the |t| > 0.99 image is sent for batches * units up to this...
MAX_IMAGE_ROWS = 1024  # ...and batches and hex digits (4 units each) a row up to this
SMALL_ROW = 1024  # a row this small has its std summed in float64 (see _Rows.mean_std)

# activation modules by kind; a subclass not listed is found by isinstance, in this order
ACTIVATIONS: dict[type, str] = {
    nn.Tanh: "tanh", nn.Sigmoid: "sigmoid", nn.ReLU6: "relu6", nn.Hardtanh: "hardtanh", nn.ReLU: "relu",
    nn.LeakyReLU: "leaky_relu", nn.PReLU: "prelu", nn.ELU: "elu", nn.SELU: "selu", nn.CELU: "celu",
    nn.GELU: "gelu", nn.SiLU: "silu", nn.Mish: "mish", nn.Hardsigmoid: "hardsigmoid", nn.Hardswish: "hardswish",
    nn.Softplus: "softplus",
}  # fmt: skip
# The flat part of each function, (at or below, at or above): there its derivative is (nearly) zero, so
# a unit there passes almost no gradient back. Saturation counts outputs in it; a unit in it for every
# example is dead. The ReLU family is flat (or nearly) wherever its input is negative: outputs <= 0.
RELU_FLAT = (0.0, math.inf)
FLAT: dict[str, tuple[float, float]] = {
    "tanh": (-SATURATION, SATURATION), "hardtanh": (-1.0, 1.0), "sigmoid": (1 - SATURATION, SATURATION),
    "hardsigmoid": (0.0, 1.0), "relu6": (0.0, 6.0), "softplus": (1 - SATURATION, math.inf),
}  # fmt: skip
DEAD_FLAT: dict[str, tuple[float, float]] = {**FLAT, "tanh": (-DEAD, DEAD), "sigmoid": (1 - DEAD, DEAD)}
# activations whose outputs have fixed bounds get a fixed histogram range; others: the batch's min..max
BOUNDS: dict[str, tuple[float, float]] = {"tanh": (-1.0, 1.0), "hardtanh": (-1.0, 1.0), "sigmoid": (0.0, 1.0),
                                          "hardsigmoid": (0.0, 1.0), "relu6": (0.0, 6.0)}  # fmt: skip

NORMS: dict[type, str] = {nn.modules.batchnorm._BatchNorm: "batchnorm", nn.LayerNorm: "layernorm",
                          nn.GroupNorm: "groupnorm", nn.modules.instancenorm._InstanceNorm: "instancenorm"}  # fmt: skip
if hasattr(nn, "RMSNorm"):  # torch >= 2.4
    NORMS[nn.RMSNorm] = "rmsnorm"
WEIGHTED: dict[type, str] = {nn.Linear: "linear", nn.Embedding: "embedding", nn.modules.conv._ConvNd: "conv",
                             nn.MultiheadAttention: "attention"}  # fmt: skip


def _kind(module: nn.Module, table: dict[type, str]) -> str | None:
    kind = table.get(type(module))
    if kind is None:
        kind = next((k for cls, k in table.items() if isinstance(module, cls)), None)
    return kind


@dataclass(frozen=True)
class Layers:
    """The layers a run reports, each (name, kind, module or parameter), named once."""

    activations: list[tuple[str, str, nn.Module]]
    weights: list[tuple[str, str, nn.Parameter]]
    norms: list[tuple[str, str, nn.Module]]

    def info(self) -> dict:
        """The `model` event's body (bnscope.events.ModelEvent): names and kinds."""
        describe = lambda entries: [{"name": name, "kind": kind} for name, kind, _ in entries]  # noqa: E731
        return {"activations": describe(self.activations), "weights": describe(self.weights),
                "norms": describe(self.norms)}  # fmt: skip

    @property
    def weight_names(self) -> list[str]:
        return [name for name, _, _ in self.weights]

    @property
    def params(self) -> list[nn.Parameter]:
        return [p for _, _, p in self.weights]


def lecture_layers(mlp: nn.Module) -> Layers:
    """The lecture network's layers by the lecture's names: tanh1.., C and linear1.., batchnorm1..
    (1-based, counted per kind)."""
    tanhs = [m for m in mlp.layers if isinstance(m, nn.Tanh)]
    linears = [m for m in mlp.layers if isinstance(m, nn.Linear)]
    bns = [m for m in mlp.layers if isinstance(m, nn.BatchNorm1d)]
    return Layers(
        activations=[(f"tanh{i}", "tanh", m) for i, m in enumerate(tanhs, 1)],
        weights=[("C", "embedding", mlp.embedding.weight)] + [(f"linear{i}", "linear", m.weight) for i, m in enumerate(linears, 1)],
        norms=[(f"batchnorm{i}", "batchnorm", m) for i, m in enumerate(bns, 1)],
    )  # fmt: skip


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


def update_to_data(params: list[torch.Tensor], lr: float) -> torch.Tensor:
    """log10(std(lr * grad) / std(data)) per parameter, as one (P,) tensor (no conversion)."""
    _, std = _mean_std([p.grad for p in params] + [p.data for p in params])
    grad_std, data_std = std.view(2, -1)
    return (lr * grad_std / data_std).log10()


def snapshot(params: list[torch.Tensor]) -> list[torch.Tensor]:
    """A copy of the parameters' values, to measure the update an optimizer step makes to them."""
    with torch.no_grad():
        return list(torch._foreach_mul([p.detach() for p in params], 1.0))


def step_to_data(before: list[torch.Tensor], params: list[torch.Tensor]) -> torch.Tensor:
    """log10(std(update) / std(data)) per parameter, the update being the change a step made
    (params now - `before`, a snapshot): any optimizer's update (momentum, Adam, weight decay), where
    update_to_data assumes plain SGD's lr * grad. For plain SGD the two are the same."""
    with torch.no_grad():
        data = [p.detach() for p in params]
        _, std = _mean_std(list(torch._foreach_sub(data, before)) + data)
    update_std, data_std = std.view(2, -1)
    return (update_std / data_std).log10()


def _mean_std(tensors: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Every tensor's mean and std (unbiased, as torch.std), as two (T,) tensors, in a few ops for the
    whole list: from the sums and the sums of squares (torch.std's pass is slow on a CPU)."""
    n = _counts(tuple(t.numel() for t in tensors), tensors[0].device)
    sums = torch.stack([t.sum(dtype=torch.float32) for t in tensors])  # fp16/bf16 tensors summed in fp32
    sumsq = torch.stack(torch._foreach_norm(tensors)).float().square()
    mean = sums / n
    var = (sumsq - sums * mean) / (n - 1).clamp(min=1)
    return mean, var.clamp_(min=0).sqrt()


@functools.lru_cache(maxsize=32)
def _counts(sizes: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """The sizes as a float tensor on the device, made once: a tensor made from a list is copied to a
    GPU synchronously, which waits for every step queued before it (a statistics step makes one copy)."""
    return torch.tensor(sizes, dtype=torch.float32, device=device)


@functools.lru_cache(maxsize=32)
def _row_index(sizes: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """The row k of every element of the k-th tensor, the tensors flattened and concatenated."""
    return torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes)).to(device)


def _flat(tensors: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The tensors flattened into one float vector, and each element's row. A value that is not finite
    (a diverging run) gets row -1: no histogram counts it, no range stretches to it."""
    flat = torch.cat([t.reshape(-1) for t in tensors]).float()
    rows = _row_index(tuple(t.numel() for t in tensors), flat.device)
    finite = flat.isfinite()
    if flat.device.type != "cpu" or not bool(finite.all()):  # on a GPU bool() would wait for the device: no test
        rows = torch.where(finite, rows, -1)
        flat = flat.nan_to_num(0.0, 0.0, 0.0)
    return flat, rows


def _row_ranges(flat: torch.Tensor, rows: torch.Tensor, n_rows: int, symmetric: bool) -> torch.Tensor:
    """(n_rows, 2) [lo, hi] of each row: its min..max, or +-max|x| when symmetric."""
    slots = rows.clamp(min=0)  # a non-finite value (row -1, set to 0) sits in row 0, where 0 moves no bound
    if symmetric:
        hi = flat.new_zeros(n_rows).scatter_reduce_(0, slots, flat.abs(), "amax")
        return torch.stack([-hi, hi], dim=1)
    lo = flat.new_full((n_rows,), math.inf).scatter_reduce_(0, rows.clamp(min=0), flat, "amin")
    hi = flat.new_full((n_rows,), -math.inf).scatter_reduce_(0, slots, flat, "amax")
    return torch.stack([lo.nan_to_num(0.0, 0.0, 0.0), hi.nan_to_num(0.0, 0.0, 0.0)], dim=1)


@functools.lru_cache(maxsize=32)
def _bounds(kinds: tuple[str, ...], device: torch.device) -> torch.Tensor:
    """(L, 2) fixed [lo, hi] of each activation kind; NaN where the kind has none."""
    return torch.tensor([BOUNDS.get(kind, (math.nan, math.nan)) for kind in kinds], device=device)


def _act_ranges(flat: torch.Tensor, rows: torch.Tensor, kinds: tuple[str, ...]) -> torch.Tensor:
    """(L, 2) histogram ranges: the function's bounds (tanh [-1, 1]), else the batch's min..max."""
    fixed = _bounds(kinds, flat.device)
    if all(kind in BOUNDS for kind in kinds):
        return fixed.clone()
    return torch.where(fixed.isnan(), _row_ranges(flat, rows, len(kinds), symmetric=False), fixed)


def _histograms(flat: torch.Tensor, rows: torch.Tensor, ranges: torch.Tensor) -> torch.Tensor:
    """(n_rows, HIST_BINS) counts in one bincount, binned as torch.histc bins each row over its range
    (a value at hi goes to the last bin). A row whose range is empty (every value equal) gets [lo-1, lo+1]."""
    n_rows = ranges.shape[0]
    lo, hi = ranges.unbind(1)
    empty = hi <= lo
    ranges[:, 0] = torch.where(empty, lo - 1, lo)
    ranges[:, 1] = torch.where(empty, lo + 1, hi)
    lo, width = ranges[:, 0], ranges[:, 1] - ranges[:, 0]
    slots = rows.clamp(min=0)
    # histc's (x - min) * bins / (max - min), truncated; index_select: 4x faster than x[rows] on a CPU
    pos = (flat - lo.index_select(0, slots)) * (HIST_BINS / width).index_select(0, slots)
    index = pos.clamp_(0, HIST_BINS - 1).long() + slots * HIST_BINS
    index = torch.where(rows >= 0, index, n_rows * HIST_BINS)  # not finite: one slot past the end, dropped
    # scatter_add_ into a zero tensor, not bincount: as fast on a CPU, and on a GPU bincount waits for
    # the device to learn its output's size
    counts = index.new_zeros(n_rows * HIST_BINS + 1).scatter_add_(0, index, torch.ones_like(index))
    return counts[:-1].view(n_rows, HIST_BINS)


@functools.lru_cache(maxsize=32)
def _thresholds(kinds: tuple[str, ...], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Each kind's flat part (FLAT) as two tensors on the device, made once (see _counts)."""
    lo, hi = zip(*(FLAT.get(kind, RELU_FLAT) for kind in kinds))
    return torch.tensor(lo, device=device), torch.tensor(hi, device=device)


def _by_unit(flat: torch.Tensor) -> torch.Tensor:
    """(units, everything else) of an output: a 2-D output's features, a 3-D output's last dim (B, T, C),
    a 4-D and up's channels (B, C, H, W); a 1-D output is one unit."""
    if flat.dim() <= 1:
        return flat.reshape(1, -1)
    if flat.dim() <= 3:
        return flat.reshape(-1, flat.shape[-1]).T
    return flat.transpose(0, 1).reshape(flat.shape[1], -1)


def _dead_units(outputs: list, kinds: tuple[str, ...]) -> tuple[torch.Tensor, list[int]]:
    """Per layer, how many units sit in the flat part for every example (and position), and its number
    of units (see _by_unit). A shared module's calls (a list) count as units of their own: a ReLU
    instance used after every conv has the units of all of them."""
    if all(isinstance(o, torch.Tensor) for o in outputs) and len(set(kinds)) == 1 \
            and len({o.shape for o in outputs}) == 1 and outputs[0].dim() == 2:  # fmt: skip
        lo, hi = DEAD_FLAT.get(kinds[0], RELU_FLAT)  # the lecture's case: one stacked op for every layer
        stacked = torch.stack(outputs)  # (L, B, H)
        B = stacked.shape[1]  # "in the flat part for every example" as a count: sum(1) == B is 5x faster than all(1)
        return (((stacked <= lo) | (stacked >= hi)).sum(1) == B).sum(1), [outputs[0].shape[1]] * len(outputs)
    counts, units = [], []
    for out, kind in zip(outputs, kinds):
        lo, hi = DEAD_FLAT.get(kind, RELU_FLAT)
        by_unit = [_by_unit((call <= lo) | (call >= hi)) for call in (out if isinstance(out, list) else [out])]
        counts.append(torch.stack([(b.sum(1) == b.shape[1]).sum() for b in by_unit]).sum())
        units.append(sum(b.shape[0] for b in by_unit))
    return torch.stack(counts), units


def _one(t: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
    """A layer's output (or gradient) as one tensor: a shared module's calls flattened and joined."""
    return t if isinstance(t, torch.Tensor) else torch.cat([c.reshape(-1) for c in t])


@functools.lru_cache(maxsize=8)
def _hex(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The ASCII codes of the 16 hex digits, and the bit weights 8 4 2 1, on the device (see _counts)."""
    return (torch.tensor(list(b"0123456789abcdef"), dtype=torch.uint8, device=device),
            torch.tensor([8, 4, 2, 1], dtype=torch.uint8, device=device))  # fmt: skip


def _image_digits(outputs: list, kinds: tuple[str, ...]) -> torch.Tensor | None:
    """The lecture's |t| > 0.99 image of every layer, as (L * B, ceil(H/4)) ASCII codes of hex digits,
    4 units a digit, the first unit the high bit: when every layer is a tanh of the same 2-D shape (the
    lecture's network) and small enough to send; else None."""
    if not _lecture_shaped(outputs, kinds) or not _imageable(outputs[0]):
        return None
    return _hex_image(torch.stack(outputs).abs() > DEAD)


def _lecture_shaped(outputs: list, kinds: tuple[str, ...]) -> bool:
    """Every layer a tanh with one 2-D output, all of the same shape: the lecture's network."""
    return (
        set(kinds) == {"tanh"}
        and all(isinstance(o, torch.Tensor) for o in outputs)
        and len({o.shape for o in outputs}) == 1
        and outputs[0].dim() == 2
    )


def _imageable(output: torch.Tensor) -> bool:
    B, H = output.shape  # the schema's bounds: rows a layer, hex digits a row
    return output.numel() <= MAX_IMAGE_BITS and B <= MAX_IMAGE_ROWS and H <= 4 * MAX_IMAGE_ROWS


def _hex_image(white: torch.Tensor) -> torch.Tensor:
    """(L, B, H) booleans as (L * B, ceil(H/4)) ASCII codes of hex digits (see _image_digits)."""
    L, B, H = white.shape
    padded = F.pad(white.to(torch.uint8), (0, (-H) % 4))  # (L, B, 4 * ceil(H/4))
    digits, bits = _hex(padded.device)
    nibbles = (padded.view(L, B, -1, 4) * bits).sum(-1)  # (L, B, ceil(H/4)), int64 to index with
    return digits.index_select(0, nibbles.view(-1)).view(L * B, -1)


def _marks(outputs: list, kinds: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor, list[int], torch.Tensor | None]:
    """Each activation's outputs in its flat part, its dead units, its units, and the |t| > 0.99 image
    (_image_digits): for the lecture's network from one |t| of every layer at once."""
    if not _lecture_shaped(outputs, kinds):
        dead, units = _dead_units(outputs, kinds)
        return _saturated([_one(o) for o in outputs], kinds), dead, units, None
    a = torch.stack(outputs).abs_()  # (L, B, H)
    B, H = outputs[0].shape
    dead = ((a >= DEAD).sum(1) == B).sum(1)  # |t| >= 0.99 for every example (a count: faster than all())
    return (
        (a >= SATURATION).sum((1, 2)),
        dead,
        [H] * len(outputs),
        _hex_image(a > DEAD) if _imageable(outputs[0]) else None,
    )


class _Packer:
    """Collects tensors and brings them all to the host in a single copy: on a GPU, the one
    device-to-host copy (and synchronisation) of a statistics step. They come back as lists of floats,
    or of ints (`form="int"`: counts, exact up to 2**24), or as a str (`form="text"`: ASCII codes)."""

    def __init__(self):
        self.parts: list[tuple[str, torch.Tensor, str]] = []

    def add(self, key: str, tensor: torch.Tensor, form: str = "float") -> None:
        self.parts.append((key, tensor.float(), form))

    def unpack(self) -> dict:
        if not self.parts:
            return {}
        parts = sorted(self.parts, key=lambda part: part[2] != "float")  # the floats first, converted at once
        host = torch.cat([t.reshape(-1) for _, t, _ in parts]).cpu()
        floats = host[: sum(t.numel() for _, t, form in parts if form == "float")].tolist()
        out, offset = {}, 0
        for key, t, form in parts:
            n = t.numel()
            if form == "text":
                out[key] = host[offset : offset + n].to(torch.uint8).numpy().tobytes().decode("ascii")
            else:
                values = floats[offset : offset + n] if form == "float" else host[offset : offset + n].long().tolist()
                if t.dim() == 2:
                    cols = t.shape[1]
                    values = [values[r * cols : (r + 1) * cols] for r in range(t.shape[0])]
                out[key] = values
            offset += n
        return out


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def collect(layers: Layers, outputs: list, grads: list) -> dict:
    """Statistics after a backward pass: the body of a `stats` event (bnscope.events.StatsEvent:
    activations, weights, norms). `outputs[i]` is the i-th activation's output (dim 0 the batch; a
    list: a shared module's calls) and `grads[i]` the loss's gradient w.r.t. it, shaped alike (None:
    not measured). Values that are not finite come out as None; histograms never fail."""
    return collect_with(layers, outputs, grads, {})[0]


@torch.no_grad()
def collect_with(
    layers: Layers, outputs: list, grads: list, extra: dict[str, torch.Tensor]
) -> tuple[dict, dict[str, list]]:
    """`collect`, and the `extra` tensors (e.g. an update:data row) brought to the host in the same
    single copy: (the stats body, {key: values}).

    Every tensor is a row: the activations, their gradients and the weights' gradients (which get
    histograms), then the weights and the norms' gain and bias (a mean and a std each). Rows of one
    size are stacked (_Rows), so each statistic is one op a size: the lecture's network is ~60 ops
    whatever its depth."""
    names = [name for name, _, _ in layers.activations]
    kinds = tuple(kind for _, kind, _ in layers.activations)
    acts = [_one(o) for o in outputs]
    L, ws = len(acts), layers.params
    W = len(ws)
    measured = [g is not None for g in grads]
    agrads = [_one(g) if g is not None else torch.zeros_like(a) for a, g in zip(acts, grads)]
    wgrads = [w.grad if w.grad is not None else torch.zeros_like(w) for w in ws]
    norm_modules = [m for _, _, m in layers.norms]
    running = [m for m in norm_modules if getattr(m, "running_mean", None) is not None]
    affine = [
        t
        for m in norm_modules
        if getattr(m, "weight", None) is not None
        for t in (m.weight, getattr(m, "bias", None))
        if t is not None
    ]
    binned = acts + agrads + wgrads
    packer = _Packer()
    if binned or affine:
        rows = _Rows(binned + [w.detach() for w in ws] + [t.detach() for t in affine], len(binned))
        mean, std = rows.mean_std()
        packer.add("mean", mean)
        packer.add("std", std)
        if binned:
            ranges = rows.ranges(kinds)
            packer.add("hist", rows.histograms(ranges), form="int")
            packer.add("range", ranges)
    if L:
        saturated, dead, units, digits = _marks(outputs, kinds)
        packer.add("saturated", saturated)
        packer.add("dead", dead)
        if digits is not None:
            packer.add("image", digits.view(-1), form="text")
    if running:
        # reshaped: the lecture's own layer keeps them (1, C) once it has trained a step
        packer.add(
            "running",
            torch.cat([m.running_mean.reshape(-1) for m in running] + [m.running_var.reshape(-1) for m in running]),
        )
    for key, tensor in extra.items():
        packer.add(f"extra/{key}", tensor)

    v = packer.unpack()
    images: list[list[str]] = []
    if "image" in v:
        text = v["image"]
        B = outputs[0].shape[0]
        cols = len(text) // (L * B)
        rows_ = [text[r * cols : (r + 1) * cols] for r in range(L * B)]
        images = [rows_[i * B : (i + 1) * B] for i in range(L)]
    hist = v.get("hist", [])
    means, stds, ranges = v.get("mean", []), v.get("std", []), v.get("range", [])
    activations = []
    for i, (name, kind) in enumerate(zip(names, kinds)):
        g = L + i  # its gradient's row
        entry = {
            "name": name, "kind": kind, "units": units[i],
            "mean": _finite(means[i]), "std": _finite(stds[i]),
            "saturation": v["saturated"][i] * 100 / max(acts[i].numel(), 1), "dead": int(v["dead"][i]),
            "hist": hist[i], "range": ranges[i],
            "grad_mean": _finite(means[g]) if measured[i] else None,
            "grad_std": _finite(stds[g]) if measured[i] else None,
            "grad_hist": hist[g], "grad_range": ranges[g],
        }  # fmt: skip
        if images:
            entry["image"] = images[i]
        activations.append(entry)
    weights = []
    for i, (name, kind, w) in enumerate(layers.weights):
        g, d = 2 * L + i, 2 * L + W + i  # its gradient's row, its own
        weights.append({
            "name": name, "kind": kind, "shape": list(w.shape), "data_std": _finite(stds[d]),
            "grad_mean": _finite(means[g]), "grad_std": _finite(stds[g]),
            "grad_to_data": _finite(stds[g] / stds[d]) if stds[d] else None,
            "grad_hist": hist[g], "grad_range": ranges[g],
        })  # fmt: skip
    first = 2 * L + 2 * W  # the gains' and biases' rows
    v["affine"] = [[means[r], stds[r]] for r in range(first, first + len(affine))]
    body = {"activations": activations, "weights": weights, "norms": _norms(layers, v)}
    return body, {key: v[f"extra/{key}"] for key in extra}


@dataclass(frozen=True)
class _Plan:
    """How _Rows groups a list of tensors by size, made once per list of sizes."""

    members: list[list[int]]  # each group's rows, in order (so its binned rows come first)
    order: torch.Tensor  # the groups' rows concatenated -> the rows' own order
    binned: list[int]  # how many of each group's rows are binned (the first n_binned rows of all)
    binned_rows: torch.Tensor  # the groups' binned rows concatenated, as an index
    binned_order: torch.Tensor  # ...and back to their own order
    slots: list[torch.Tensor]  # (b, 1) each binned row's first histogram slot (row * HIST_BINS), a group each
    ones: torch.Tensor  # as many ones as binned values, to count them with
    sizes: torch.Tensor  # each row's size, in the groups' order
    divisors: torch.Tensor  # ...less one (at least 1): the unbiased variance's


@functools.lru_cache(maxsize=32)
def _plan(sizes: tuple[int, ...], n_binned: int, device: torch.device) -> _Plan:
    by_size: dict[int, list[int]] = {}
    for row, size in enumerate(sizes):
        by_size.setdefault(size, []).append(row)
    members = list(by_size.values())
    binned = [[row for row in rows if row < n_binned] for rows in members]
    flat = lambda groups: [r for group in groups for r in group]  # noqa: E731
    binned_rows = torch.tensor(flat(binned), dtype=torch.long, device=device)
    slots = [
        torch.tensor(rows, dtype=torch.float32, device=device).mul_(HIST_BINS).unsqueeze(1) for rows in binned if rows
    ]
    grouped = torch.tensor([float(sizes[r]) for r in flat(members)], dtype=torch.float64, device=device)
    return _Plan(
        members,
        torch.argsort(torch.tensor(flat(members))).to(device),
        [len(rows) for rows in binned],
        binned_rows,
        torch.argsort(binned_rows),
        slots,
        torch.ones(sum(sizes[:n_binned]), dtype=torch.long, device=device),
        grouped,
        (grouped - 1).clamp(min=1),
    )


class _Rows:
    """Tensors as rows, those of one size stacked into one (G, n) float tensor: a statistic of every
    row is one op a size, whatever the number of layers. The first `n_binned` rows get histograms.
    A value that is not finite makes its row's mean and std None, and is counted in no range and no
    histogram."""

    def __init__(self, tensors: list[torch.Tensor], n_binned: int):
        device = tensors[0].device
        self.n_binned = n_binned
        self.plan = _plan(tuple(t.numel() for t in tensors), n_binned, device)
        self.groups = [torch.stack([tensors[r].reshape(-1) for r in rows]).float() for rows in self.plan.members]
        self.binned = [g[:b] for g, b in zip(self.groups, self.plan.binned) if b]
        self.sums = torch.cat([g.sum(1) for g in self.groups])
        # a sum that is not finite has a value that is not (on a GPU, asking would wait for it: always masked)
        self.dirty = device.type != "cpu" or not bool(self.sums.isfinite().all())

    def mean_std(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(T,) each row's mean and std (unbiased, as torch.std), from its sum and sum of squares: one
        op a group. Small rows (a norm's gain and bias, whose mean sits far from 0 next to their spread,
        where float32's sum of squares would cancel) are summed in float64; big ones (activations,
        gradients, weights: means near 0 next to their spread) in float32."""
        sums, squares = [], []
        for g, total in zip(self.groups, self.sums.split([g.shape[0] for g in self.groups])):
            if g.shape[1] <= SMALL_ROW:
                g = g.double()
                total = g.sum(1)
            sums.append(total.double())
            squares.append(torch.linalg.vector_norm(g, dim=1).double().square_())
        total, square = torch.cat(sums), torch.cat(squares)
        mean = total / self.plan.sizes
        var = (square - total * mean).div_(self.plan.divisors).clamp_(min=0)
        return mean.float()[self.plan.order], var.sqrt_().float()[self.plan.order]

    def ranges(self, kinds: tuple[str, ...]) -> torch.Tensor:
        """(n_binned, 2) each binned row's histogram range: for the first len(kinds) rows (activations)
        the function's bounds (tanh [-1, 1]), else the batch's min..max; for the rest (gradients)
        [-max|x|, max|x|]."""
        lo, hi = [], []
        for g in self.binned:
            values = g.nan_to_num(0.0, 0.0, 0.0) if self.dirty else g  # a value that is not finite: as 0
            if not values.shape[1]:
                values = values.new_zeros(values.shape[0], 1)
            lo.append(values.amin(1))
            hi.append(values.amax(1))
        lo, hi = torch.cat(lo)[self.plan.binned_order], torch.cat(hi)[self.plan.binned_order]
        A = len(kinds)
        fixed = _bounds(kinds, lo.device)
        acts = torch.where(fixed.isnan(), torch.stack([lo[:A], hi[:A]], dim=1), fixed)
        symmetric = torch.maximum(hi[A:], -lo[A:])
        return torch.cat([acts, torch.stack([-symmetric, symmetric], dim=1)])

    def histograms(self, ranges: torch.Tensor) -> torch.Tensor:
        """(n_binned, HIST_BINS) counts, each row binned over its range as torch.histc bins (a value at
        hi in the last bin; a range with every value equal widened to [lo-1, lo+1], in place). The last
        use of the rows: they are binned in place (the stacked copies are ours; a new tensor of this
        size is a fresh mmap on a CPU, and its page faults cost more than the arithmetic)."""
        lo, hi = ranges.unbind(1)
        empty = hi <= lo
        ranges[:, 0] = torch.where(empty, lo - 1, lo)
        ranges[:, 1] = torch.where(empty, lo + 1, hi)
        # each group's rows' lo and bins / (hi - lo), as (b, 1) columns
        lo_scale = torch.stack([ranges[:, 0], HIST_BINS / (ranges[:, 1] - ranges[:, 0])], 1)[self.plan.binned_rows]
        columns = lo_scale.split([g.shape[0] for g in self.binned])
        # scatter_add_ into a zero tensor, not bincount: faster on a CPU, and on a GPU bincount waits
        # for the device to learn its output's size
        counts = self.plan.ones.new_zeros(self.n_binned * HIST_BINS + 1)
        for g, column, slots in zip(self.binned, columns, self.plan.slots):
            # histc's (x - min) * bins / (max - min), truncated, in the row's own bins
            finite = g.isfinite() if self.dirty else None
            pos = g.sub_(column[:, :1]).mul_(column[:, 1:]).clamp_(0, HIST_BINS - 1).floor_().add_(slots)  # in place
            if finite is not None:  # not finite: one slot past the end, dropped
                pos = torch.where(finite, pos, self.n_binned * HIST_BINS)
            counts.scatter_add_(0, pos.view(-1).long(), self.plan.ones[: pos.numel()])
        return counts[:-1].view(self.n_binned, HIST_BINS)


def _saturated(acts: list[torch.Tensor], kinds: tuple[str, ...]) -> torch.Tensor:
    """(L,) how many of each activation's outputs sit in its function's flat part (FLAT)."""
    if len(set(kinds)) == 1 and len({a.numel() for a in acts}) == 1:  # the lecture's: one op on them all
        stacked = torch.stack([a.reshape(-1) for a in acts])
        lo, hi = FLAT.get(kinds[0], RELU_FLAT)
        if lo == -hi:
            return (stacked.abs() >= hi).sum(1)
        return ((stacked <= lo) | (stacked >= hi)).sum(1)
    return torch.stack(
        [((a <= lo) | (a >= hi)).sum() for a, (lo, hi) in zip(acts, (FLAT.get(k, RELU_FLAT) for k in kinds))]
    )


def _norms(layers: Layers, v: dict) -> list[dict]:
    running, half, offset = v.get("running", []), len(v.get("running", [])) // 2, 0
    affine, a = v.get("affine", []), 0
    out = []
    for name, kind, m in layers.norms:
        entry: dict = {"name": name, "kind": kind}
        if getattr(m, "running_mean", None) is not None:
            n = m.running_mean.numel()
            mean, var = running[offset : offset + n], running[half + offset : half + offset + n]
            offset += n
            entry.update(running_mean=mean, running_var=var, mean_of_running_mean=_finite(sum(mean) / n),
                         mean_of_running_var=_finite(sum(var) / n))  # fmt: skip
        if getattr(m, "weight", None) is not None:  # torch's weight / bias: the lecture's bngain / bnbias
            entry.update(gain_mean=_finite(affine[a][0]), gain_std=_finite(affine[a][1]))
            a += 1
            if getattr(m, "bias", None) is not None:
                entry.update(bias_mean=_finite(affine[a][0]), bias_std=_finite(affine[a][1]))
                a += 1
        out.append(entry)
    return out
