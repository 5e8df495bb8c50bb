"""Statistics of a list of tensors in a few ops: means and stds (_mean_std), update:data, and the flat
form (every tensor flattened into one vector, a row index telling which tensor an element is of)
with its ranges and histograms, which the stacked trainer uses."""

import functools
import math

import torch

from bnscope.train.diagnostics.kinds import BOUNDS, FLAT, HIST_BINS, RELU_FLAT


def update_to_data(params: list[torch.Tensor], lr: float) -> torch.Tensor:
    """log10(std(lr * grad) / std(data)) per parameter, as one (P,) tensor (no conversion)."""
    lrs = torch.tensor([lr], device=params[0].device)
    return update_to_data_rows(update_moments(params)[None], _sizes(params), lrs)[0]


def update_moments(params: list[torch.Tensor]) -> torch.Tensor:
    """(2, 2P) update:data's raw form: the sums and sums of squares of every parameter's gradient, then of
    its data. The trainer keeps one a measurement and turns them into ratios at a flush, many at once
    (update_to_data_rows): the ratio's dozen small ops then run once a flush, not once a measurement."""
    return _moments([p.grad for p in params] + [p.data for p in params])


def update_to_data_rows(moments: torch.Tensor, sizes: tuple[int, ...], lrs: torch.Tensor) -> torch.Tensor:
    """(k, P) update:data from k rows of update_moments, each taken at the lr in `lrs` (k,); `sizes` the
    parameters' numel."""
    _, std = _from_moments(moments, _counts(sizes + sizes, moments.device))
    grad_std, data_std = std.unflatten(-1, (2, -1)).unbind(-2)  # (k, 2P) -> (k, P) each
    return (lrs[:, None] * grad_std / data_std).log10()


def _sizes(tensors: list[torch.Tensor]) -> tuple[int, ...]:
    return tuple(t.numel() for t in tensors)


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
    return _from_moments(_moments(tensors), _counts(_sizes(tensors), tensors[0].device))


def _moments(tensors: list[torch.Tensor]) -> torch.Tensor:
    """(2, T) every tensor's sum and sum of squares, fp16/bf16 tensors summed in fp32."""
    sums = torch.stack([t.sum(dtype=torch.float32) for t in tensors])
    return torch.stack([sums, torch.stack(torch._foreach_norm(tensors)).float().square()])


def _from_moments(moments: torch.Tensor, n: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Means and unbiased stds (..., T) from moments (..., 2, T) of tensors of n (T,) elements."""
    sums, sumsq = moments.unbind(-2)
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
