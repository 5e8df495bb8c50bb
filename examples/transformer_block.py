"""A tiny character-level transformer on bnscope's names (LayerNorm, causal self-attention, GELU),
trained with AdamW and watched by bnscope.

    python examples/transformer_block.py --data-dir runs      # then: bnscope serve --data-dir runs
    python examples/transformer_block.py --server http://127.0.0.1:8000

It predicts the next character of a name from the 8 before it, as makemore does, with two pre-norm
blocks: x + attn(ln1(x)), then x + mlp(ln2(x)), the MLP Linear -> GELU -> Linear. On the dashboard:
  activations  `blocks.0.mlp.1`, `blocks.1.mlp.1` (GELU: saturation is the share of outputs <= 0,
               where its gradient is small)
  weights      `token`, `position` (embeddings), `blocks.0.attn.in_proj_weight` (query, key and value
               projections), `blocks.0.attn.out_proj`, `blocks.0.mlp.0`, `blocks.0.mlp.2`, ... `head`
  norms        `blocks.0.ln1`, `blocks.0.ln2`, ..., `ln_f` (LayerNorm: gain and bias; no running stats)
"""

import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F

import bnscope
from bnscope.train.data import VOCAB_SIZE, make_splits, read_names

BLOCK_SIZE, N_EMBD, N_HEAD = 8, 32, 4


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(N_EMBD), nn.LayerNorm(N_EMBD)
        self.attn = nn.MultiheadAttention(N_EMBD, N_HEAD, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(N_EMBD, 4 * N_EMBD), nn.GELU(), nn.Linear(4 * N_EMBD, N_EMBD))
        self.register_buffer("causal", torch.triu(torch.ones(BLOCK_SIZE, BLOCK_SIZE, dtype=torch.bool), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln1(x)
        x = x + self.attn(h, h, h, attn_mask=self.causal, need_weights=False)[0]
        return x + self.mlp(self.ln2(x))


class TinyTransformer(nn.Module):
    def __init__(self, n_blocks: int = 2):
        super().__init__()
        self.token = nn.Embedding(VOCAB_SIZE, N_EMBD)
        self.position = nn.Embedding(BLOCK_SIZE, N_EMBD)
        self.blocks = nn.Sequential(*[Block() for _ in range(n_blocks)])
        self.ln_f = nn.LayerNorm(N_EMBD)
        self.head = nn.Linear(N_EMBD, VOCAB_SIZE)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:  # (B, T) -> (B, T, vocab)
        x = self.token(idx) + self.position(torch.arange(idx.shape[1], device=idx.device))
        return self.head(self.ln_f(self.blocks(x)))


def sequences(words: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Every name as (context, next character) windows of BLOCK_SIZE, '.' before and after it."""
    X, Y = [], []
    for w in words:
        ix = [0] * BLOCK_SIZE + [1 + ord(c) - ord("a") for c in w] + [0]
        for i in range(len(ix) - BLOCK_SIZE):
            X.append(ix[i : i + BLOCK_SIZE])
            Y.append(ix[i + 1 : i + BLOCK_SIZE + 1])
    return torch.tensor(X), torch.tensor(Y)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", help="a running bnscope serve, e.g. http://127.0.0.1:8000 (token: BNSCOPE_TOKEN)")
    parser.add_argument("--data-dir", help="record here for a later `bnscope serve --data-dir`")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--every", type=int, default=50, help="steps between statistics")
    args = parser.parse_args()

    torch.manual_seed(0)
    torch.set_num_threads(1)  # small tensors: one thread is fastest (and threads fight on a busy machine)
    words = read_names()
    train_words = sorted(make_splits(words, BLOCK_SIZE).train_words)
    X, Y = sequences(train_words)
    model = TinyTransformer()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    with bnscope.watch(
        model, optimizer, every=args.every, name="tiny transformer", server=args.server, data_dir=args.data_dir
    ) as run:
        for step in range(args.steps):
            ix = torch.randint(0, X.shape[0], (64,))
            logits = model(X[ix])
            loss = F.cross_entropy(logits.view(-1, VOCAB_SIZE), Y[ix].view(-1))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            run.log(loss=loss.item())
            if step % 250 == 0:
                print(f"step {step:5d}  loss {loss.item():.4f}")
    print(f"{run.summary['sent']} events sent, {run.summary['dropped']} dropped")


if __name__ == "__main__":
    main()
