"""What an activation's outputs say unit by unit: outputs in the function's flat part (saturation),
units flat for every example (dead), and the lecture's |t| > 0.99 image; for the lecture's network
from one |t| of every layer at once (_marks)."""

import functools

import torch
import torch.nn.functional as F

from bnscope.train.diagnostics.kinds import DEAD, DEAD_FLAT, FLAT, MAX_IMAGE_BITS, MAX_IMAGE_ROWS, RELU_FLAT, SATURATION


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
    if (
        all(isinstance(o, torch.Tensor) for o in outputs)
        and len(set(kinds)) == 1
        and len({o.shape for o in outputs}) == 1
        and outputs[0].dim() == 2
    ):
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
    digits = torch.tensor(list(b"0123456789abcdef"), dtype=torch.uint8, device=device)
    return digits, torch.tensor([8.0, 4.0, 2.0, 1.0], device=device)


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
    """(L, B, H) 0/1 floats as (L * B, ceil(H/4)) ASCII codes of hex digits (see _marks)."""
    L, B, H = white.shape
    padded = F.pad(white, (0, (-H) % 4)) if H % 4 else white  # (L, B, 4 * ceil(H/4))
    digits, bits = _hex(padded.device)
    nibbles = padded.view(L, B, -1, 4) @ bits  # (L, B, ceil(H/4)): exact in float, a matmul the fastest sum
    return digits.index_select(0, nibbles.view(-1).long()).view(L * B, -1)


def _marks(
    outputs: list, kinds: tuple[str, ...], stacked: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, list[int], torch.Tensor | None]:
    """Each activation's outputs in its flat part, its dead units, its units, and the lecture's |t| > 0.99
    image of every layer, as (L * B, ceil(H/4)) ASCII codes of hex digits, 4 units a digit, the first unit
    the high bit (when every layer is a tanh of the same 2-D shape, the lecture's network, and small
    enough to send; else None). The lecture's network's from one |t| of every layer at once: of
    `stacked`, the outputs as (L, B * H) rows, when the caller has them so."""
    if not _lecture_shaped(outputs, kinds):
        dead, units = _dead_units(outputs, kinds)
        return _saturated([_one(o) for o in outputs], kinds), dead, units, None
    B, H = outputs[0].shape
    a = stacked.abs() if stacked is not None else torch.stack(outputs).abs_()
    a = a.view(len(outputs), B, H)  # (L, B, H)
    # the comparisons as 0/1 floats: on a CPU ~2.5x faster than bool tensors, and summed as they are
    saturated = torch.ge(a, SATURATION, out=torch.empty_like(a)).sum((1, 2))
    white = torch.gt(a, DEAD, out=torch.empty_like(a))  # the lecture's image: |t| > 0.99
    dead = (white.sum(1) == B).sum(1)  # white for every example (a count: faster than all())
    return (
        saturated,
        dead,
        [H] * len(outputs),
        _hex_image(white) if _imageable(outputs[0]) else None,
    )


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
