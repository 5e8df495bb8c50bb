"""What the lecture plots, computed on the tensor side and converted to plain Python once.

  activations  every Tanh output: mean, std, saturation % (|t| > 0.97), histogram, dead units
  gradients    the gradient flowing into every Tanh output, and every 2-D weight's gradient
               with its grad:data ratio std(grad) / std(data)
  updates      update:data ratio log10(std(lr * grad) / std(data)) per 2-D weight (~ -3 is healthy)
  batchnorm    every BatchNorm1d's running_mean and running_var

None of this runs on an ordinary step: the trainer asks for it at a cadence. Each statistic is
computed for all layers at once (stacked, or one op over a list) and converted to Python with one
.tolist(): on the lecture's small network the cost is the number of torch ops, not the arithmetic.
"""

import functools
import math
from contextlib import contextmanager

import torch
import torch.nn as nn
import torch.nn.functional as F

HIST_BINS = 50
SATURATION = 0.97  # the lecture's "saturated" threshold for the saturation percentage
DEAD = 0.99  # the lecture's white pixels in the |t| > 0.99 image; all-white column = dead unit


def layer_names(model: nn.Module, kind: type) -> list[str]:
    """Lecture-style names: 'tanh1', 'linear3', 'batchnorm2' (1-based, counted per kind)."""
    prefix = kind.__name__.lower().removesuffix("1d")  # BatchNorm1d -> batchnorm
    return [f"{prefix}{i}" for i in range(1, sum(isinstance(m, kind) for m in model.layers) + 1)]


def weight_names(model: nn.Module) -> list[str]:
    """The 2-D weights the lecture plots: the embedding table C and every Linear's weight."""
    return ["C"] + layer_names(model, nn.Linear)


def weights(model: nn.Module) -> list[torch.Tensor]:
    return [model.embedding.weight] + [m.weight for m in model.layers if isinstance(m, nn.Linear)]


@contextmanager
def probe_activations(model: nn.Module):
    """For one forward/backward pass, keep every Tanh output and its gradient (the lecture's
    `layer.out.retain_grad()`). Hooks exist only inside the `with`, so ordinary steps pay nothing."""
    outputs: list[torch.Tensor] = []

    def keep(module, inputs, out):
        out.retain_grad()
        outputs.append(out)

    handles = [m.register_forward_hook(keep) for m in model.layers if isinstance(m, nn.Tanh)]
    try:
        yield outputs
    finally:
        for handle in handles:
            handle.remove()


def update_to_data(params: list[torch.Tensor], lr: float) -> torch.Tensor:
    """log10(std(lr * grad) / std(data)) per parameter, as one (P,) tensor (no conversion)."""
    _, std = _mean_std([p.grad for p in params] + [p.data for p in params])
    grad_std, data_std = std.view(2, -1)
    return (lr * grad_std / data_std).log10()


