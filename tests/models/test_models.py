import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from bnscope.config import RunConfig
from bnscope.train.data import VOCAB_SIZE, build_dataset
from bnscope.models import MLP, lecture
from bnscope.models.lecture import LectureMLP


def a_batch(words, n=64, block_size=3):
    X, Y = build_dataset(words, block_size)
    ix = torch.randint(0, X.shape[0], (n,), generator=torch.Generator().manual_seed(0))
    return X[ix], Y[ix]


def paired_parameters(mlp: MLP, net: LectureMLP):
    """(name, torch-side parameter, lecture-side parameter, lecture layout -> torch layout) for every
    parameter: the lecture's Linear keeps W as (fan_in, fan_out), nn.Linear as (fan_out, fan_in)."""
    same, transpose = (lambda t: t), (lambda t: t.T)
    yield "C", mlp.embedding.weight, net.C, same
    for i, (module, layer) in enumerate(zip(mlp.layers, net.layers)):
        if isinstance(module, nn.Linear):
            yield f"layers.{i}.weight", module.weight, layer.weight, transpose
            if module.bias is not None:
                yield f"layers.{i}.bias", module.bias, layer.bias, same
        elif isinstance(module, nn.BatchNorm1d):
            yield f"layers.{i}.gamma", module.weight, layer.gamma, same
            yield f"layers.{i}.beta", module.bias, layer.beta, same


def lecture_init(config: RunConfig, g: torch.Generator | None = None) -> tuple[torch.Tensor, list]:
    """The lecture notebook's own initialisation cell, with its layer classes, drawing from `g` (by
    default a new generator of the config's seed)."""
    g = g or torch.Generator().manual_seed(config.seed)
    C = torch.randn((VOCAB_SIZE, config.n_embd), generator=g)
    bn, unbiased = config.batchnorm, config.bn_variance == "unbiased"
    layers = []
    fan_in = config.n_embd * config.block_size
    for _ in range(config.n_layers):
        layers += [lecture.Linear(fan_in, config.n_hidden, bias=not bn, generator=g)]
        layers += [lecture.BatchNorm1d(config.n_hidden, unbiased=unbiased)] if bn else []
        layers += [lecture.Tanh()]
        fan_in = config.n_hidden
    layers += [lecture.Linear(fan_in, VOCAB_SIZE, bias=not bn, generator=g)]
    layers += [lecture.BatchNorm1d(VOCAB_SIZE, unbiased=unbiased)] if bn else []
    with torch.no_grad():
        if bn:
            layers[-1].gamma *= config.last_layer_scale
        else:
            layers[-1].weight *= config.last_layer_scale
        for layer in layers[:-1]:
            if isinstance(layer, lecture.Linear):
                layer.weight *= config.gain
    return C, layers


@pytest.mark.parametrize("batchnorm", [True, False], ids=["bn", "no-bn"])
def test_kaiming_init_is_the_lectures_initialisation(make_config, batchnorm):
    config = make_config(batchnorm=batchnorm)
    mlp = MLP(vocab_size=VOCAB_SIZE, generator=torch.Generator().manual_seed(config.seed), **config.model_kwargs())
    C, layers = lecture_init(config)

    assert torch.equal(mlp.embedding.weight, C)
    assert len(mlp.layers) == len(layers)
    for module, layer in zip(mlp.layers, layers):
        if isinstance(module, nn.Linear):
            assert torch.allclose(module.weight, layer.weight.T)
            assert (module.bias is None) == (layer.bias is None) == batchnorm
        elif isinstance(module, nn.BatchNorm1d):
            assert torch.equal(module.weight, layer.gamma) and torch.equal(module.bias, layer.beta)


def test_the_same_seed_builds_the_same_network(make_mlp):
    a, b = make_mlp(), make_mlp()
    for (name, ta), tb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(ta, tb), name
    assert not torch.equal(make_mlp(seed=1).embedding.weight, a.embedding.weight)


def test_torch_default_init_draws_linear_weights_within_one_over_sqrt_fan_in(make_mlp):
    mlp = make_mlp(init="torch-default", batchnorm=False, last_layer_scale=1.0)
    for linear in [m for m in mlp.layers if isinstance(m, nn.Linear)]:
        bound = 1 / math.sqrt(linear.in_features)
        assert linear.weight.abs().max() <= bound and linear.bias.abs().max() <= bound
        assert linear.weight.abs().max() > 0.9 * bound  # really spread over the range, not kaiming's shape


def test_an_unknown_init_is_refused():
    with pytest.raises(ValueError, match="init"):
        MLP(vocab_size=VOCAB_SIZE, **{**RunConfig().model_kwargs(), "init": "xavier"})


@pytest.mark.parametrize("init", ["kaiming", "torch-default"])
@pytest.mark.parametrize("batchnorm", [True, False], ids=["bn", "no-bn"])
def test_torch_network_and_lecture_network_agree_in_train_mode(make_mlp, words, batchnorm, init):
    mlp = make_mlp(batchnorm=batchnorm, init=init)
    net = LectureMLP.from_torch(mlp)
    X, Y = a_batch(words)

    logits, lecture_logits = mlp(X), net(X)
    loss, lecture_loss = F.cross_entropy(logits, Y), F.cross_entropy(lecture_logits, Y)
    loss.backward()
    lecture_loss.backward()

    assert torch.allclose(logits, lecture_logits, atol=1e-5)
    assert loss.item() == pytest.approx(lecture_loss.item(), abs=1e-6)
    pairs = list(paired_parameters(mlp, net))
    assert len(pairs) == len(list(mlp.parameters())) == len(net.parameters())
    for name, ours, theirs, to_torch_layout in pairs:
        assert torch.allclose(ours.grad, to_torch_layout(theirs.grad), atol=1e-6), name
    bns = [(m, layer) for m, layer in zip(mlp.layers, net.layers) if isinstance(m, nn.BatchNorm1d)]
    assert len(bns) == (3 if batchnorm else 0)  # one per hidden layer (n_layers=2) and the output BN
    for module, layer in bns:
        assert torch.allclose(module.running_mean, layer.running_mean, atol=1e-6)
        assert torch.allclose(module.running_var, layer.running_var, atol=1e-5)
        assert not torch.equal(module.running_var, torch.ones_like(module.running_var))  # they did move


@pytest.mark.parametrize("batchnorm", [True, False], ids=["bn", "no-bn"])
def test_torch_network_and_lecture_network_agree_in_eval_mode(make_mlp, words, batchnorm):
    mlp = make_mlp(batchnorm=batchnorm)
    X, _ = a_batch(words)
    with torch.no_grad():
        mlp(X)  # a train-mode pass, so the running statistics are not the initial 0 / 1
    net = LectureMLP.from_torch(mlp)
    mlp.eval()
    net.eval()

    with torch.no_grad():
        first, lecture_first = mlp(X[:1]), net(X[:1])  # eval mode needs no batch: one example works
        assert torch.allclose(mlp(X), net(X), atol=1e-5)
    assert torch.allclose(first, lecture_first, atol=1e-5)


def test_initial_loss_is_that_of_a_uniform_guess_over_27_characters(real_words):
    config = RunConfig()
    mlp = MLP(vocab_size=VOCAB_SIZE, generator=torch.Generator().manual_seed(config.seed), **config.model_kwargs())
    X, Y = a_batch(real_words[::6], n=1000)  # girls' and boys' names alike
    with torch.no_grad():
        loss = F.cross_entropy(mlp(X), Y).item()
    assert loss == pytest.approx(-math.log(1 / 27), abs=0.1)  # 3.2958...
