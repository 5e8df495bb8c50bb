"""R networks of the same shapes trained as one: the lecture's forward and written-out backward pass
(as models/fused.py, "becoming a backprop ninja") over a leading member dimension.

On the lecture's small network a step is mostly per-op overhead, not arithmetic: stacking R members
pays that overhead once for all of them (batched matmuls, per-member BatchNorm, one update).

Each member keeps everything that is not a shape: its own init (built by its own MLP), BatchNorm on or
off, eps, momentum, the biased or unbiased batch variance, and its learning rate. A member with
BatchNorm off has a Linear bias; one with it on has gamma and beta: every member carries all of them
and a mask picks which are used, so members with and without BatchNorm share a stack.

Every op is per member (a batched matmul, a reduction over the batch dimension, a row of C), so a
member's numbers do not depend on the others: one diverging to NaN leaves the rest untouched.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from bnscope.models.mlp import MLP


def _linears_and_norms(mlp: MLP) -> list[tuple[nn.Linear, nn.BatchNorm1d | None]]:
    """Each Linear of the MLP with the BatchNorm1d after it (None without BatchNorm)."""
    pairs: list[tuple[nn.Linear, nn.BatchNorm1d | None]] = []
    for m in mlp.layers:
        if isinstance(m, nn.Linear):
            pairs.append((m, None))
        elif isinstance(m, nn.BatchNorm1d):
            pairs[-1] = (pairs[-1][0], m)
    return pairs


class StackedMLP:
    """The stacked tensors of R members' MLPs, and `step(Xb, Yb, lr)`: one training step of all of them.

    Per Linear l (the hidden ones then the output one), in the lecture's orientation x @ W:
      W[l] (R, fan_in, fan_out)   b[l] (R, 1, fan_out)   gamma[l], beta[l], running_mean[l], running_var[l] (R, 1, fan_out)
    C is (R, vocab_size, n_embd). Afterwards `h[i]` is the i-th Tanh's output and `dh[i]` the loss's
    gradient w.r.t. it, (R, B, n_hidden) each, and every tensor's gradient is in `grads` (same keys).
    """

    def __init__(self, mlps: list[MLP], bn_variance: list[str], device: torch.device):
        pairs = [_linears_and_norms(m) for m in mlps]
        self.n_linear = len(pairs[0])
        self.device = device
        stack = lambda ts: torch.stack([t.detach().float() for t in ts]).to(device)  # noqa: E731
        bn = [p[0][1] is not None for p in pairs]
        self.C = stack([m.embedding.weight for m in mlps])  # (R, V, E)
        self.W, self.b, self.gamma, self.beta, self.running_mean, self.running_var = [], [], [], [], [], []
        for l in range(self.n_linear):
            linears = [p[l][0] for p in pairs]
            norms = [p[l][1] for p in pairs]
            fan_out = linears[0].weight.shape[0]
            ones, zeros = torch.ones(1, fan_out), torch.zeros(1, fan_out)
            self.W.append(stack([lin.weight.T for lin in linears]))  # (R, fan_in, fan_out)
            self.b.append(stack([zeros if lin.bias is None else lin.bias.view(1, -1) for lin in linears]))
            self.gamma.append(stack([ones if n is None else n.weight.view(1, -1) for n in norms]))
            self.beta.append(stack([zeros if n is None else n.bias.view(1, -1) for n in norms]))
            self.running_mean.append(stack([zeros if n is None else n.running_mean.view(1, -1) for n in norms]))
            self.running_var.append(stack([ones if n is None else n.running_var.view(1, -1) for n in norms]))
        first_bn = [p[0][1] for p in pairs]
        column = lambda values: torch.tensor(values, dtype=torch.float32, device=device).view(-1, 1, 1)  # noqa: E731
        self.bn = torch.tensor(bn, device=device).view(-1, 1, 1)  # (R, 1, 1): which members have BatchNorm
        self.eps = column([n.eps if n is not None else 1.0 for n in first_bn])
        self.momentum = column([n.momentum if n is not None else 0.0 for n in first_bn])
        self.unbiased = column([1.0 if v == "unbiased" else 0.0 for v in bn_variance])
        self.h: list[torch.Tensor] = []
        self.dh: list[torch.Tensor] = []
        self.grads: dict[str, list[torch.Tensor]] = {}

    @property
    def R(self) -> int:
        return self.C.shape[0]

    def tensors(self) -> dict[str, list[torch.Tensor]]:
        """Every stacked tensor by name, C as a one-element list: what a member's state is read from."""
        return {"C": [self.C], "W": self.W, "b": self.b, "gamma": self.gamma, "beta": self.beta,
                "running_mean": self.running_mean, "running_var": self.running_var}

    def params(self) -> list[torch.Tensor]:
        return [self.C, *self.W, *self.b, *self.gamma, *self.beta]

    def keep(self, rows: torch.Tensor) -> None:
        """Only the members at `rows` (a LongTensor) stay, in that order: the stack of those who still train."""
        for name, tensors in self.tensors().items():
            kept = [t.index_select(0, rows) for t in tensors]
            if name == "C":
                self.C = kept[0]
            else:
                tensors[:] = kept
        for name in ("bn", "eps", "momentum", "unbiased"):
            setattr(self, name, getattr(self, name).index_select(0, rows))

    @torch.inference_mode()
    def step(self, Xb: torch.Tensor, Yb: torch.Tensor, lr: torch.Tensor, train: torch.Tensor) -> torch.Tensor:
        """One step of every member: forward, backward, and the SGD update `p -= lr * grad` of those whose
        `train` (R,) is true (the others, paused, keep their parameters and running statistics). `Xb` is
        (R, B, block_size), `Yb` (R, B), `lr` (R,). Returns the losses, (R,)."""
        R, n = Xb.shape[0], Xb.shape[1]
        V, E = self.C.shape[1], self.C.shape[2]
        # ---- forward pass, keeping what the backward needs
        rows = Xb + (torch.arange(R, device=Xb.device) * V).view(R, 1, 1)  # each member's own rows of C
        emb = self.C.view(R * V, E)[rows]  # (R, B, block_size, n_embd)
        x = emb.view(R, n, -1)  # (R, B, block_size * n_embd): the context vectors side by side
        bn, keep_bn = self.bn, self.bn & train.view(R, 1, 1)
        saved = []  # per Linear: (its input x, bnraw, bnvar_inv, its Tanh output h or None)
        for l in range(self.n_linear):
            hprebn = torch.baddbmm(self.b[l], x, self.W[l])  # x @ W + b: (R, B, fan_out)
            bnmean = hprebn.mean(1, keepdim=True)  # (R, 1, fan_out)
            bndiff = hprebn - bnmean
            bnvar_biased = bndiff.square().mean(1, keepdim=True)
            bnvar_unbiased = bnvar_biased * (n / (n - 1))
            # the lecture's hand-written layer normalises with x.var() (unbiased); torch's with the biased one
            bnvar = torch.where(self.unbiased > 0, bnvar_unbiased, bnvar_biased)
            bnvar_inv = (bnvar + self.eps).rsqrt()
            bnraw = bndiff * bnvar_inv
            hpreact = torch.where(bn, self.gamma[l] * bnraw + self.beta[l], hprebn)
            # running statistics as nn.BatchNorm1d moves them (the variance: unbiased), members in training only
            m = self.momentum
            self.running_mean[l] = torch.where(keep_bn, (1 - m) * self.running_mean[l] + m * bnmean, self.running_mean[l])
            self.running_var[l] = torch.where(keep_bn, (1 - m) * self.running_var[l] + m * bnvar_unbiased,
                                              self.running_var[l])
            h = hpreact.tanh() if l < self.n_linear - 1 else None
            saved.append((x, bnraw, bnvar_inv, h))
            x = h if h is not None else hpreact
        logprobs = x.log_softmax(-1)  # (R, B, vocab_size)
        loss = -logprobs.gather(2, Yb.unsqueeze(2)).squeeze(2).mean(1)  # (R,)

        # ---- backward pass
        dlogits = logprobs.exp()  # softmax
        dlogits.scatter_add_(2, Yb.unsqueeze(2), torch.full_like(dlogits[..., :1], -1.0))  # minus one-hot
        dout = dlogits / n
        grads = {key: [None] * self.n_linear for key in ("W", "b", "gamma", "beta")}
        dh = []
        for l in reversed(range(self.n_linear)):
            x, bnraw, bnvar_inv, h = saved[l]
            if h is not None:
                dh.append(dout)
                dhpreact = torch.ops.aten.tanh_backward(dout, h)  # (1 - h**2) * dh
            else:
                dhpreact = dout
            dgamma = (bnraw * dhpreact).sum(1, keepdim=True)  # (R, 1, fan_out)
            dbeta = dhpreact.sum(1, keepdim=True)
            # the lecture's BatchNorm backward, with n/(n-1) on the last term for the unbiased variance
            k = torch.where(self.unbiased > 0, n / (n - 1), 1.0)
            dbn = self.gamma[l] * bnvar_inv / n * (n * dhpreact - dbeta - k * bnraw * dgamma)
            dhprebn = torch.where(bn, dbn, dhpreact)
            grads["W"][l] = torch.bmm(x.transpose(1, 2), dhprebn)  # (R, fan_in, fan_out), as W
            grads["b"][l] = torch.where(bn, 0.0, dbeta)  # a member with BatchNorm has no Linear bias
            grads["gamma"][l] = torch.where(bn, dgamma, 0.0)
            grads["beta"][l] = torch.where(bn, dbeta, 0.0)
            dout = torch.bmm(dhprebn, self.W[l].transpose(1, 2))  # (R, B, fan_in): the gradient w.r.t. x
        self.h = [h for *_, h in saved if h is not None]
        self.dh = dh[::-1]
        # the embedding: each row of C collects the gradient of every place it was looked up at
        dC = torch.zeros_like(self.C).view(R * V, E).index_add_(0, rows.reshape(-1), dout.reshape(-1, E)).view(R, V, E)
        self.grads = {"C": [dC], **grads}

        # ---- update (a paused member's learning rate is 0 here)
        step_lr = torch.where(train, lr, 0.0)
        params = self.params()
        g = [dC, *grads["W"], *grads["b"], *grads["gamma"], *grads["beta"]]
        scaled = torch._foreach_mul(g, [step_lr.view(-1, *([1] * (p.dim() - 1))) for p in params])
        torch._foreach_sub_(params, scaled)
        return loss

    def load_into(self, r: int, mlp: MLP) -> MLP:
        """Member r's tensors copied into its own MLP (bnscope.models.MLP, torch's orientation): its state to
        save, sample from or evaluate."""
        with torch.no_grad():
            mlp.embedding.weight.copy_(self.C[r])
            for l, (linear, norm) in enumerate(_linears_and_norms(mlp)):
                linear.weight.copy_(self.W[l][r].T)
                if linear.bias is not None:
                    linear.bias.copy_(self.b[l][r, 0])
                if norm is not None:
                    norm.weight.copy_(self.gamma[l][r, 0])
                    norm.bias.copy_(self.beta[l][r, 0])
                    norm.running_mean.copy_(self.running_mean[l][r, 0])
                    norm.running_var.copy_(self.running_var[l][r, 0])
        return mlp


def loss_of(mlp: MLP, X: torch.Tensor, Y: torch.Tensor) -> float:
    """A member's loss over a whole split in eval mode, from its own MLP."""
    with torch.no_grad():
        return F.cross_entropy(mlp.eval()(X), Y).item()
