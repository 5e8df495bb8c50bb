"""Statistics of a list of tensors from their sums and sums of squares, in a few ops: means and stds
(_mean_std), and update:data, the lecture's log10(std(lr * grad) / std(data))."""

import functools

import torch


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
