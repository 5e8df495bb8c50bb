"""The makemore BatchNorm MLP from "Building makemore Part 3: Activations & Gradients, BatchNorm",
built from torch.nn modules.

    Embedding -> flatten -> [Linear -> BatchNorm1d -> Tanh] x n_layers -> Linear (-> BatchNorm1d)

`layers` is a flat nn.Sequential in the same order as the lecture's `layers` list, so
`model.layers[i]` is the lecture's `layers[i]`. BatchNorm is torch's (bn_variance="biased") or the
lecture's hand-written one as a module (bn_variance="unbiased", UnbiasedBatchNorm1d).
"""

import math

import torch
import torch.nn as nn


class MLP(nn.Module):
    def __init__(
        self,
        *,
        vocab_size: int,
        block_size: int,
        n_embd: int,
        n_hidden: int,
        n_layers: int,
        batchnorm: bool,
        init: str,
        gain: float,
        last_layer_scale: float,
        bn_eps: float,
        bn_momentum: float,
        bn_variance: str = "biased",
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, n_embd)
        if bn_variance not in ("biased", "unbiased"):
            raise ValueError(f"bn_variance must be 'biased' or 'unbiased', got {bn_variance!r}")
        BatchNorm = UnbiasedBatchNorm1d if bn_variance == "unbiased" else nn.BatchNorm1d
        layers: list[nn.Module] = []
        fan_in = n_embd * block_size
        for _ in range(n_layers):
            # with BatchNorm right after it, a Linear bias is wasted: BN subtracts the mean anyway
            layers.append(nn.Linear(fan_in, n_hidden, bias=not batchnorm))
            if batchnorm:
                layers.append(BatchNorm(n_hidden, eps=bn_eps, momentum=bn_momentum))
            layers.append(nn.Tanh())
            fan_in = n_hidden
        layers.append(nn.Linear(fan_in, vocab_size, bias=not batchnorm))
        if batchnorm:
            layers.append(BatchNorm(vocab_size, eps=bn_eps, momentum=bn_momentum))
        self.layers = nn.Sequential(*layers)
        self._init_weights(init, gain, last_layer_scale, generator)

    @torch.no_grad()
    def _init_weights(self, init: str, gain: float, last_layer_scale: float, generator: torch.Generator | None):
        # Draw in the lecture's order (C first, then each Linear) from one generator, so a seed
        # gives the same network every time.
        self.embedding.weight.copy_(torch.randn(self.embedding.weight.shape, generator=generator))
        linears = [m for m in self.layers if isinstance(m, nn.Linear)]
        for linear in linears:
            fan_out, fan_in = linear.weight.shape
            if init == "kaiming":
                # the lecture's Linear: randn(fan_in, fan_out) / sqrt(fan_in); nn.Linear stores W transposed
                weight = torch.randn((fan_in, fan_out), generator=generator) / math.sqrt(fan_in)
                linear.weight.copy_(weight.T)
                if linear.bias is not None:
                    linear.bias.zero_()
            elif init == "torch-default":
                bound = 1 / math.sqrt(fan_in)  # what nn.Linear.reset_parameters amounts to
                linear.weight.uniform_(-bound, bound, generator=generator)
                if linear.bias is not None:
                    linear.bias.uniform_(-bound, bound, generator=generator)
            else:
                raise ValueError(f"init must be 'kaiming' or 'torch-default', got {init!r}")
        last = self.layers[-1]
        # last layer: make the initial softmax less confident (loss near -ln(1/27) at step 0)
        if isinstance(last, nn.BatchNorm1d):
            last.weight.mul_(last_layer_scale)
        else:
            last.weight.mul_(last_layer_scale)
            if last.bias is not None:
                last.bias.mul_(last_layer_scale)
        if init == "kaiming":
            # all other layers: the gain (5/3 for tanh) fights the squashing of the tanh; as in the
            # lecture's `for layer in layers[:-1]` loop, the output Linear gets it too when a BN follows
            for linear in linears:
                if linear is not last:
                    linear.weight.mul_(gain)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        emb = self.embedding(idx)  # (B, block_size, n_embd)
        x = emb.view(emb.shape[0], -1)  # (B, block_size * n_embd): concatenate the context vectors
        return self.layers(x)  # (B, vocab_size) logits


class UnbiasedBatchNorm1d(nn.BatchNorm1d):
    """nn.BatchNorm1d as the lecture writes it by hand: in training it normalises with the unbiased batch
    variance x.var(), where torch's normalises with the biased one. The running statistics move as
    torch's do (its running variance tracks the unbiased variance too), and eval mode is torch's."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        xmean = x.mean(0)  # batch mean
        xvar = x.var(0)  # batch variance, unbiased
        with torch.no_grad():
            self.running_mean.mul_(1 - self.momentum).add_(self.momentum * xmean)
            self.running_var.mul_(1 - self.momentum).add_(self.momentum * xvar)
            self.num_batches_tracked.add_(1)
        return self.weight * (x - xmean) / torch.sqrt(xvar + self.eps) + self.bias
