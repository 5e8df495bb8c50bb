"""Tensors as rows, those of one size stacked (_Rows): means, stds, ranges and histograms of every row
in one op a size, whatever the number of layers."""

import functools
from dataclasses import dataclass

import torch

from bnscope.train.diagnostics.flat import _bounds
from bnscope.train.diagnostics.kinds import HIST_BINS, SMALL_ROW


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
        sums, norms = [], []
        for g, total in zip(self.groups, self.sums.split([g.shape[0] for g in self.groups])):
            if g.shape[1] <= SMALL_ROW:
                g = g.double()
                total = g.sum(1)
            sums.append(total)
            norms.append(torch.linalg.vector_norm(g, dim=1))
        total, square = torch.cat(sums).double(), torch.cat(norms).double().square_()  # cat promotes to float64
        mean = total / self.plan.sizes
        var = (square - total * mean).div_(self.plan.divisors).clamp_(min=0)
        mean, std = torch.stack([mean, var.sqrt_()]).float()[:, self.plan.order]
        return mean, std

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
        # each row's bins, in place: histc's (x - min) * bins / (max - min), floored, plus the row's first slot
        positions = []
        for g, column, slots in zip(self.binned, columns, self.plan.slots):
            finite = g.isfinite() if self.dirty else None
            pos = g.sub_(column[:, :1]).mul_(column[:, 1:]).clamp_(0, HIST_BINS - 1).floor_().add_(slots)
            if finite is not None:  # not finite: one slot past the end, dropped
                pos = torch.where(finite, pos, self.n_binned * HIST_BINS)
            positions.append(pos.view(-1))
        # every group's counted at once: on a CPU one bincount of int32 (the cheapest conversion); on a GPU
        # a scatter_add_ into a zero tensor, as bincount would wait for the device to learn its output's size
        index, slots = torch.cat(positions), self.n_binned * HIST_BINS + 1
        if index.device.type == "cpu":
            counts = torch.bincount(index.to(torch.int32), minlength=slots)
        else:
            counts = self.plan.ones.new_zeros(slots).scatter_add_(0, index.long(), self.plan.ones)
        return counts[:-1].view(self.n_binned, HIST_BINS)
