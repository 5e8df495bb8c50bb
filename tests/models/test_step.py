"""bnscope.models.fused.ManualBackprop, the trainer's step, against loss.backward() through bnscope.models.MLP."""

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from bnscope.train import diagnostics
from bnscope.models.fused import ManualBackprop

KINDS = [
    pytest.param(dict(batchnorm=True, init="kaiming"), id="bn-kaiming"),
    pytest.param(dict(batchnorm=True, init="torch-default"), id="bn-torch-default"),
    pytest.param(dict(batchnorm=False, init="kaiming"), id="no-bn-kaiming"),
    pytest.param(dict(batchnorm=False, init="torch-default"), id="no-bn-torch-default"),
    pytest.param(dict(batchnorm=True, init="kaiming", bn_variance="unbiased"), id="unbiased-bn-kaiming"),
]


def batches(splits, n_steps: int, batch_size: int = 32):
    """The trainer's minibatch order for seed 0."""
    g = torch.Generator().manual_seed(0)
    for _ in range(n_steps):
        ix = torch.randint(0, splits.Xtr.shape[0], (batch_size,), generator=g)
        yield splits.Xtr[ix], splits.Ytr[ix]


def autograd_step(model, Xb, Yb):
    """The lecture's step through the nn.Modules, keeping every tanh output and its gradient."""
    with diagnostics.probe(diagnostics.lecture_layers(model)) as probe:
        loss = F.cross_entropy(model(Xb), Yb)
        for p in model.parameters():
            p.grad = None
        loss.backward()
    return loss, probe


def sgd(model, lr: float = 0.1) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p -= lr * p.grad


def assert_close_stats(a, b, path: str = "") -> None:
    """Two collect() results: the same numbers to float rounding. A histogram's count may move to
    the next bin when a value sits on a bin edge, as exact zeros do (0 is the middle edge of a
    weight gradient histogram, whose range is a rounding apart): compare bins two by two."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            assert_close_stats(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list) and path.endswith("_hist"):
        pairs = lambda h: [h[i] + h[i + 1] for i in range(0, len(h), 2)]  # noqa: E731  bins 24 and 25 together
        assert sum(a) == sum(b) and sum(abs(x - y) for x, y in zip(pairs(a), pairs(b))) <= 2, path
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_close_stats(x, y, f"{path}[{i}]")
    elif isinstance(a, float):
        assert a == pytest.approx(b, rel=1e-4, abs=1e-6), path
    else:
        assert a == b, path


@pytest.mark.parametrize("kind", KINDS)
def test_losses_gradients_and_running_statistics_match_autograd(make_mlp, splits, kind):
    reference, model = make_mlp(**kind), make_mlp(**kind)  # the same seeded init
    backprop = ManualBackprop(model)

    for Xb, Yb in batches(splits, 30):
        expected, _ = autograd_step(reference, Xb, Yb)
        loss = backprop(Xb, Yb)

        assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
        for (name, p), q in zip(reference.named_parameters(), model.parameters()):
            torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6, msg=name)
        sgd(reference)
        sgd(model)

    for (name, expected), actual in zip(reference.state_dict().items(), model.state_dict().values()):
        torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-6, msg=name)  # num_batches_tracked too


@pytest.mark.parametrize("kind", KINDS[::2])
def test_tanh_outputs_and_their_gradients_are_those_retain_grad_keeps(make_mlp, splits, kind):
    reference, model = make_mlp(**kind, n_layers=3), make_mlp(**kind, n_layers=3)
    Xb, Yb = next(batches(splits, 1))

    _, probe = autograd_step(reference, Xb, Yb)
    backprop = ManualBackprop(model)
    backprop(Xb, Yb)

    assert len(backprop.h) == len(backprop.dh) == len(probe.outputs) == 3
    for h, dh, t, dt in zip(backprop.h, backprop.dh, probe.outputs, probe.grads):
        torch.testing.assert_close(h, t, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(dh, dt, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("kind", KINDS[::2])
def test_statistics_of_the_fast_step_are_those_of_the_autograd_step(make_mlp, splits, kind):
    reference, model = make_mlp(**kind), make_mlp(**kind)
    backprop = ManualBackprop(model)
    for Xb, Yb in batches(splits, 5):  # a few updates first: gradients that are not the init's
        _, probe = autograd_step(reference, Xb, Yb)
        backprop(Xb, Yb)
        expected = diagnostics.collect(diagnostics.lecture_layers(reference), probe.outputs, probe.grads)
        stats = diagnostics.collect(diagnostics.lecture_layers(model), backprop.h, backprop.dh)
        assert_close_stats(stats, expected)
        sgd(reference)
        sgd(model)
        torch.testing.assert_close(
            diagnostics.update_to_data(diagnostics.lecture_layers(model).params, 0.1),
            diagnostics.update_to_data(diagnostics.lecture_layers(reference).params, 0.1),
            rtol=1e-5,
            atol=1e-5,
        )


def test_batchnorm_backward_is_the_lectures_formula_with_the_biased_variance():
    # what the fused kernel computes, written as in the lecture's part 4
    g = torch.Generator().manual_seed(0)
    n = 8
    hprebn, dhpreact = torch.randn(n, 5, generator=g), torch.randn(n, 5, generator=g)
    bngain = torch.rand(5, generator=g) + 0.5
    bnmean = hprebn.mean(0)
    bnvar = hprebn.var(0, unbiased=False)  # BatchNorm normalises with the biased variance
    bnvar_inv = (bnvar + 1e-5) ** -0.5
    bnraw = (hprebn - bnmean) * bnvar_inv
    dbngain = (bnraw * dhpreact).sum(0)
    dbnbias = dhpreact.sum(0)
    dhprebn = bngain * bnvar_inv / n * (n * dhpreact - dbnbias - bnraw * dbngain)

    dx, dgain, dbias = torch.ops.aten.native_batch_norm_backward(
        dhpreact, hprebn, bngain, None, None, bnmean, bnvar_inv, True, 1e-5, [True, True, True]
    )

    torch.testing.assert_close(dx, dhprebn)
    torch.testing.assert_close(dgain, dbngain)
    torch.testing.assert_close(dbias, dbnbias)
    # and autograd through nn.BatchNorm1d agrees
    x = hprebn.clone().requires_grad_(True)
    bn = nn.BatchNorm1d(5)
    with torch.no_grad():
        bn.weight.copy_(bngain)
    (bn(x) * dhpreact).sum().backward()
    torch.testing.assert_close(x.grad, dhprebn)


def test_a_non_finite_loss_still_gives_statistics(make_mlp, splits):
    model = make_mlp(batchnorm=True)
    with torch.no_grad():
        model.layers[-1].bias.fill_(float("nan"))  # every logit NaN
    backprop = ManualBackprop(model)
    Xb, Yb = next(batches(splits, 1))

    assert math.isnan(backprop(Xb, Yb).item())
    stats = diagnostics.collect(diagnostics.lecture_layers(model), backprop.h, backprop.dh)

    for layer in stats["activations"]:
        assert sum(layer["grad_hist"]) == 0 and layer["grad_std"] is None  # NaN gradients: counted nowhere, no std
        assert sum(layer["hist"]) == Xb.shape[0] * 16  # the activations themselves were finite
    assert all(sum(w["grad_hist"]) == 0 for w in stats["weights"][1:])


def test_a_layer_the_written_out_backward_does_not_know_is_refused(make_mlp):
    model = make_mlp()
    model.layers.insert(1, nn.Dropout(0.1))  # would silently get no gradient through it
    with pytest.raises(TypeError, match="Dropout"):
        ManualBackprop(model)
