"""Names from a trained network (makemore's sampling, with temperature): generated as one batch, or one
name at a time as the lecture's last cell draws them."""

import torch
import torch.nn.functional as F

from bnscope.train.data import check_prefix, decode, encode


def sample_names(
    model: torch.nn.Module,
    n: int,
    *,
    block_size: int,
    temperature: float = 1.0,
    prefix: str = "",
    seed: int | None = None,
    max_len: int = 30,
    train_words: frozenset[str] = frozenset(),
    one_at_a_time: bool = False,
) -> list[dict]:
    """`n` names, each {"name", "novel"}: novel = not in the training split. The model must be
    in eval mode (BatchNorm on running statistics) and is not changed. A name stops at '.' or
    after `max_len` characters, prefix included. Same seed, same names.

    `one_at_a_time`: each name drawn to its end before the next begins, one character a forward pass,
    as the lecture's last cell does (slower): with seed 2147483647 + 10 the notebook's own draws."""
    check_prefix(prefix)
    if temperature <= 0:
        raise ValueError("temperature must be > 0")
    if n < 0:
        raise ValueError("n must be >= 0")
    if n == 0:
        return []  # the network cannot take an empty batch
    device = next(model.parameters()).device
    generator = torch.Generator(device=device)
    generator.manual_seed(seed if seed is not None else int(torch.randint(0, 2**62, (1,))))
    context = ([0] * block_size + encode(prefix))[-block_size:]
    steps = max(max_len - len(prefix), 0)
    with torch.inference_mode():
        if one_at_a_time:
            rows = [_draw_one(model, context, steps, temperature, generator) for _ in range(n)]
        else:
            rows = _draw_batch(model, context, n, steps, temperature, generator)
    names = []
    for row in rows:
        end = row.index(0) if 0 in row else len(row)
        name = prefix + decode(row[:end])
        names.append({"name": name, "novel": name not in train_words})
    return names


def _draw_batch(
    model: torch.nn.Module, context: list[int], n: int, steps: int, temperature: float, generator: torch.Generator
) -> list[list[int]]:
    """`n` names' characters drawn side by side, one batched forward pass a character."""
    device = generator.device
    contexts = torch.tensor(context, device=device).repeat(n, 1)  # (n, block_size)
    out = torch.zeros((n, steps), dtype=torch.long, device=device)  # (n, T)
    active = torch.arange(n, device=device)  # the names still growing: only they go through the network
    for t in range(steps):
        logits = model(contexts[active]) / temperature  # (A, vocab)
        ix = torch.multinomial(F.softmax(logits, dim=1), num_samples=1, generator=generator).squeeze(1)  # (A,)
        out[active, t] = ix
        contexts[active] = torch.cat([contexts[active, 1:], ix.unsqueeze(1)], dim=1)  # crop and append
        active = active[ix != 0]  # a name that drew '.' is finished
        if active.numel() == 0:
            break
    return out.tolist()


def _draw_one(
    model: torch.nn.Module, context: list[int], steps: int, temperature: float, generator: torch.Generator
) -> list[int]:
    """One name's characters, drawn as the lecture's last cell draws them: a (1, block_size) context a step."""
    out = []
    for _ in range(steps):
        logits = model(torch.tensor([context], device=generator.device)) / temperature  # (1, vocab)
        ix = torch.multinomial(F.softmax(logits, dim=1), num_samples=1, generator=generator).item()
        context = context[1:] + [ix]  # crop and append
        out.append(ix)
        if ix == 0:  # '.' ends the name
            break
    return out
