"""What the lecture plots, computed on the tensor side and converted to plain Python once.

  activations  every Tanh output: mean, std, saturation % (|t| > 0.97), histogram, dead units
  gradients    the gradient flowing into every Tanh output, and every 2-D weight's gradient
               with its grad:data ratio std(grad) / std(data)
  updates      update:data ratio log10(std(lr * grad) / std(data)) per 2-D weight (~ -3 is healthy)
  batchnorm    every BatchNorm1d's running_mean and running_var

None of this runs on an ordinary step: the trainer asks for it at a cadence.
"""

import math
from contextlib import contextmanager

import torch
import torch.nn as nn

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
    return torch.stack([(lr * p.grad).std() / p.data.std() for p in params]).log10()


class _Packer:
    """Collects tensors and converts them all to Python with a single .tolist()."""

    def __init__(self):
        self.parts: list[tuple[str, torch.Tensor]] = []

    def add(self, key: str, tensor: torch.Tensor) -> None:
        self.parts.append((key, tensor.detach().float()))

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


def _histograms(tensors: list[torch.Tensor], limit: torch.Tensor) -> torch.Tensor:
    """(len(tensors), HIST_BINS) counts over the shared range [-limit, limit]."""
    lim = float(limit)  # one conversion: histc needs Python bounds
    if not math.isfinite(lim) or lim == 0.0:
        lim = 1.0
    return torch.stack([torch.histc(t.float(), bins=HIST_BINS, min=-lim, max=lim) for t in tensors]), lim


def _hex_rows(bits: list[list[int]]) -> list[str]:
    return ["".join("%x" % v for v in row) for row in bits]


def collect(model: nn.Module, tanh_outputs: list[torch.Tensor]) -> dict:
    """Statistics after a backward pass (gradients present, update not yet applied)."""
    packer = _Packer()
    # --- Tanh activations and their gradients: (L, B, H) stacked for one op per statistic
    acts = torch.stack([t.detach() for t in tanh_outputs])
    grads = torch.stack([t.grad for t in tanh_outputs])
    saturated = acts.abs() > DEAD  # (L, B, H)
    packer.add("act_summary", torch.stack([
        acts.mean((1, 2)),
        acts.std((1, 2)),
        (acts.abs() > SATURATION).float().mean((1, 2)) * 100,  # saturation %
        saturated.all(1).sum(1).float(),  # dead units: saturated for every example of the batch
        grads.mean((1, 2)),
        grads.std((1, 2)),
    ], dim=1))  # fmt: skip  (L, 6)
    packer.add("act_hist", torch.stack([torch.histc(a, bins=HIST_BINS, min=-1, max=1) for a in acts]))
    grad_hist, grad_lim = _histograms(list(grads), grads.abs().max())
    packer.add("grad_hist", grad_hist)
    # the |t| > 0.99 image, packed 4 units to a hex digit: (L, B, ceil(H/4))
    L, B, H = saturated.shape
    padded = torch.nn.functional.pad(saturated.to(torch.uint8), (0, (-H) % 4))
    nibbles = (padded.view(L, B, -1, 4) * torch.tensor([8, 4, 2, 1], dtype=torch.uint8)).sum(-1)
    packer.add("image", nibbles.view(L * B, -1))
    # --- 2-D weights: gradient histogram and grad:data ratio
    ws = weights(model)
    packer.add("weight_summary", torch.stack([
        torch.stack([w.grad.mean(), w.grad.std(), w.grad.std() / w.data.std()]) for w in ws
    ]))  # fmt: skip  (W, 3)
    weight_lim_t = torch.stack([w.grad.abs().max() for w in ws]).max()
    weight_hist, weight_lim = _histograms([w.grad for w in ws], weight_lim_t)
    packer.add("weight_hist", weight_hist)
    # --- BatchNorm running statistics (vectors are small: n_hidden or vocab_size each)
    bns = [m for m in model.layers if isinstance(m, nn.BatchNorm1d)]
    for i, bn in enumerate(bns):
        packer.add(f"bn{i}_mean", bn.running_mean)
        packer.add(f"bn{i}_var", bn.running_var)

    v = packer.unpack()
    tanh_names = layer_names(model, nn.Tanh)
    image = v["image"]
    layers = []
    for i, name in enumerate(tanh_names):
        mean, std, saturation, dead, grad_mean, grad_std = v["act_summary"][i]
        layers.append({
            "name": name, "mean": mean, "std": std, "saturation": saturation, "dead": int(dead),
            "grad_mean": grad_mean, "grad_std": grad_std,
            "act_hist": v["act_hist"][i], "grad_hist": v["grad_hist"][i],
            "image": _hex_rows([[int(x) for x in row] for row in image[i * B : (i + 1) * B]]),
        })  # fmt: skip
    weights_out = []
    for i, name in enumerate(weight_names(model)):
        grad_mean, grad_std, grad_to_data = v["weight_summary"][i]
        weights_out.append({
            "name": name, "shape": list(ws[i].shape), "grad_mean": grad_mean, "grad_std": grad_std,
            "grad_to_data": grad_to_data, "grad_hist": v["weight_hist"][i],
        })  # fmt: skip
    batchnorm = []
    for i, name in enumerate(layer_names(model, nn.BatchNorm1d)):
        running_mean, running_var = v[f"bn{i}_mean"], v[f"bn{i}_var"]
        batchnorm.append({
            "name": name,
            "mean_of_running_mean": sum(running_mean) / len(running_mean),
            "mean_of_running_var": sum(running_var) / len(running_var),
            "running_mean": running_mean, "running_var": running_var,
        })  # fmt: skip
    return {
        "layers": layers,
        "act_range": [-1.0, 1.0],
        "grad_range": [-grad_lim, grad_lim],
        "weights": weights_out,
        "weight_grad_range": [-weight_lim, weight_lim],
        "batchnorm": batchnorm,
    }
