"""Tensors as rows, those of one size stacked (_Rows): means, stds, ranges and histograms of every row
in one op a size, whatever the number of layers."""

import functools
import math
from dataclasses import dataclass

import torch

from bnscope.train.diagnostics.kinds import BOUNDS, HIST_BINS, SMALL_ROW


@dataclass(frozen=True)
class _Plan:
    """How _Rows groups a list of tensors by size, made once per list of shapes. "The groups' order" is
    the groups' rows one after the other; each group's binned rows come first (they are the first
    n_binned rows of all)."""

    members: list[list[int]]  # each group's rows, in order
    same_shape: list[bool]  # whether a group's tensors are all of one shape (stacked in one op)
    widths: list[int]  # each group's size
    binned: list[int]  # how many of each group's rows are binned
    binned_order: torch.Tensor  # the binned rows in the groups' order -> their own order
    bounds: list[tuple[float, float] | None]  # each binned row's fixed range (tanh [-1, 1]), the groups' order
    symmetric: list[bool]  # ...whether it is a gradient's, binned over [-max|x|, max|x|]
    binned_rows: list[int]  # ...its own row
    fixed: torch.Tensor  # (n_binned, 2) `bounds` on the device, NaN for None
    symmetric_mask: torch.Tensor  # (n_binned,) `symmetric` on the device
    slots: torch.Tensor  # each binned value's row's first histogram slot (row * HIST_BINS), int32, the groups' order
    ones: torch.Tensor  # as many ones as binned values, to count them with
    grouped: list[tuple[int, int]]  # each row and its size, the groups' order


@functools.lru_cache(maxsize=32)
def _plan(shapes: tuple[torch.Size, ...], kinds: tuple[str, ...], n_binned: int, device: torch.device) -> _Plan:
    sizes = [math.prod(shape) for shape in shapes]
    by_size: dict[int, list[int]] = {}
    for row, size in enumerate(sizes):
        by_size.setdefault(size, []).append(row)
    members = list(by_size.values())
    binned = [row for rows in members for row in rows if row < n_binned]
    bounds = [BOUNDS.get(kinds[row]) if row < len(kinds) else None for row in binned]
    symmetric = [row >= len(kinds) for row in binned]
    binned_sizes = torch.tensor([sizes[row] for row in binned], dtype=torch.long)
    return _Plan(
        members,
        [len({shapes[row] for row in rows}) == 1 for rows in members],
        list(by_size),
        [sum(1 for row in rows if row < n_binned) for rows in members],
        torch.argsort(torch.tensor(binned)).to(device),
        bounds,
        symmetric,
        binned,
        torch.tensor([b or (math.nan, math.nan) for b in bounds], dtype=torch.float32, device=device).reshape(-1, 2),
        torch.tensor(symmetric, dtype=torch.bool, device=device),
        torch.tensor(binned, dtype=torch.int32).mul_(HIST_BINS).repeat_interleave(binned_sizes).to(device),
        torch.ones(int(binned_sizes.sum()), dtype=torch.long, device=device),
        [(row, sizes[row]) for rows in members for row in rows],
    )


