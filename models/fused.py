"""A bnscope.models.MLP's training forward and backward pass written out, as in the lecture's part 4
("becoming a backprop ninja"): no autograd graph, each gradient one expression.

On the lecture's small network much of a step's time is the per-op overhead of the nn.Modules
and of autograd's bookkeeping. Here each layer's backward is a few fused ops (BatchNorm's in
torch's own kernel, as nn.BatchNorm1d's autograd uses; the lecture's unbiased-variance BatchNorm
in a few ops of its own), with no graph: a training step takes ~0.6x the time of `loss.backward()`
through the nn.Modules on a CPU (bench/throughput.py), with the same numbers to float rounding.
What is left is mostly the kernels both run (matmuls, BatchNorm, tanh).
"""

from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from bnscope.models.mlp import MLP, UnbiasedBatchNorm1d


BATCH_NORMS = (nn.BatchNorm1d, UnbiasedBatchNorm1d)


class Block(NamedTuple):
    """One Linear and what follows it: its BatchNorm1d (or None) and whether a Tanh ends it."""

    W: torch.Tensor  # (fan_out, fan_in), as nn.Linear keeps it
    b: torch.Tensor | None
    bn: nn.BatchNorm1d | None
    tanh: bool


def blocks_of(model: MLP) -> list[Block]:
    """The network as Linear blocks. Any other module is refused: the written-out backward knows
    these three only, and skipping one (a Dropout, say) would give wrong gradients without a word."""
    blocks: list[Block] = []
    for m in model.layers:
        if type(m) is nn.Linear:
            blocks.append(Block(m.weight, m.bias, None, False))
        elif type(m) in BATCH_NORMS and blocks and blocks[-1].bn is None and not blocks[-1].tanh:
            blocks[-1] = blocks[-1]._replace(bn=m)
        elif type(m) is nn.Tanh and blocks and not blocks[-1].tanh:
            blocks[-1] = blocks[-1]._replace(tanh=True)
        else:
            raise TypeError(f"ManualBackprop writes out Linear -> [BatchNorm1d] -> [Tanh] blocks only, not {m!r} here")
    return blocks


def unbiased_batch_norm(hprebn: torch.Tensor, bn: UnbiasedBatchNorm1d) -> tuple[torch.Tensor, ...]:
    """The lecture's hand-written BatchNorm1d in training, on (n, dim): normalised with the unbiased batch
    variance, its running statistics moved as the lecture's layer moves them. (hpreact, bnmean, bnvar_inv)."""
    bnmean = hprebn.mean(0)
    bnvar = hprebn.var(0)  # unbiased: 1/(n-1) * ((hprebn - bnmean)**2).sum(0)
    bnvar_inv = (bnvar + bn.eps).rsqrt()
    hpreact = bn.weight * ((hprebn - bnmean) * bnvar_inv) + bn.bias
    bn.running_mean.mul_(1 - bn.momentum).add_(bn.momentum * bnmean)
    bn.running_var.mul_(1 - bn.momentum).add_(bn.momentum * bnvar)  # the unbiased variance, as torch's tracks it
    return hpreact, bnmean, bnvar_inv


