"""A small CNN on synthetic images, trained with AdamW and watched by bnscope.

    python examples/cnn.py --data-dir runs          # then: bnscope serve --data-dir runs
    python examples/cnn.py --server http://127.0.0.1:8000

The images are 16x16 and one channel: a bar, horizontal, vertical or on either diagonal, at a random
place, in noise; the class is its direction. The network is the usual shape: two conv blocks
(Conv2d -> BatchNorm2d -> ReLU(inplace=True) -> MaxPool2d) sharing one ReLU module, then a head
with Dropout and Linear -> BatchNorm1d -> ReLU. On the dashboard:
  activations  `relu` (the shared one: its units are the 16 + 32 channels of both blocks; a dead
               channel is one that is <= 0 at every pixel of every image), `head.4` (the head's ReLU)
  weights      `conv1`, `conv2` (kernels), `head.2`, `head.5`
  norms        `bn1`, `bn2`, `head.3` (running mean / var a channel, gain and bias)
"""

import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F

import bnscope

SIZE, CLASSES = 16, 4


def synthetic_images(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 1, 16, 16) images of a bar of length 8 in noise, and its direction (0..3)."""
    labels = torch.randint(0, CLASSES, (n,), generator=generator)
    images = 0.3 * torch.randn(n, 1, SIZE, SIZE, generator=generator)
    at = torch.randint(4, SIZE - 4, (n, 2), generator=generator)
    along = torch.arange(-4, 4)
    for i in range(n):
        r, c = at[i].tolist()
        dr, dc = [(0, 1), (1, 0), (1, 1), (1, -1)][labels[i]]
        images[i, 0, r + dr * along, c + dc * along] += 1.0
    return images, labels


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.conv2, self.bn2 = nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32)
        self.relu = nn.ReLU(inplace=True)  # one module, used after both convolutions
        self.pool = nn.MaxPool2d(2)
        # BatchNorm before the head's ReLU too: its inputs are all positive (pooled ReLUs), and without it
        # AdamW's first steps push most of its units below 0 for good (70 % dead by step 20)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(0.2),
            nn.Linear(32 * 4 * 4, 64, bias=False),
            nn.BatchNorm1d(64),
            nn.ReLU(),
            nn.Linear(64, CLASSES),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.relu(self.bn1(self.conv1(x))))  # (B, 16, 8, 8)
        x = self.pool(self.relu(self.bn2(self.conv2(x))))  # (B, 32, 4, 4)
        return self.head(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", help="a running bnscope serve, e.g. http://127.0.0.1:8000 (token: BNSCOPE_TOKEN)")
    parser.add_argument("--data-dir", help="record here for a later `bnscope serve --data-dir`")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--every", type=int, default=20, help="steps between statistics")
    args = parser.parse_args()

    torch.manual_seed(0)
    torch.set_num_threads(1)  # small tensors: one thread is fastest (and threads fight on a busy machine)
    g = torch.Generator().manual_seed(0)
    X, Y = synthetic_images(4096, g)
    Xval, Yval = synthetic_images(512, g)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    X, Y, Xval, Yval = X.to(device), Y.to(device), Xval.to(device), Yval.to(device)
    model = SmallCNN().to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    with bnscope.watch(
        model, optimizer, every=args.every, name="small CNN", server=args.server, data_dir=args.data_dir
    ) as run:
        for step in range(args.steps):
            ix = torch.randint(0, X.shape[0], (64,), device=device)
            logits = model(X[ix])
            loss = F.cross_entropy(logits, Y[ix])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if step % 50 == 0:  # an evaluation between steps: no statistics, no step counted
                model.eval()
                with torch.no_grad():
                    accuracy = (model(Xval).argmax(1) == Yval).float().mean().item()
                model.train()
                run.log(loss=loss.item(), val_accuracy=accuracy)
                print(f"step {step:4d}  loss {loss.item():.3f}  val accuracy {accuracy:.2f}")
            else:
                run.log(loss=loss.item())
    print(f"{run.summary['sent']} events sent, {run.summary['dropped']} dropped")


if __name__ == "__main__":
    main()
