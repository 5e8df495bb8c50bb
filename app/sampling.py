"""Names from a trained network, generated as one batch (makemore's sampling, with temperature)."""

import torch
import torch.nn.functional as F

from bnscope.data import decode, encode, outside_vocab


PREFIX_PATTERN = "^[a-z]*$"


def check_prefix(prefix: str) -> str:
    bad = outside_vocab(prefix)
    if bad:
        raise ValueError(f"prefix has characters outside a-z: {' '.join(map(repr, bad))}")
    return prefix


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
) -> list[dict]:
    """`n` names, each {"name", "novel"}: novel = not in the training split. The model must be
    in eval mode (BatchNorm on running statistics) and is not changed. A name stops at '.' or
    after `max_len` characters, prefix included. Same seed, same names."""
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
    start = [0] * block_size + encode(prefix)
    context = torch.tensor(start[-block_size:], device=device).repeat(n, 1)  # (n, block_size)
    out = torch.zeros((n, max(max_len - len(prefix), 0)), dtype=torch.long, device=device)  # (n, T)
    active = torch.arange(n, device=device)  # the names still growing: only they go through the network
    with torch.inference_mode():
        for t in range(out.shape[1]):
            logits = model(context[active]) / temperature  # (A, vocab)
            ix = torch.multinomial(F.softmax(logits, dim=1), num_samples=1, generator=generator).squeeze(1)  # (A,)
            out[active, t] = ix
            context[active] = torch.cat([context[active, 1:], ix.unsqueeze(1)], dim=1)  # crop and append
            active = active[ix != 0]  # a name that drew '.' is finished
            if active.numel() == 0:
                break
    names = []
    for row in out.tolist():
        end = row.index(0) if 0 in row else len(row)
        name = prefix + decode(row[:end])
        names.append({"name": name, "novel": name not in train_words})
    return names
