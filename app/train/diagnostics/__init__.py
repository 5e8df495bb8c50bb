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

None of this runs on an ordinary step. Each statistic is computed for all layers at once (rows of
one size stacked: one op a size, bnscope.train.diagnostics.rows) and brought to the host in a single copy:
on a small network the cost is the number of torch ops (~3-5 us each on a CPU), not the arithmetic. So
the few numbers a row reduces to (its sums, its range) are worked on in Python once on the host, and on
a CPU, where the host is the device, before that wherever it saves ops: the lecture's network is ~120
ops, ~1 ms here (bench/stats_cost.py).

  kinds   the layer kinds and each activation function's flat part and bounds
  layers  Layers, lecture_layers, find_layers, Probe
  rows    _Rows: means, stds, ranges and histograms of every row
  marks   saturation, dead units and the |t| > 0.99 image
  moments update:data (and means and stds) from sums and sums of squares
"""

import math

import torch

from bnscope.train.diagnostics.moments import (  # noqa: F401
    snapshot,
    step_to_data,
    update_moments,
    update_to_data,
    update_to_data_rows,
)
from bnscope.train.diagnostics.kinds import (  # noqa: F401
    ACTIVATIONS,
    BOUNDS,
    DEAD,
    DEAD_FLAT,
    FLAT,
    HIST_BINS,
    MAX_IMAGE_BITS,
    MAX_IMAGE_ROWS,
    NORMS,
    RELU_FLAT,
    SATURATION,
    SMALL_ROW,
    WEIGHTED,
)
from bnscope.train.diagnostics.layers import Layers, Probe, find_layers, lecture_layers, probe  # noqa: F401
from bnscope.train.diagnostics.marks import _marks, _one
from bnscope.train.diagnostics.rows import _Rows


class _Packer:
    """Collects tensors and brings them all to the host in a single copy: on a GPU, the one
    device-to-host copy (and synchronisation) of a statistics step. They come back as lists of floats,
    or of ints (`form="int"`: counts, exact up to 2**24), or as a str (`form="text"`: ASCII codes). A
    list is already on the host: it comes back as it is."""

    def __init__(self):
        self.parts: list[tuple[str, torch.Tensor, str]] = []
        self.done: dict[str, list] = {}  # what is already on the host, as Python values

    def add(self, key: str, value: torch.Tensor | list, form: str = "float") -> None:
        if isinstance(value, list):
            self.done[key] = value
        else:
            self.parts.append((key, value, form))

    def unpack(self) -> dict:
        if not self.parts or self.parts[0][1].device.type == "cpu":  # on the host: each part converted as it is
            return {**self.done, **{key: _to_python(t, form) for key, t, form in self.parts}}
        return {**self.done, **_through_one_copy(self.parts)}


def _through_one_copy(parts: list[tuple[str, torch.Tensor, str]]) -> dict:
    """The parts concatenated on their device, copied to the host at once, and cut back apart."""
    host = torch.cat([t.reshape(-1) for _, t, _ in parts]).cpu()  # promoted: float64 if a part is
    out, offset = {}, 0
    for key, t, form in parts:
        out[key] = _to_python(host[offset : offset + t.numel()].view(t.shape), form)
        offset += t.numel()
    return out


def _to_python(t: torch.Tensor, form: str):
    """A host tensor as (nested) lists of floats or ints, or as the str its ASCII codes spell."""
    if form == "text":
        return t.to(torch.uint8).numpy().tobytes().decode("ascii")
    if form == "int":
        return t.long().tolist()
    return t.tolist() if t.is_floating_point() else t.float().tolist()  # float64 (the small rows' sums) kept


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
    single copy: (the stats body, {key: values})."""
    v = _on_host(layers, outputs, grads, extra)
    body = {"activations": _activations(layers, outputs, v), "weights": _weights(layers, v), "norms": _norms(layers, v)}
    return body, {key: v[f"extra/{key}"] for key in extra}


