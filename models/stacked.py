"""R networks of the same shapes trained as one: the lecture's forward and written-out backward pass
(as models/fused.py, "becoming a backprop ninja") over a leading member dimension.

On the lecture's small network a step is mostly per-op overhead, not arithmetic: stacking R members
pays that overhead once for all of them (batched matmuls, one BatchNorm kernel, one update).

Each member keeps everything that is not a shape: its own init (built by its own MLP), BatchNorm on or
off, eps, momentum, the biased or unbiased batch variance, and its learning rate. A member with
BatchNorm off has a Linear bias; one with it on has gamma and beta: every member carries all of them
and a mask picks which are used, so members with and without BatchNorm share a stack.

Activations are kept features-first, (R, n_hidden, B): viewed as (1, R * n_hidden, B), every member's
every unit is a channel of its own, so torch's BatchNorm kernel normalises each over the batch in one
call, as models/fused.py does for one run. Members whose eps, momentum or variance differ, or a paused
member whose running statistics must stay put, take the written-out BatchNorm instead.

Every op is per member (a batched matmul, a reduction over the batch, a row of C), so a member's numbers
do not depend on the others: one diverging to NaN leaves the rest untouched.
"""

import torch
import torch.nn as nn

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
    """The stacked tensors of R members' MLPs, and `step(Xb, Yb)`: one training step of all of them.

    Per Linear l (the hidden ones, then the output one), as nn.Linear keeps them:
      W[l] (R, fan_out, fan_in)   b[l] (R, fan_out, 1)   gamma[l], beta[l], running_mean[l], running_var[l] (R, fan_out)
    C is (R, vocab_size, n_embd). After a step `h[i]` is the i-th Tanh's output and `dh[i]` the loss's
    gradient w.r.t. it, features-first: (R, n_hidden, B); the gradients are in `grads` (same keys; b's is
    None when every member has BatchNorm).
    """

    def __init__(self, mlps: list[MLP], bn_variance: list[str], device: torch.device):
        pairs = [_linears_and_norms(m) for m in mlps]
        self.n_linear = len(pairs[0])
        stack = lambda ts: torch.stack([t.detach().float() for t in ts]).to(device)  # noqa: E731
        self.C = stack([m.embedding.weight for m in mlps])  # (R, V, E)
        self.W, self.b, self.gamma, self.beta, self.running_mean, self.running_var = [], [], [], [], [], []
        for l in range(self.n_linear):
            linears, norms = [p[l][0] for p in pairs], [p[l][1] for p in pairs]
            ones, zeros = torch.ones(linears[0].weight.shape[0]), torch.zeros(linears[0].weight.shape[0])
            self.W.append(stack([lin.weight for lin in linears]))  # (R, fan_out, fan_in)
            self.b.append(stack([zeros if lin.bias is None else lin.bias for lin in linears]).unsqueeze(2))
            self.gamma.append(stack([ones if n is None else n.weight for n in norms]))
            self.beta.append(stack([zeros if n is None else n.bias for n in norms]))
            self.running_mean.append(stack([zeros if n is None else n.running_mean for n in norms]))
            self.running_var.append(stack([ones if n is None else n.running_var for n in norms]))
        first = [p[0][1] for p in pairs]
        self.has_bn = [n is not None for n in first]
        self.eps_of = [n.eps if n is not None else 1e-5 for n in first]
        self.momentum_of = [n.momentum if n is not None else 0.1 for n in first]
        self.unbiased_of = [v == "unbiased" for v in bn_variance]
        self.device = device
        self.set_rates([0.0] * len(mlps), [True] * len(mlps))
        self.h: list[torch.Tensor] = []
        self.dh: list[torch.Tensor] = []
        self.grads: dict[str, list[torch.Tensor]] = {}

    @property
    def R(self) -> int:
        return self.C.shape[0]

    def set_rates(self, lr: list[float], train: list[bool]) -> None:
        """Each member's learning rate, and which train (a paused one keeps its parameters and running
        statistics). Set when they change, not every step: a tensor made from a list is a host copy."""
        column = lambda values, dtype=torch.float32: torch.tensor(values, dtype=dtype, device=self.device)  # noqa: E731
        self.lr, self.train = lr, train
        self._lr = column(lr)
        self._train = column(train, torch.bool)
        self._bn = column(self.has_bn, torch.bool).view(-1, 1, 1)
        self._eps = column(self.eps_of).view(-1, 1, 1)
        self._momentum = column(self.momentum_of).view(-1, 1)
        self._unbiased = column(self.unbiased_of, torch.bool).view(-1, 1, 1)
        # torch's kernel serves when every member normalises alike and trains (it moves every running statistic)
        self._kernel = all(train) and len({*zip(self.eps_of, self.momentum_of)}) == 1 and not any(self.unbiased_of)

    def tensors(self) -> dict[str, list[torch.Tensor]]:
        """Every stacked tensor by name (C as a one-element list)."""
        return {
            "C": [self.C],
            "W": self.W,
            "b": self.b,
            "gamma": self.gamma,
            "beta": self.beta,
            "running_mean": self.running_mean,
            "running_var": self.running_var,
        }

    def keep(self, rows: list[int]) -> None:
        """Only the members at `rows` stay, in that order: the stack of those who still train."""
        index = torch.tensor(rows, device=self.device)
        for name, tensors in self.tensors().items():
            kept = [t.index_select(0, index) for t in tensors]
            if name == "C":
                self.C = kept[0]
            else:
                tensors[:] = kept
        for name in ("has_bn", "eps_of", "momentum_of", "unbiased_of"):
            setattr(self, name, [getattr(self, name)[r] for r in rows])
        self.set_rates([self.lr[r] for r in rows], [self.train[r] for r in rows])

    # ---- BatchNorm, both ways -------------------------------------------------------------------------
    def _batchnorm(self, l: int, hprebn: torch.Tensor) -> tuple[torch.Tensor, tuple]:
        """(R, H, B) -> hpreact and what the backward needs: torch's kernel on (1, R * H, B), or written out."""
        R, H, n = hprebn.shape
        if self._kernel:
            hpreact, bnmean, bnvar_inv = torch.native_batch_norm(
                hprebn.view(1, R * H, n),
                self.gamma[l].view(-1),
                self.beta[l].view(-1),
                self.running_mean[l].view(-1),
                self.running_var[l].view(-1),
                True,
                self.momentum_of[0],
                self.eps_of[0],
            )
            return hpreact.view(R, H, n), (bnmean, bnvar_inv)
        bnvar, bnmean = torch.var_mean(hprebn, dim=2, keepdim=True, correction=0)  # (R, H, 1)
        unbiased = bnvar * (n / (n - 1))
        # the lecture's hand-written layer normalises with x.var() (unbiased); torch's with the biased one
        bnvar_inv = (torch.where(self._unbiased, unbiased, bnvar) + self._eps).rsqrt()
        bnraw = (hprebn - bnmean) * bnvar_inv
        hpreact = torch.addcmul(self.beta[l].unsqueeze(2), self.gamma[l].unsqueeze(2), bnraw)
        moving = (self._train & self._bn.view(-1)).view(-1, 1)  # nn.BatchNorm1d's update, members in training only
        m = self._momentum
        self.running_mean[l] = torch.where(
            moving, torch.lerp(self.running_mean[l], bnmean.squeeze(2), m), self.running_mean[l]
        )
        self.running_var[l] = torch.where(
            moving, torch.lerp(self.running_var[l], unbiased.squeeze(2), m), self.running_var[l]
        )
        return hpreact, (bnraw, bnvar_inv)

    def _batchnorm_backward(self, l: int, dhpreact: torch.Tensor, hprebn: torch.Tensor, saved: tuple) -> tuple:
        """(dhprebn, dgamma, dbeta), (R, H, B), (R, H), (R, H)."""
        R, H, n = dhpreact.shape
        if self._kernel:
            dx, dgamma, dbeta = torch.ops.aten.native_batch_norm_backward(
                dhpreact.reshape(1, R * H, n),
                hprebn.view(1, R * H, n),
                self.gamma[l].view(-1),
                None,
                None,
                *saved,
                True,
                self.eps_of[0],
                [True, True, True],
            )
            return dx.view(R, H, n), dgamma.view(R, H), dbeta.view(R, H)
        bnraw, bnvar_inv = saved
        dgamma = (bnraw * dhpreact).sum(2, keepdim=True)
        dbeta = dhpreact.sum(2, keepdim=True)
        # dhprebn = gamma*bnvar_inv/n * (n*dhpreact - dbeta - k*bnraw*dgamma); k = n/(n-1) for the unbiased variance
        k = torch.where(self._unbiased, n / (n - 1), 1.0)
        dx = (self.gamma[l].unsqueeze(2) * bnvar_inv / n) * (n * dhpreact - dbeta - k * bnraw * dgamma)
        return dx, dgamma.squeeze(2), dbeta.squeeze(2)

    # ---- the step ---------------------------------------------------------------------------------------
    @torch.inference_mode()
    def step(self, Xb: torch.Tensor, Yb: torch.Tensor) -> torch.Tensor:
        """One step of every member: forward, backward, and the SGD update `p -= lr * grad` of those that
        train. `Xb` is (R, B, block_size), `Yb` (R, B). Returns the losses, (R,)."""
        R, n = Xb.shape[0], Xb.shape[1]
        V, E = self.C.shape[1], self.C.shape[2]
        every_bn, no_bn = all(self.has_bn), not any(self.has_bn)
        # ---- forward pass, keeping what the backward needs
        rows = Xb + (torch.arange(R, device=Xb.device) * V).view(R, 1, 1)  # each member's own rows of C
        emb = self.C.view(R * V, E)[rows]  # (R, B, block_size, n_embd)
        x = emb.view(R, n, -1).transpose(1, 2)  # (R, block_size * n_embd, B): the context vectors, features-first
        saved = []  # per Linear: (its input x, hprebn, what its BatchNorm keeps, its Tanh output h or None)
        for l in range(self.n_linear):
            # W @ x (+ b): (R, fan_out, B); with BatchNorm everywhere there is no bias to add
            hprebn = torch.bmm(self.W[l], x) if every_bn else torch.baddbmm(self.b[l], self.W[l], x)
            if no_bn:
                hpreact, kept = hprebn, None
            else:
                hpreact, kept = self._batchnorm(l, hprebn)
                if not every_bn:
                    hpreact = torch.where(self._bn, hpreact, hprebn)
            h = hpreact.tanh_() if l < self.n_linear - 1 else None
            saved.append((x, hprebn, kept, h))
            x = h if h is not None else hpreact
        logprobs = x.log_softmax(1)  # (R, vocab_size, B)
        loss = -logprobs.gather(1, Yb.unsqueeze(1)).squeeze(1).mean(1)  # (R,): -logprobs[range(n), Yb].mean()

        # ---- backward pass
        dlogits = logprobs.exp_()  # softmax, then minus the one-hot targets, over n
        dlogits.scatter_add_(1, Yb.unsqueeze(1), torch.full_like(dlogits[:, :1], -1.0))
        dout = dlogits.div_(n)
        grads = {key: [None] * self.n_linear for key in ("W", "b", "gamma", "beta")}
        dh = []
        for l in reversed(range(self.n_linear)):
            x, hprebn, kept, h = saved[l]
            if h is not None:
                dh.append(dout)
                dhpreact = torch.ops.aten.tanh_backward(dout, h)  # (1 - h**2) * dh
            else:
                dhpreact = dout
            if no_bn:
                dhprebn, dgamma, dbeta = dhpreact, torch.zeros_like(self.gamma[l]), torch.zeros_like(self.beta[l])
            else:
                dhprebn, dgamma, dbeta = self._batchnorm_backward(l, dhpreact, hprebn, kept)
                if not every_bn:
                    dhprebn = torch.where(self._bn, dhprebn, dhpreact)
            grads["W"][l] = torch.bmm(dhprebn, x.transpose(1, 2))  # (R, fan_out, fan_in), as W
            # a member with BatchNorm has no Linear bias (its b stays 0); one without has no gamma and beta
            if not every_bn:
                grads["b"][l] = torch.where(self._bn, 0.0, dhprebn.sum(2, keepdim=True))
            grads["gamma"][l], grads["beta"][l] = dgamma, dbeta
            dout = torch.bmm(self.W[l].transpose(1, 2), dhprebn)  # (R, fan_in, B): the gradient w.r.t. x
        self.h = [h for *_, h in saved if h is not None]
        self.dh = dh[::-1]
        # the embedding: each row of C collects the gradient of every place it was looked up at
        demb = dout.transpose(1, 2).reshape(-1, E)  # (R * B * block_size, n_embd)
        dC = torch.zeros_like(self.C).view(R * V, E).index_add_(0, rows.reshape(-1), demb).view(R, V, E)
        self.grads = {"C": [dC], **grads}

        # ---- update (with BatchNorm in every member there is no Linear bias: b stays 0, untouched)
        params = [self.C, *self.W, *self.gamma, *self.beta] + ([] if every_bn else self.b)
        g = [dC, *grads["W"], *grads["gamma"], *grads["beta"]] + ([] if every_bn else grads["b"])
        if all(self.train) and len(set(self.lr)) == 1:
            torch._foreach_add_(params, g, alpha=-self.lr[0])
        else:  # each member its own rate; a paused one's is 0
            rate = torch.where(self._train, self._lr, 0.0)
            torch._foreach_sub_(params, torch._foreach_mul(g, [rate.view(-1, *([1] * (p.dim() - 1))) for p in g]))
        return loss

    def load_into(self, r: int, mlp: MLP) -> MLP:
        """Member r's tensors copied into its own MLP (bnscope.models.MLP): its state to save, sample from or
        evaluate."""
        with torch.no_grad():
            mlp.embedding.weight.copy_(self.C[r])
            for l, (linear, norm) in enumerate(_linears_and_norms(mlp)):
                linear.weight.copy_(self.W[l][r])
                if linear.bias is not None:
                    linear.bias.copy_(self.b[l][r, :, 0])
                if norm is not None:
                    norm.weight.copy_(self.gamma[l][r])
                    norm.bias.copy_(self.beta[l][r])
                    norm.running_mean.copy_(self.running_mean[l][r])
                    norm.running_var.copy_(self.running_var[l][r])
        return mlp
