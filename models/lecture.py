"""The lecture's hand-written layers, with the torch.nn API (`__call__`, `parameters()`,
`training`, `running_mean` / `running_var`), fixed where the notebook copy is not:
  - `self.bias` (the notebook once wrote `self.bais`),
  - `with torch.no_grad():` (called: `with torch.no_grad:` is an error),
  - `Tanh` sets `self.out` before returning it.
BatchNorm1d normalises with the biased batch variance, as torch.nn.BatchNorm1d does, or with
`unbiased=True` with the unbiased one, x.var(), as the notebook's layer does; `running_var` tracks
the unbiased variance either way (torch's and the notebook's running statistics are the same).

`LectureMLP.from_torch(mlp)` builds the same network as a bnscope.models.mlp.MLP, sharing no storage,
so the two can be compared output for output and gradient for gradient.
"""

import torch
import torch.nn as nn

from bnscope.models.mlp import UnbiasedBatchNorm1d


class Linear:
    def __init__(self, fan_in: int, fan_out: int, bias: bool = True, generator: torch.Generator | None = None):
        self.weight = torch.randn((fan_in, fan_out), generator=generator) / fan_in**0.5  # (fan_in, fan_out)
        self.bias = torch.zeros(fan_out) if bias else None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.out = x @ self.weight
        if self.bias is not None:
            self.out = self.out + self.bias
        return self.out

    def parameters(self) -> list[torch.Tensor]:
        return [self.weight] + ([] if self.bias is None else [self.bias])


class BatchNorm1d:
    def __init__(self, dim: int, eps: float = 1e-5, momentum: float = 0.1, unbiased: bool = False):
        self.eps = eps
        self.momentum = momentum
        self.unbiased = unbiased
        self.training = True
        # parameters (trained with backprop)
        self.gamma = torch.ones(dim)
        self.beta = torch.zeros(dim)
        # buffers (trained with a running 'momentum update')
        self.running_mean = torch.zeros(dim)
        self.running_var = torch.ones(dim)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            xmean = x.mean(0, keepdim=True)  # batch mean
            xvar = x.var(0, keepdim=True, unbiased=self.unbiased)  # batch variance
        else:
            xmean = self.running_mean
            xvar = self.running_var
        xhat = (x - xmean) / torch.sqrt(xvar + self.eps)  # normalize to unit variance
        self.out = self.gamma * xhat + self.beta
        if self.training:
            with torch.no_grad():
                n = x.shape[0]
                # the running estimate tracks the unbiased variance (Bessel's n / (n - 1))
                unbiased_var = xvar if self.unbiased else xvar * n / (n - 1)
                self.running_mean = (1 - self.momentum) * self.running_mean + self.momentum * xmean.squeeze(0)
                self.running_var = (1 - self.momentum) * self.running_var + self.momentum * unbiased_var.squeeze(0)
        return self.out

    def parameters(self) -> list[torch.Tensor]:
        return [self.gamma, self.beta]


class Tanh:
    training = True

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.out = torch.tanh(x)
        return self.out

    def parameters(self) -> list[torch.Tensor]:
        return []


class LectureMLP:
    """C (the embedding table) plus the flat `layers` list, as in the lecture's notebook."""

    def __init__(self, C: torch.Tensor, layers: list):
        self.C = C
        self.layers = layers

    @classmethod
    @torch.no_grad()
    def from_torch(cls, mlp: nn.Module) -> "LectureMLP":
        layers: list = []
        for module in mlp.layers:
            if isinstance(module, nn.Linear):
                layer = Linear(module.in_features, module.out_features, bias=module.bias is not None)
                layer.weight = module.weight.detach().T.clone()  # nn.Linear keeps (fan_out, fan_in)
                if module.bias is not None:
                    layer.bias = module.bias.detach().clone()
            elif isinstance(module, nn.BatchNorm1d):
                unbiased = isinstance(module, UnbiasedBatchNorm1d)
                layer = BatchNorm1d(module.num_features, eps=module.eps, momentum=module.momentum, unbiased=unbiased)
                layer.gamma = module.weight.detach().clone()
                layer.beta = module.bias.detach().clone()
                layer.running_mean = module.running_mean.clone()
                layer.running_var = module.running_var.clone()
            elif isinstance(module, nn.Tanh):
                layer = Tanh()
            else:
                raise TypeError(f"no lecture layer for {type(module).__name__}")
            layers.append(layer)
        net = cls(mlp.embedding.weight.detach().clone(), layers)
        for p in net.parameters():
            p.requires_grad = True
        return net

    def __call__(self, idx: torch.Tensor) -> torch.Tensor:
        emb = self.C[idx]  # (B, block_size, n_embd)
        x = emb.view(emb.shape[0], -1)  # (B, block_size * n_embd)
        for layer in self.layers:
            x = layer(x)
        return x

    def parameters(self) -> list[torch.Tensor]:
        return [self.C] + [p for layer in self.layers for p in layer.parameters()]

    def train(self, mode: bool = True) -> "LectureMLP":
        for layer in self.layers:
            layer.training = mode
        return self

    def eval(self) -> "LectureMLP":
        return self.train(False)