def _on_host(layers: Layers, outputs: list, grads: list, extra: dict[str, torch.Tensor]) -> dict:
    """Every statistic, computed on the device and brought to the host in one copy.

    Every tensor is a row: the activations, their gradients and the weights' gradients (which get
    histograms), then the weights and the norms' gain and bias (a mean and a std each). Rows of one
    size are stacked (_Rows), so each statistic is one op a size, whatever the network's depth."""
    kinds = tuple(kind for _, kind, _ in layers.activations)
    acts, ws = [_one(o) for o in outputs], layers.params
    agrads = [_one(g) if g is not None else torch.zeros_like(a) for a, g in zip(acts, grads)]
    wgrads = [w.grad if w.grad is not None else torch.zeros_like(w) for w in ws]
    running = [m for _, _, m, _, _ in layers.norm_parts if m is not None]
    affine = [t for _, _, _, gain, bias in layers.norm_parts for t in (gain, bias) if t is not None]
    binned = acts + agrads + wgrads
    packer, units, running_sizes = _Packer(), [], []
    rows = _Rows(binned + ws + affine, kinds, len(binned)) if binned or affine else None  # no_grad: no detach
    if rows is not None:
        packer.add("sums", rows.sums)
        packer.add("norms", rows.norms)
    if acts:  # before the histograms bin the rows in place
        saturated, dead, units, digits = _marks(outputs, kinds, rows.leading(len(acts)))
        packer.add("saturated", saturated)
        packer.add("dead", dead)
        if digits is not None:
            packer.add("image", digits.view(-1), form="text")
    if binned:
        ranges, counts = rows.histograms()
        packer.add("hist", counts, form="int")
        packer.add("range", ranges)
    if running:  # the lecture's own layer keeps them (1, C) once it has trained a step
        buffers = [m.running_mean for m in running] + [m.running_var for m in running]
        packer.add("running", torch.cat([b if b.dim() == 1 else b.reshape(-1) for b in buffers]))
        running_sizes = [b.numel() for b in buffers[: len(running)]]
    for key, tensor in extra.items():
        packer.add(f"extra/{key}", tensor)
    v = packer.unpack()
    if rows is not None:
        v["mean"], v["std"] = rows.mean_std(v.pop("sums"), v.pop("norms"))
    first = 2 * len(acts) + 2 * len(ws)  # the gains' and biases' rows
    v["affine"] = [[v["mean"][r], v["std"][r]] for r in range(first, first + len(affine))]
    v["units"], v["sizes"], v["measured"] = units, [a.numel() for a in acts], [g is not None for g in grads]
    v["running_sizes"] = running_sizes  # each norm's units
    return v


def _activations(layers: Layers, outputs: list, v: dict) -> list[dict]:
    L = len(layers.activations)
    means, stds, hist, ranges = v.get("mean", []), v.get("std", []), v.get("hist", []), v.get("range", [])
    images = _images(v["image"], L, outputs[0].shape[0]) if "image" in v else None
    out = []
    for i, (name, kind, _) in enumerate(layers.activations):
        g, measured = L + i, v["measured"][i]  # its gradient's row
        entry = {
            "name": name,
            "kind": kind,
            "units": v["units"][i],
            "mean": _finite(means[i]),
            "std": _finite(stds[i]),
            "saturation": v["saturated"][i] * 100 / max(v["sizes"][i], 1),
            "dead": int(v["dead"][i]),
            "hist": hist[i],
            "range": ranges[i],
            "grad_mean": _finite(means[g]) if measured else None,
            "grad_std": _finite(stds[g]) if measured else None,
            "grad_hist": hist[g],
            "grad_range": ranges[g],
        }
        if images:
            entry["image"] = images[i]
        out.append(entry)
    return out


def _images(text: str, L: int, B: int) -> list[list[str]]:
    """The |t| > 0.99 image's text cut into each layer's B rows of hex digits."""
    cols = len(text) // (L * B)
    rows = [text[r * cols : (r + 1) * cols] for r in range(L * B)]
    return [rows[i * B : (i + 1) * B] for i in range(L)]


def _weights(layers: Layers, v: dict) -> list[dict]:
    L, W = len(layers.activations), len(layers.weights)
    means, stds, hist, ranges = v.get("mean", []), v.get("std", []), v.get("hist", []), v.get("range", [])
    out = []
    for i, (name, kind, w) in enumerate(layers.weights):
        g, d = 2 * L + i, 2 * L + W + i  # its gradient's row, its own
        out.append(
            {
                "name": name,
                "kind": kind,
                "shape": list(w.shape),
                "data_std": _finite(stds[d]),
                "grad_mean": _finite(means[g]),
                "grad_std": _finite(stds[g]),
                "grad_to_data": _finite(stds[g] / stds[d]) if stds[d] else None,
                "grad_hist": hist[g],
                "grad_range": ranges[g],
            }
        )
    return out


def _norms(layers: Layers, v: dict) -> list[dict]:
    running, half, offset = v.get("running", []), len(v.get("running", [])) // 2, 0
    affine, sizes = iter(v.get("affine", [])), iter(v["running_sizes"])
    out = []
    for name, kind, module, gain, bias in layers.norm_parts:
        entry: dict = {"name": name, "kind": kind}
        if module is not None:
            n = next(sizes)
            mean, var = running[offset : offset + n], running[half + offset : half + offset + n]
            offset += n
            entry.update(
                running_mean=mean,
                running_var=var,
                mean_of_running_mean=_finite(sum(mean) / n),
                mean_of_running_var=_finite(sum(var) / n),
            )
        if gain is not None:
            gain_mean, gain_std = next(affine)
            entry.update(gain_mean=_finite(gain_mean), gain_std=_finite(gain_std))
            if bias is not None:
                bias_mean, bias_std = next(affine)
                entry.update(bias_mean=_finite(bias_mean), bias_std=_finite(bias_std))
        out.append(entry)
    return out
