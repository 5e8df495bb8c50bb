"""The lecture's own network, its hand-written layers (bnscope.models.lecture: Linear, BatchNorm1d, Tanh as
in the notebook), trained with the lecture's loop, no optimizer, watched by bnscope.

    python examples/lecture_layers.py --data-dir runs      # then: bnscope serve --data-dir runs
    python examples/lecture_layers.py --server http://127.0.0.1:8000

The loop is the lecture's cell: layer.out.retain_grad(), p.grad = None, loss.backward(),
p.data += -lr * p.grad; then run.log(loss=...) ends the step. On the dashboard: tanh layers
`tanh1 · layers[2]` .. `tanh5 · layers[14]`, weights `C` and `linear1 · layers[0]` .., BatchNorm
`batchnorm1 · layers[1]` .. (their gamma and beta: bngain and bnbias).
"""

import argparse

import torch
import torch.nn.functional as F

import bnscope
from bnscope.train.data import VOCAB_SIZE, make_splits, read_names
from bnscope.models.lecture import BatchNorm1d, Linear, Tanh


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", help="a running bnscope serve, e.g. http://127.0.0.1:8000 (token: BNSCOPE_TOKEN)")
    parser.add_argument("--data-dir", help="record here for a later `bnscope serve --data-dir`")
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--every", type=int, default=100, help="steps between statistics")
    args = parser.parse_args()

    torch.set_num_threads(1)  # a tiny network: one thread is the fastest
    splits = make_splits(read_names(), block_size=3)
    n_embd, n_hidden, block_size = 10, 100, 3
    g = torch.Generator().manual_seed(2147483647)
    C = torch.randn((VOCAB_SIZE, n_embd), generator=g)
    layers = [Linear(n_embd * block_size, n_hidden, bias=False, generator=g), BatchNorm1d(n_hidden), Tanh()]
    for _ in range(4):
        layers += [Linear(n_hidden, n_hidden, bias=False, generator=g), BatchNorm1d(n_hidden), Tanh()]
    layers += [Linear(n_hidden, VOCAB_SIZE, bias=False, generator=g), BatchNorm1d(VOCAB_SIZE)]
    with torch.no_grad():
        layers[-1].gamma *= 0.1  # last layer: make less confident
        for layer in layers[:-1]:
            if isinstance(layer, Linear):
                layer.weight *= 5 / 3  # the gain that fights tanh's squashing
    parameters = [C] + [p for layer in layers for p in layer.parameters()]
    for p in parameters:
        p.requires_grad = True

    with bnscope.watch(
        layers,
        weights={"C": C},
        every=args.every,
        name="lecture MLP (its own layers)",
        server=args.server,
        data_dir=args.data_dir,
    ) as run:
        for i in range(args.steps):
            ix = torch.randint(0, splits.Xtr.shape[0], (32,), generator=g)
            Xb, Yb = splits.Xtr[ix], splits.Ytr[ix]
            emb = C[Xb]
            x = emb.view(emb.shape[0], -1)
            for layer in layers:
                x = layer(x)
            loss = F.cross_entropy(x, Yb)
            for layer in layers:
                layer.out.retain_grad()  # the activations' gradients, for the statistics
            for p in parameters:
                p.grad = None
            loss.backward()
            lr = 0.1 if i < args.steps * 3 // 4 else 0.01  # step learning rate decay
            for p in parameters:
                p.data += -lr * p.grad
            run.log(loss=loss.item())
            if i % 1000 == 0:
                print(f"step {i:6d}  loss {loss.item():.4f}")
    print(f"{run.summary['sent']} events sent, {run.summary['dropped']} dropped")


if __name__ == "__main__":
    main()