class _Rows:
    """Tensors as rows, those of one size stacked into one (G, n) float tensor: a statistic of every
    row is one op a size, whatever the number of layers. The first `n_binned` rows get histograms: the
    first len(kinds) of them are activations of those kinds, the rest gradients. A value that is not
    finite makes its row's mean and std None, and is counted in no range and no histogram."""

    def __init__(self, tensors: list[torch.Tensor], kinds: tuple[str, ...], n_binned: int):
        device = tensors[0].device
        self.n_binned = n_binned
        self.plan = plan = _plan(tuple(t.shape for t in tensors), kinds, n_binned, device)
        self.groups = [
            (
                torch.stack([tensors[r] for r in rows]) if same else torch.stack([tensors[r].reshape(-1) for r in rows])
            ).view(len(rows), width)
            for rows, same, width in zip(plan.members, plan.same_shape, plan.widths)
        ]
        if any(g.dtype != torch.float32 for g in self.groups):  # e.g. fp16 or bf16: their statistics in float32
            self.groups = [g.float() for g in self.groups]
        self.binned = [g if b == g.shape[0] else g[:b] for g, b in zip(self.groups, plan.binned) if b]
        # each group's sums and sums of squares, while it is in the cache: small rows (a norm's gain and
        # bias, whose mean sits far from 0 next to their spread, where float32's sum of squares would
        # cancel) in float64; big ones (activations, gradients, weights: means near 0 next to their spread)
        # in float32
        wide = [g if g.shape[1] > SMALL_ROW else g.double() for g in self.groups]
        self.sums = torch.cat([g.sum(1) for g in wide])  # float64 if any row is small (cat promotes)
        self.norms = torch.cat([torch.linalg.vector_norm(g, dim=1) for g in wide])
        # a sum that is not finite has a value that is not; on a CPU the sums are read here (on a GPU, reading
        # would wait for the device: the values are always masked there)
        if device.type == "cpu":
            self.sums, self.norms = self.sums.tolist(), self.norms.tolist()
        self.dirty = device.type != "cpu" or not all(map(math.isfinite, self.sums))

    def leading(self, n: int) -> torch.Tensor | None:
        """The first n rows as one (n, size) tensor, when they were stacked together (one size), else
        None: the activations, for the marks, before histograms() bins them in place."""
        first = self.groups[0]
        return first[:n] if n and len(self.plan.members[0]) >= n and self.plan.members[0][n - 1] == n - 1 else None

    def mean_std(self, sums: list[float], norms: list[float]) -> tuple[list[float], list[float]]:
        """Each row's mean and std (unbiased, as torch.std), in its own order, from `sums` and `norms` (as
        brought to the host): in float64, a few flops a row, on the host."""
        mean, std = [0.0] * len(sums), [0.0] * len(sums)
        for (row, n), total, norm in zip(self.plan.grouped, sums, norms):
            mean[row] = total / n
            std[row] = math.sqrt(max((norm * norm - total * mean[row]) / max(n - 1, 1), 0.0))  # NaN stays NaN
        return mean, std

    def histograms(self) -> tuple[list | torch.Tensor, torch.Tensor]:
        """(n_binned, 2) each binned row's range (on a CPU already a list) and (n_binned, HIST_BINS) its
        counts, binned as torch.histc bins (a value at hi in the last bin). The range: an activation's
        function's bounds (tanh [-1, 1]), else its batch's min..max; a gradient's [-max|x|, max|x|]; one
        with every value equal is widened to [lo-1, lo+1]. The last use of the rows: they are binned in
        place (the stacked copies are ours; a new tensor of this size is a fresh mmap on a CPU, and its
        page faults cost more than the arithmetic)."""
        lo, hi = [], []
        for g in self.binned:
            values = g.nan_to_num(0.0, 0.0, 0.0) if self.dirty else g  # a value that is not finite: as 0
            if not values.shape[1]:
                values = values.new_zeros(values.shape[0], 1)
            lo.append(values.amin(1))
            hi.append(values.amax(1))
        lo_hi = torch.cat(lo + hi)  # the groups' order
        # the range math on n_binned numbers: on a CPU in Python, cheaper than the tensor ops' ~5 us each
        if lo_hi.device.type == "cpu":
            values = lo_hi.tolist()
            ranges = _host_ranges(self.plan, values[: self.n_binned], values[self.n_binned :])
            lo_scale = torch.tensor([a for a, _ in ranges] + [HIST_BINS / (b - a) for a, b in ranges])
            own = [[0.0, 0.0]] * self.n_binned
            for row, r in zip(self.plan.binned_rows, ranges):
                own[row] = list(r)
        else:
            ranges = _device_ranges(self.plan, *lo_hi.view(2, -1))
            lo_scale = torch.cat([ranges[:, 0], HIST_BINS / (ranges[:, 1] - ranges[:, 0])])
            own = ranges[self.plan.binned_order]
        per_group = [g.shape[0] for g in self.binned]
        lo_scale = lo_scale.view(2, -1, 1)
        los, scales = lo_scale[0].split_with_sizes(per_group), lo_scale[1].split_with_sizes(per_group)  # (b, 1) a group
        # each value's bin, in place: histc's (x - min) * bins / (max - min)
        finite = torch.cat([g.isfinite().view(-1) for g in self.binned]) if self.dirty else None
        index = torch.cat([g.sub_(lo).mul_(scale).view(-1) for g, lo, scale in zip(self.binned, los, scales)])
        # truncated to int32 (== floored: every bin >= 0), a value at max in the last bin, and moved to its row's
        # slots; a value that is not finite past them all, dropped
        index, slots = index.to(torch.int32).clamp_(0, HIST_BINS - 1).add_(self.plan.slots), self.n_binned * HIST_BINS
        if finite is not None:
            index = torch.where(finite, index, slots)
        return own, _count(index, slots, self.plan.ones).view(self.n_binned, HIST_BINS)


def _host_ranges(plan: _Plan, lo: list[float], hi: list[float]) -> list[tuple[float, float]]:
    """Each binned row's histogram range from its min and max, the groups' order, as _device_ranges works it out."""
    ranges = []
    for bounds, symmetric, a, b in zip(plan.bounds, plan.symmetric, lo, hi):
        if bounds is not None:
            a, b = bounds
        elif symmetric:
            b = max(b, -a)
            a = -b
        ranges.append((a - 1, a + 1) if b <= a else (a, b))  # every value equal: widened
    return ranges


def _device_ranges(plan: _Plan, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """_host_ranges's rule in tensor ops, for a GPU (no copy to the host, no wait): (n_binned, 2), the groups' order."""
    bound = torch.maximum(hi, -lo)
    lo = torch.where(plan.symmetric_mask, -bound, lo)
    hi = torch.where(plan.symmetric_mask, bound, hi)
    ranges = torch.where(plan.fixed.isnan(), torch.stack([lo, hi], 1), plan.fixed)
    lo, hi = ranges.unbind(1)
    empty = hi <= lo
    return torch.stack([torch.where(empty, lo - 1, lo), torch.where(empty, lo + 1, hi)], 1)


def _count(index: torch.Tensor, slots: int, ones: torch.Tensor) -> torch.Tensor:
    """(slots,) how many times each slot is in `index` (int32; a value >= slots counts nowhere), every
    row's histogram at once: on a CPU one bincount; on a GPU a scatter_add_ of `ones` (as many as
    `index`) into a zero tensor, as bincount would wait for the device to learn its output's size."""
    if index.device.type == "cpu":
        return torch.bincount(index, minlength=slots)[:slots]
    return _scatter_count(index, slots, ones)


def _scatter_count(index: torch.Tensor, slots: int, ones: torch.Tensor) -> torch.Tensor:
    return ones.new_zeros(slots + 1).scatter_add_(0, index.long().clamp_(max=slots), ones)[:slots]
