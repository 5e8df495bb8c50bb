"""The lecture's script, bare: what `bnscope train` does, written as the lecture writes it, with torch
alone (no bnscope import), for the start-up comparison of bench/startup.py.

    python bench/bare_lecture.py NAMES_FILE [--steps 1]

Read the names, build the dataset (the lecture's 80/10/10 split with random.seed(42)), the network
(torch.nn: Embedding, [Linear, BatchNorm1d, Tanh] x 5, Linear, BatchNorm1d, the lecture's init), train
`steps` steps of minibatch SGD, print the train / dev / test losses and sample 10 names.
"""

import argparse
import random

import torch
import torch.nn as nn
import torch.nn.functional as F


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("names")
    parser.add_argument("--steps", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(1)
    words = open(args.names).read().splitlines()
    chars = sorted(set("".join(words)))
    stoi = {s: i + 1 for i, s in enumerate(chars)}
    stoi["."] = 0
    itos = {i: s for s, i in stoi.items()}
    vocab_size, block_size, n_embd, n_hidden = len(itos), 3, 10, 100

    def build_dataset(words):
        X, Y = [], []
        for w in words:
            context = [0] * block_size
            for ch in w + ".":
                ix = stoi[ch]
                X.append(context)
                Y.append(ix)
                context = context[1:] + [ix]  # crop and append
        return torch.tensor(X), torch.tensor(Y)

    random.seed(42)
    random.shuffle(words)
    n1, n2 = int(0.8 * len(words)), int(0.9 * len(words))
    splits = {"train": build_dataset(words[:n1]), "dev": build_dataset(words[n1:n2]), "test": build_dataset(words[n2:])}

    g = torch.Generator().manual_seed(2147483647)
    layers = [nn.Embedding(vocab_size, n_embd), nn.Flatten()]
    fan_in = n_embd * block_size
    for _ in range(5):
        layers += [nn.Linear(fan_in, n_hidden, bias=False), nn.BatchNorm1d(n_hidden), nn.Tanh()]
        fan_in = n_hidden
    layers += [nn.Linear(n_hidden, vocab_size, bias=False), nn.BatchNorm1d(vocab_size)]
    model = nn.Sequential(*layers)
    with torch.no_grad():
        for layer in model:
            if isinstance(layer, nn.Linear):
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=g) / layer.in_features**0.5 * 5 / 3)
        model[-1].weight *= 0.1  # last layer: make less confident
    parameters = list(model.parameters())

    Xtr, Ytr = splits["train"]
    for i in range(args.steps):
        ix = torch.randint(0, Xtr.shape[0], (32,), generator=g)
        loss = F.cross_entropy(model(Xtr[ix]), Ytr[ix])
        for p in parameters:
            p.grad = None
        loss.backward()
        lr = 0.1 if i < 150000 else 0.01
        for p in parameters:
            p.data += -lr * p.grad

    model.eval()
    with torch.no_grad():
        for split, (X, Y) in splits.items():
            print(split, F.cross_entropy(model(X), Y).item())
        for _ in range(10):
            out, context = [], [0] * block_size
            while True:
                probs = F.softmax(model(torch.tensor([context])), dim=1)
                ix = torch.multinomial(probs, num_samples=1, generator=g).item()
                context = context[1:] + [ix]
                if ix == 0 or len(out) >= 30:
                    break
                out.append(itos[ix])
            print("".join(out))


if __name__ == "__main__":
    main()
