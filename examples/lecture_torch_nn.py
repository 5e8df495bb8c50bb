"""The lecture's BatchNorm MLP written with torch.nn and trained with torch.optim.SGD, watched by bnscope.

    python examples/lecture_torch_nn.py --data-dir runs      # then: bnscope serve --data-dir runs
    python examples/lecture_torch_nn.py --server http://127.0.0.1:8000   # live, on a running bnscope serve

Embedding -> flatten -> [Linear -> BatchNorm1d -> Tanh] x 5 -> Linear -> BatchNorm1d, on the names
bnscope ships with, initialised as in the lecture (randn / sqrt(fan_in) * 5/3, the last BatchNorm's
gain * 0.1). The dashboard shows its layers by their torch names: tanh layers `layers.2`,
`layers.5`, ..., weights `embedding`, `layers.0`, ..., BatchNorm `layers.1`, ...
"""

import argparse
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

import bnscope
from bnscope.train.data import VOCAB_SIZE, make_splits, read_names


class MLP(nn.Module):
    def __init__(self, block_size: int = 3, n_embd: int = 10, n_hidden: int = 100, n_layers: int = 5):
        super().__init__()
        self.embedding = nn.Embedding(VOCAB_SIZE, n_embd)
        layers, fan_in = [], n_embd * block_size
        for _ in range(n_layers):
            layers += [nn.Linear(fan_in, n_hidden, bias=False), nn.BatchNorm1d(n_hidden), nn.Tanh()]
            fan_in = n_hidden
        layers += [nn.Linear(fan_in, VOCAB_SIZE, bias=False), nn.BatchNorm1d(VOCAB_SIZE)]
        self.layers = nn.Sequential(*layers)
        with torch.no_grad():  # the lecture's init: torch.randn(fan_in, fan_out) / fan_in**0.5, gain 5/3 for tanh
            nn.init.normal_(self.embedding.weight)
            for linear in (m for m in self.layers if isinstance(m, nn.Linear)):
                linear.weight.normal_(0, 5 / 3 / math.sqrt(linear.in_features))
            self.layers[-1].weight *= 0.1  # a less confident softmax at step 0

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.layers(self.embedding(idx).flatten(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", help="a running bnscope serve, e.g. http://127.0.0.1:8000 (token: BNSCOPE_TOKEN)")
    parser.add_argument("--data-dir", help="record here for a later `bnscope serve --data-dir`")
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--every", type=int, default=100, help="steps between statistics")
    args = parser.parse_args()

    torch.manual_seed(2147483647)
    torch.set_num_threads(1)  # a tiny network: one thread is the fastest
    splits = make_splits(read_names(), block_size=3)
    model = MLP()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with bnscope.watch(
        model, optimizer, every=args.every, name="lecture MLP (torch.nn)", server=args.server, data_dir=args.data_dir
    ) as run:
        for step in range(args.steps):
            ix = torch.randint(0, splits.Xtr.shape[0], (32,))
            loss = F.cross_entropy(model(splits.Xtr[ix]), splits.Ytr[ix])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            for group in optimizer.param_groups:  # the lecture's step decay
                group["lr"] = 0.1 if step < args.steps * 3 // 4 else 0.01
            optimizer.step()
            run.log(loss=loss.item())
            if step % 1000 == 0:
                print(f"step {step:6d}  loss {loss.item():.4f}")
        model.eval()
        with torch.no_grad():  # an evaluation forward: no statistics from it, no step counted
            dev = F.cross_entropy(model(splits.Xdev), splits.Ydev).item()
        run.log(dev_loss=dev)
    print(f"dev loss {dev:.4f}; {run.summary['sent']} events sent, {run.summary['dropped']} dropped")


if __name__ == "__main__":
    main()