def _mean_std(tensors: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Every tensor's mean and std (unbiased, as torch.std), as two (T,) tensors, in a few
    ops for the whole list: from the sums and the sums of squares (torch.std's pass is slow on a CPU)."""
    n = tensors[0].new_tensor([t.numel() for t in tensors])
    sums = torch.stack([t.sum() for t in tensors])
    sumsq = torch.stack(torch._foreach_norm(tensors)).square()
    mean = sums / n
    var = (sumsq - sums * mean) / (n - 1)
    return mean, var.clamp_(min=0).sqrt()


def _histograms(values: torch.Tensor, lim: torch.Tensor | float, offset: torch.Tensor, n_rows: int) -> torch.Tensor:
    """(n_rows, HIST_BINS) counts in one bincount, binned as torch.histc bins: a value goes to the
    histogram at `offset` (row * HIST_BINS) over [-lim, lim]; `lim` and `offset` broadcast against
    `values`, and every value must lie in its range (no NaN)."""
    pos = (values + lim) * HIST_BINS / (2 * lim)  # histc's (x - min) * bins / (max - min), truncated
    index = pos.clamp_(0, HIST_BINS - 1).long() + offset  # x == max: the last bin, as in histc
    return torch.bincount(index.view(-1), minlength=n_rows * HIST_BINS).view(n_rows, HIST_BINS)


@functools.lru_cache(maxsize=16)
def _weight_offsets(sizes: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """HIST_BINS * k for every element of the k-th weight, the weights flattened and concatenated."""
    rows = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    return (rows * HIST_BINS).to(device)


def _half_width(lim: float) -> float | None:
    """A histogram's range [-lim, lim] from the largest |value|: 1 if that is 0; None if it is not finite."""
    return None if not math.isfinite(lim) else lim if lim > 0 else 1.0


HEX = torch.tensor(list(b"0123456789abcdef"), dtype=torch.uint8)


def _hex_rows(saturated: torch.Tensor) -> list[str]:
    """(L, B, H) bools -> L * B strings of ceil(H/4) hex digits, 4 units a digit, the first unit the high bit."""
    L, B, H = saturated.shape
    padded = F.pad(saturated.to(torch.uint8), (0, (-H) % 4))  # (L, B, 4 * ceil(H/4))
    bits = torch.tensor([8, 4, 2, 1], dtype=torch.uint8, device=padded.device)
    nibbles = (padded.view(L, B, -1, 4) * bits).sum(-1)  # (L, B, ceil(H/4)), int64 to index with
    digits = HEX.to(nibbles.device).index_select(0, nibbles.view(-1)).cpu()  # ASCII codes, contiguous
    text = bytes(digits.tolist()).decode("ascii")
    cols = nibbles.shape[-1]
    return [text[r * cols : (r + 1) * cols] for r in range(L * B)]


class _Packer:
    """Collects float tensors and converts them all to Python with a single .tolist()."""

    def __init__(self):
        self.parts: list[tuple[str, torch.Tensor]] = []

    def add(self, key: str, tensor: torch.Tensor) -> None:
        self.parts.append((key, tensor.float()))

    def unpack(self) -> dict[str, list]:
        flat = torch.cat([t.reshape(-1) for _, t in self.parts]).tolist()
        out, offset = {}, 0
        for key, t in self.parts:
            n = t.numel()
            values = flat[offset : offset + n]
            offset += n
            if t.dim() == 2:
                cols = t.shape[1]
                values = [values[r * cols : (r + 1) * cols] for r in range(t.shape[0])]
            out[key] = values
        return out


@torch.no_grad()
def collect(model: nn.Module, tanh_outputs: list[torch.Tensor], tanh_grads: list[torch.Tensor] | None = None) -> dict:
    """Statistics after a backward pass (gradients present, update not yet applied). `tanh_grads`
    are the loss's gradients w.r.t. `tanh_outputs`; by default each output's .grad (as
    probe_activations and loss.backward() leave them). Histograms of non-finite values are empty."""
    if tanh_grads is None:
        tanh_grads = [t.grad for t in tanh_outputs]
    L, (B, H) = len(tanh_outputs), tanh_outputs[0].shape
    ws = weights(model)
    W = len(ws)
    grads = [w.grad for w in ws]
    packer = _Packer()
    # --- Tanh activations and their gradients: row l of `ag` is tanh l+1's outputs, row L + l their gradients
    ag = torch.cat(tanh_outputs + tanh_grads).view(2 * L, B * H)
    ag_abs = ag.abs()
    weight_grads = torch.cat([g.reshape(-1) for g in grads])  # every 2-D weight's gradient, flattened
    # the histograms' shared ranges: the largest |gradient| of the tanh outputs and of the weights
    grad_max, weight_max = torch.stack([ag_abs[L:].amax(), weight_grads.abs().amax()]).tolist()
    grad_lim, weight_lim = _half_width(grad_max), _half_width(weight_max)
    ag_mean = ag.mean(1, keepdim=True)  # (2L, 1)
    packer.add("ag_mean", ag_mean.view(-1))
    packer.add("ag_dev", torch.linalg.vector_norm(ag - ag_mean, dim=1))  # sqrt(B*H - 1) * std: two passes, as torch.std
    acts_abs = ag_abs[:L]  # (L, B*H)
    packer.add("saturated", (acts_abs > SATURATION).sum(1))  # of B * H values
    white = (acts_abs > DEAD).view(L, B, H)  # the lecture's |t| > 0.99 image
    packer.add("dead", (acts_abs.view(L, B, H).amin(1) > DEAD).sum(1))  # units white for every example
    if grad_lim is not None:
        lims = ag.new_tensor([1.0] * L + [grad_lim] * L).view(2 * L, 1)
        offsets = torch.arange(0, 2 * L * HIST_BINS, HIST_BINS, device=ag.device).view(2 * L, 1)
        packer.add("hist", _histograms(ag, lims, offsets, 2 * L))  # act_hist rows, then grad_hist rows
    else:
        packer.add("hist", ag.new_zeros(2 * L, HIST_BINS))
    # --- 2-D weights: gradient mean and std, grad:data ratio, gradient histograms over a shared range
    mean, std = _mean_std(grads + [w.data for w in ws])
    packer.add("weight_summary", torch.stack([mean[:W], std[:W], std[:W] / std[W:]], dim=1))  # (W, 3)
    if weight_lim is not None:
        offsets = _weight_offsets(tuple(w.numel() for w in ws), ag.device)
        packer.add("weight_hist", _histograms(weight_grads, weight_lim, offsets, W))
    else:
        packer.add("weight_hist", ag.new_zeros(W, HIST_BINS))
    # --- BatchNorm running statistics (vectors are small: n_hidden or vocab_size each)
    bns = [m for m in model.layers if isinstance(m, nn.BatchNorm1d)]
    if bns:
        packer.add("bn", torch.cat([bn.running_mean for bn in bns] + [bn.running_var for bn in bns]))

    v = packer.unpack()
    image = _hex_rows(white)
    ag_std = [dev / math.sqrt(B * H - 1) for dev in v["ag_dev"]]
    layers = []
    for i, name in enumerate(layer_names(model, nn.Tanh)):
        layers.append({
            "name": name, "mean": v["ag_mean"][i], "std": ag_std[i],
            "saturation": v["saturated"][i] * 100 / (B * H), "dead": int(v["dead"][i]),
            "grad_mean": v["ag_mean"][L + i], "grad_std": ag_std[L + i],
            "act_hist": v["hist"][i], "grad_hist": v["hist"][L + i],
            "image": image[i * B : (i + 1) * B],
        })  # fmt: skip
    weights_out = []
    for i, name in enumerate(weight_names(model)):
        grad_mean, grad_std, grad_to_data = v["weight_summary"][i]
        weights_out.append({
            "name": name, "shape": list(ws[i].shape), "grad_mean": grad_mean, "grad_std": grad_std,
            "grad_to_data": grad_to_data, "grad_hist": v["weight_hist"][i],
        })  # fmt: skip
    batchnorm, offset = [], 0
    running = v.get("bn", [])  # every running_mean, then every running_var
    for name, bn in zip(layer_names(model, nn.BatchNorm1d), bns):
        n, half = bn.num_features, len(running) // 2
        running_mean, running_var = running[offset : offset + n], running[half + offset : half + offset + n]
        offset += n
        batchnorm.append({
            "name": name,
            "mean_of_running_mean": sum(running_mean) / len(running_mean),
            "mean_of_running_var": sum(running_var) / len(running_var),
            "running_mean": running_mean, "running_var": running_var,
        })  # fmt: skip
    grad_lim, weight_lim = grad_lim or 1.0, weight_lim or 1.0
    return {
        "layers": layers,
        "act_range": [-1.0, 1.0],
        "grad_range": [-grad_lim, grad_lim],
        "weights": weights_out,
        "weight_grad_range": [-weight_lim, weight_lim],
        "batchnorm": batchnorm,
    }