def unbiased_batch_norm_backward(
    dhpreact: torch.Tensor, hprebn: torch.Tensor, bn: UnbiasedBatchNorm1d, bnmean: torch.Tensor, bnvar_inv: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    """(dhprebn, dbngain, dbnbias) of unbiased_batch_norm: the lecture's part 4 expression, with Bessel's
    n/(n-1) on the last term."""
    n = hprebn.shape[0]
    bnraw = (hprebn - bnmean) * bnvar_inv
    dbngain = (bnraw * dhpreact).sum(0)
    dbnbias = dhpreact.sum(0)
    dhprebn = bn.weight * bnvar_inv / n * (n * dhpreact - dbnbias - n / (n - 1) * bnraw * dbngain)
    return dhprebn, dbngain, dbnbias


class ManualBackprop:
    """`loss = backprop(Xb, Yb)`: the minibatch loss, with every parameter's gradient left in its
    `.grad`, for the model in training mode (BatchNorm on the batch statistics, its running
    statistics moved as nn.BatchNorm1d moves them; an UnbiasedBatchNorm1d normalises with the unbiased
    variance, as the lecture's hand-written layer). Afterwards `h[i]` is the i-th Tanh's output and
    `dh[i]` the loss's gradient w.r.t. it, (B, n_hidden) each: what the lecture plots.

    Works on the model's own tensors: an update of the parameters is seen by the next call. What
    it makes (the gradients, h, dh) are inference tensors: read them anywhere, change them in place
    only under torch.inference_mode()."""

    def __init__(self, model: MLP):
        self.C = model.embedding.weight  # (vocab_size, n_embd)
        self.blocks = blocks_of(model)
        self.num_batches_tracked = [blk.bn.num_batches_tracked for blk in self.blocks if blk.bn is not None]
        self.h: list[torch.Tensor] = []
        self.dh: list[torch.Tensor] = []
        self._minus_ones: torch.Tensor | None = None

    @torch.inference_mode()  # no autograd at all: ops skip its dispatch, a few % of the step
    def __call__(self, Xb: torch.Tensor, Yb: torch.Tensor) -> torch.Tensor:
        n = Xb.shape[0]
        # ---- forward pass, keeping what the backward needs
        emb = self.C[Xb]  # (n, block_size, n_embd)
        x = emb.view(n, -1)  # (n, block_size * n_embd): the context vectors side by side
        saved = []  # per block: (its input x, hprebn, bnmean, bnvar_inv, its Tanh output h or None)
        for W, b, bn, tanh in self.blocks:
            hprebn = F.linear(x, W, b)  # x @ W.T (+ b): (n, fan_out)
            if bn is None:
                hpreact, bnmean, bnvar_inv = hprebn, None, None
            elif type(bn) is UnbiasedBatchNorm1d:
                hpreact, bnmean, bnvar_inv = unbiased_batch_norm(hprebn, bn)
            else:
                # bnmean = hprebn.mean(0); bnvar = hprebn.var(0, unbiased=False) (BN normalises with the
                # biased variance); bnvar_inv = (bnvar + eps)**-0.5; bnraw = (hprebn - bnmean) * bnvar_inv
                # hpreact = bngain * bnraw + bnbias: nn.BatchNorm1d's own kernel, which also moves the
                # running statistics (running_var towards the unbiased n / (n - 1) * bnvar)
                hpreact, bnmean, bnvar_inv = torch.native_batch_norm(
                    hprebn, bn.weight, bn.bias, bn.running_mean, bn.running_var, True, bn.momentum, bn.eps
                )
            h = hpreact.tanh_() if tanh else None
            saved.append((x, hprebn, bnmean, bnvar_inv, h))
            x = hpreact
        if self.num_batches_tracked:
            torch._foreach_add_(self.num_batches_tracked, 1)  # nn.BatchNorm1d counts its training batches
        logits = x  # (n, vocab_size)
        logprobs = logits.log_softmax(1)  # (n, vocab_size)
        loss = F.nll_loss(logprobs, Yb)  # -logprobs[range(n), Yb].mean()

        # ---- backward pass
        # cross-entropy: dlogits = (softmax(logits) - one_hot(Yb)) / n
        dlogits = logprobs.exp_()
        dlogits.scatter_add_(1, Yb.reshape(n, 1), self._minus_ones_for(dlogits))
        dout = dlogits.div_(n)  # the loss's gradient w.r.t. the block's output
        dh = []
        for (W, b, bn, tanh), (x, hprebn, bnmean, bnvar_inv, h) in zip(reversed(self.blocks), reversed(saved)):
            if h is not None:
                dh.append(dout)
                dhpreact = torch.ops.aten.tanh_backward(dout, h)  # (1 - h**2) * dh
            else:
                dhpreact = dout
            if bn is None:
                dhprebn = dhpreact
            elif type(bn) is UnbiasedBatchNorm1d:
                dhprebn, bn.weight.grad, bn.bias.grad = unbiased_batch_norm_backward(
                    dhpreact, hprebn, bn, bnmean, bnvar_inv
                )
            else:
                # with bnraw = (hprebn - bnmean) * bnvar_inv, one kernel computes
                #   dbngain = (bnraw * dhpreact).sum(0);  dbnbias = dhpreact.sum(0)
                #   dhprebn = bngain*bnvar_inv/n * (n*dhpreact - dbnbias - bnraw*dbngain)
                # (the unbiased variance's has n/(n-1) on the last term: unbiased_batch_norm_backward)
                dhprebn, bn.weight.grad, bn.bias.grad = torch.ops.aten.native_batch_norm_backward(
                    dhpreact, hprebn, bn.weight, None, None, bnmean, bnvar_inv, True, bn.eps, [True, True, True]
                )
            W.grad = dhprebn.T @ x  # (fan_out, fan_in), as W
            if b is not None:
                b.grad = dhprebn.sum(0)
            dout = dhprebn @ W  # (n, fan_in): the gradient w.r.t. x
        self.h = [h for *_, h in saved if h is not None]
        self.dh = dh[::-1]
        # the embedding: each row of C collects the gradient of every place it was looked up at
        demb = dout.view(-1, self.C.shape[1])  # (n * block_size, n_embd)
        self.C.grad = torch.zeros_like(self.C).index_add_(0, Xb.reshape(-1), demb)
        return loss

    def _minus_ones_for(self, dlogits: torch.Tensor) -> torch.Tensor:
        """(n, 1) of -1, kept between calls: subtracts the one-hot targets in one scatter_add_."""
        if self._minus_ones is None or self._minus_ones.shape[0] != dlogits.shape[0]:
            self._minus_ones = dlogits.new_full((dlogits.shape[0], 1), -1.0)
        return self._minus_ones
