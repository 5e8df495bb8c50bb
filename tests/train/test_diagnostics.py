import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from bnscope.train import diagnostics
from bnscope.config import RunConfig
from bnscope.train.data import STOI, VOCAB_SIZE, build_dataset
from bnscope.models import MLP


def probed_step(model: MLP, X: torch.Tensor, Y: torch.Tensor) -> tuple[dict, diagnostics.Probe]:
    """One forward/backward pass under the probe, then the statistics, as an autograd loop would."""
    layers = diagnostics.lecture_layers(model)
    with diagnostics.probe(layers) as probe:
        loss = F.cross_entropy(model(X), Y)
        loss.backward()
    return diagnostics.collect(layers, probe.outputs, probe.grads), probe


def decode_image(rows: list[str], n_units: int) -> list[list[bool]]:
    """The hex-packed |t| > 0.99 image back to booleans: each hex digit is 4 units, the first unit the high bit."""
    return [[bool(int(digit, 16) & bit) for digit in row for bit in (8, 4, 2, 1)][:n_units] for row in rows]


@pytest.fixture
def hand_set_model() -> MLP:
    """One hidden layer of 4 tanh units on a 1-number embedding, weights set by hand:
    the input is C[a] = 1.0 or C[b] = 0.1, and the units' weights are 100, 0, 2.5, -10, so

        unit   t for 'a'           t for 'b'
        0      tanh(100) = 1       tanh(10) > 0.99      saturated (> 0.99) for both: dead
        1      0                   0                    never saturated
        2      tanh(2.5) = 0.987   tanh(0.25) = 0.24    > 0.97 but not > 0.99
        3      tanh(-10) = -1      tanh(-1) = -0.76     > 0.99 for 'a' only
    """
    model = MLP(
        vocab_size=VOCAB_SIZE,
        block_size=1,
        n_embd=1,
        n_hidden=4,
        n_layers=1,
        batchnorm=False,
        init="kaiming",
        gain=1.0,
        last_layer_scale=1.0,
        bn_eps=1e-5,
        bn_momentum=0.1,
        generator=torch.Generator().manual_seed(0),
    )
    with torch.no_grad():
        model.embedding.weight.zero_()
        model.embedding.weight[STOI["a"], 0] = 1.0
        model.embedding.weight[STOI["b"], 0] = 0.1
        hidden = model.layers[0]
        hidden.weight.copy_(torch.tensor([[100.0], [0.0], [2.5], [-10.0]]))
        hidden.bias.zero_()
    return model


def test_saturation_dead_units_and_image_on_hand_set_weights(hand_set_model):
    X = torch.tensor([[STOI["a"]], [STOI["b"]]])
    Y = torch.tensor([STOI["c"], STOI["d"]])

    stats, _ = probed_step(hand_set_model, X, Y)

    (layer,) = stats["activations"]
    assert layer["name"] == "tanh1"
    # > 0.97: units 0, 2, 3 for 'a' and unit 0 for 'b': 4 of the 8 values
    assert layer["saturation"] == pytest.approx(50.0)
    assert layer["dead"] == 1  # unit 0 only: unit 3 is not saturated for 'b'
    # > 0.99 rows: 'a' -> units 0 and 3 -> 1001 = 9; 'b' -> unit 0 -> 1000 = 8
    assert layer["image"] == ["9", "8"]


def test_activation_and_gradient_summaries_match_an_independent_computation(hand_set_model):
    model = hand_set_model
    X = torch.tensor([[STOI["a"]], [STOI["b"]], [STOI["b"]]])
    Y = torch.tensor([STOI["c"], STOI["d"], STOI["e"]])

    stats, _ = probed_step(model, X, Y)

    # the same network written out by hand, its tanh output a leaf we can ask the gradient of
    hidden, out = model.layers[0], model.layers[2]
    with torch.no_grad():
        t = torch.tanh(model.embedding.weight[X[:, 0]] @ hidden.weight.T + hidden.bias)
    t.requires_grad_(True)
    loss = F.cross_entropy(t @ out.weight.detach().T + out.bias.detach(), Y)
    (dt,) = torch.autograd.grad(loss, t)
    t_np, dt_np = t.detach().numpy().astype(np.float64), dt.numpy().astype(np.float64)

    (layer,) = stats["activations"]
    assert layer["mean"] == pytest.approx(t_np.mean(), abs=1e-6)
    assert layer["std"] == pytest.approx(t_np.std(ddof=1), abs=1e-6)  # torch's std: the unbiased one
    assert layer["grad_mean"] == pytest.approx(dt_np.mean(), abs=1e-7)
    assert layer["grad_std"] == pytest.approx(dt_np.std(ddof=1), rel=1e-5)


def test_weight_gradient_summaries_and_grad_to_data_ratio(make_mlp, splits):
    model = make_mlp(batchnorm=True)
    stats, _ = probed_step(model, splits.Xtr[:32], splits.Ytr[:32])

    linears = [m for m in model.layers if isinstance(m, nn.Linear)]
    expected = [("C", model.embedding.weight)] + [(f"linear{i}", m.weight) for i, m in enumerate(linears, 1)]
    assert [w["name"] for w in stats["weights"]] == [name for name, _ in expected]
    for w, (name, param) in zip(stats["weights"], expected):
        grad, data = param.grad.numpy().astype(np.float64), param.detach().numpy().astype(np.float64)
        assert w["shape"] == list(param.shape)
        assert w["grad_mean"] == pytest.approx(grad.mean(), abs=1e-7), name
        assert w["grad_std"] == pytest.approx(grad.std(ddof=1), rel=1e-5), name
        assert w["grad_to_data"] == pytest.approx(grad.std(ddof=1) / data.std(ddof=1), rel=1e-5), name


def test_histograms_count_every_element_in_the_shared_range(make_mlp, splits):
    model = make_mlp(batchnorm=False)
    B = 32
    stats, probe = probed_step(model, splits.Xtr[:B], splits.Ytr[:B])

    for layer, t, g in zip(stats["activations"], probe.outputs, probe.grads):
        assert layer["range"] == [-1.0, 1.0]  # tanh's bounds
        lo, hi = layer["grad_range"]  # each layer's own: a small gradient is not lost in a big one's bins
        assert hi == pytest.approx(g.abs().max().item()) and lo == -hi
        assert len(layer["hist"]) == len(layer["grad_hist"]) == diagnostics.HIST_BINS
        assert sum(layer["hist"]) == t.numel() == B * 16
        assert sum(layer["grad_hist"]) == t.numel()
        expected, _ = np.histogram(t.detach().numpy(), bins=diagnostics.HIST_BINS, range=(-1, 1))
        assert layer["hist"] == expected.tolist()
    params = diagnostics.lecture_layers(model).params
    assert [sum(w["grad_hist"]) for w in stats["weights"]] == [p.numel() for p in params]


def test_image_decodes_to_the_saturated_units_of_every_example(make_mlp, splits):
    # 18 units: not a multiple of 4, so the last hex digit of a row holds 2 units and 2 padding bits
    model = make_mlp(batchnorm=False, n_hidden=18, gain=3.0)
    stats, probe = probed_step(model, splits.Xtr[:20], splits.Ytr[:20])

    for layer, t in zip(stats["activations"], probe.outputs):
        saturated = (t.abs() > 0.99).tolist()
        assert len(layer["image"]) == 20 and all(len(row) == 5 for row in layer["image"])  # ceil(18 / 4)
        assert decode_image(layer["image"], 18) == saturated
        assert any(any(row) for row in saturated) and not all(all(row) for row in saturated)
        dead = sum(all(column) for column in zip(*saturated))
        assert layer["dead"] == dead


def test_batchnorm_statistics_are_the_modules_running_buffers(make_mlp, splits):
    model = make_mlp(batchnorm=True)
    stats, _ = probed_step(model, splits.Xtr[:32], splits.Ytr[:32])

    bns = [m for m in model.layers if isinstance(m, nn.BatchNorm1d)]
    assert len(stats["norms"]) == len(bns) == 3
    for entry, bn in zip(stats["norms"], bns):
        assert entry["running_mean"] == bn.running_mean.tolist()
        assert entry["running_var"] == bn.running_var.tolist()
        assert entry["mean_of_running_mean"] == pytest.approx(bn.running_mean.mean().item(), abs=1e-7)
        assert entry["mean_of_running_var"] == pytest.approx(bn.running_var.mean().item())


def test_layers_have_lecture_style_names(make_mlp, splits):
    stats, _ = probed_step(make_mlp(batchnorm=True), splits.Xtr[:32], splits.Ytr[:32])
    assert [layer["name"] for layer in stats["activations"]] == ["tanh1", "tanh2"]
    assert [w["name"] for w in stats["weights"]] == ["C", "linear1", "linear2", "linear3"]
    assert [bn["name"] for bn in stats["norms"]] == ["batchnorm1", "batchnorm2", "batchnorm3"]


def test_no_batchnorm_no_batchnorm_statistics(make_mlp, splits):
    stats, _ = probed_step(make_mlp(batchnorm=False), splits.Xtr[:32], splits.Ytr[:32])
    assert stats["norms"] == []


def test_update_to_data_is_log10_of_update_std_over_data_std():
    # hand-checkable: a gradient 1/1000 of the data with lr 1 is a ratio of 10^-3; the data itself with lr 0.1, 10^-1
    a = torch.tensor([[1.0, 2.0], [3.0, 5.0]])
    a.grad = a / 1000
    b = torch.tensor([[0.5, -2.0, 4.0]])
    b.grad = b.clone()
    assert diagnostics.update_to_data([a], lr=1.0).tolist() == pytest.approx([-3.0], abs=1e-6)
    assert diagnostics.update_to_data([b], lr=0.1).tolist() == pytest.approx([-1.0], abs=1e-6)


def test_update_to_data_matches_numpy_on_a_real_gradient(make_mlp, splits):
    model = make_mlp()
    F.cross_entropy(model(splits.Xtr[:32]), splits.Ytr[:32]).backward()
    params = diagnostics.lecture_layers(model).params
    lr = 0.1

    ratios = diagnostics.update_to_data(params, lr).tolist()

    for ratio, p in zip(ratios, params):
        g, d = p.grad.numpy().astype(np.float64), p.detach().numpy().astype(np.float64)
        assert ratio == pytest.approx(math.log10(np.std(lr * g, ddof=1) / np.std(d, ddof=1)), abs=1e-5)


def test_probe_leaves_no_hooks_behind(make_mlp, splits):
    model = make_mlp()
    with diagnostics.probe(diagnostics.lecture_layers(model)) as probe:
        model(splits.Xtr[:8])
    kept = list(probe.outputs)
    assert len(kept) == 2 and all(o.shape == (8, 16) for o in kept)
    model(splits.Xtr[:9])
    assert all(a is b for a, b in zip(probe.outputs, kept))  # the forward pass after the `with` kept nothing


def init_saturation(real_words, **overrides) -> list[float]:
    """Saturation % of every tanh layer of the default (width 100) network at init, on 500 real examples."""
    config = RunConfig(**overrides)
    model = MLP(vocab_size=VOCAB_SIZE, generator=torch.Generator().manual_seed(config.seed), **config.model_kwargs())
    X, Y = build_dataset(real_words[::16], config.block_size)
    ix = torch.randint(0, X.shape[0], (500,), generator=torch.Generator().manual_seed(0))
    stats, _ = probed_step(model, X[ix], Y[ix])
    return [layer["saturation"] for layer in stats["activations"]]


def normal_tail_percent(threshold: float) -> float:
    """P(|z| > threshold) for a standard normal z, in %."""
    return 100 * math.erfc(threshold / math.sqrt(2))


def test_init_saturation_without_batchnorm_low_at_gain_5_3_high_at_gain_5(real_words):
    # The first layer's pre-activation is a sum of 30 unit-variance embedding numbers times
    # randn / sqrt(30) * gain: about N(0, gain^2). So |tanh| > 0.97 means |z| > atanh(0.97) / gain:
    # about 21% at gain 5/3 (the lecture shows 20.25%), about 68% at gain 5.
    gentle = init_saturation(real_words, batchnorm=False, gain=5 / 3)
    harsh = init_saturation(real_words, batchnorm=False, gain=5.0)

    assert gentle[0] == pytest.approx(normal_tail_percent(math.atanh(0.97) / (5 / 3)), abs=3)
    assert harsh[0] == pytest.approx(normal_tail_percent(math.atanh(0.97) / 5), abs=3)
    assert max(gentle[1:]) < 10  # deeper layers: a few % (the lecture: 8.38, 6.62, 5.47, 6.12)
    assert min(harsh) > 40


# ---- any nn.Module ------------------------------------------------------------------------------------


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 6)
        self.norm = nn.LayerNorm(6)
        self.act = nn.GELU()


class Net(nn.Module):
    """Nested modules, a module used twice (shared), and one activation held under two names."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 6)
        self.blocks = nn.ModuleList([Block(), Block()])
        self.relu = nn.ReLU(inplace=True)
        self.again = self.relu  # the same module under a second name
        self.head = nn.Linear(6, 3)


def test_find_layers_names_any_model_by_its_qualified_names_once_each():
    layers = diagnostics.find_layers(Net())
    assert [(n, k) for n, k, _ in layers.activations] == [
        ("blocks.0.act", "gelu"),
        ("blocks.1.act", "gelu"),
        ("relu", "relu"),
    ]
    assert [(n, k) for n, k, _ in layers.weights] == [
        ("embed", "embedding"),
        ("blocks.0.fc", "linear"),
        ("blocks.1.fc", "linear"),
        ("head", "linear"),
    ]
    assert [(n, k) for n, k, _ in layers.norms] == [("blocks.0.norm", "layernorm"), ("blocks.1.norm", "layernorm")]


def layers_of(*kinds: str) -> diagnostics.Layers:
    return diagnostics.Layers([(f"{kind}{i}", kind, nn.Identity()) for i, kind in enumerate(kinds)], [], [])


def test_saturation_and_dead_units_fit_each_function():
    # relu: 0 is its flat part; unit 0 is zero for every example (dead), unit 1 for one of two
    relu = torch.tensor([[0.0, 0.0, 2.0], [0.0, 1.5, 0.3]])
    # sigmoid: near 0 or 1 is flat (< 0.03, > 0.97); unit 2 is flat for both examples
    sigmoid = torch.tensor([[0.5, 0.99, 0.001], [0.2, 0.5, 0.995]])
    stats = diagnostics.collect(layers_of("relu", "sigmoid"), [relu, sigmoid], [None, None])
    r, s = stats["activations"]
    assert r["saturation"] == pytest.approx(100 * 3 / 6) and r["dead"] == 1 and r["units"] == 3
    assert s["saturation"] == pytest.approx(100 * 3 / 6) and s["dead"] == 1
    assert r["grad_mean"] is None and r["grad_std"] is None  # not measured
    assert s["range"] == [0.0, 1.0]  # sigmoid's bounds
    assert r["range"] == [0.0, 2.0]  # an unbounded function: the batch's min..max
    assert sum(r["hist"]) == 6 and r["hist"][0] == 3 and r["hist"][-1] == 1


def test_conv_outputs_count_channels_as_units_and_sequences_their_last_dim():
    conv = torch.randn(4, 3, 5, 5).relu()  # (B, C, H, W)
    conv[:, 1] = 0.0  # channel 1 never fires: dead
    tokens = torch.randn(2, 7, 8).relu()  # (B, T, C)
    tokens[..., 5] = 0.0
    stats = diagnostics.collect(layers_of("relu", "relu"), [conv, tokens], [None, None])
    c, t = stats["activations"]
    assert (c["units"], c["dead"]) == (3, 1) and (t["units"], t["dead"]) == (8, 1)
    assert c["saturation"] == pytest.approx(100 * (conv <= 0).float().mean().item())
    assert sum(c["hist"]) == conv.numel() and "image" not in c


def test_norm_layers_report_their_affine_parameters():
    norm = nn.LayerNorm(4)
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    layers = diagnostics.Layers([], [], [("norm", "layernorm", norm)])
    (entry,) = diagnostics.collect(layers, [], [])["norms"]
    assert entry["gain_mean"] == pytest.approx(2.5) and entry["gain_std"] == pytest.approx(
        torch.tensor([1.0, 2, 3, 4]).std().item()
    )
    assert entry["bias_mean"] == 0 and "running_mean" not in entry


def test_values_that_are_not_finite_count_in_no_range_and_no_histogram():
    # a diverging run: an activation and a gradient with NaN and inf among finite values
    gelu = torch.tensor([[0.5, math.nan, -0.1], [math.inf, 2.0, 0.0]])
    grad = torch.tensor([[1e-3, -math.inf, 2e-3], [math.nan, -4e-3, 0.0]])
    stats = diagnostics.collect(layers_of("gelu"), [gelu], [grad])
    (g,) = stats["activations"]
    assert g["mean"] is None and g["grad_std"] is None
    assert g["range"] == pytest.approx([-0.1, 2.0]) and sum(g["hist"]) == 4
    assert g["grad_range"] == pytest.approx([-4e-3, 4e-3]) and sum(g["grad_hist"]) == 4
    assert g["grad_hist"][0] == 1 and g["grad_hist"][-1] == 0  # -4e-3 in the first bin; +4e-3 is no value


def test_the_range_rule_is_the_same_in_python_on_a_cpu_and_in_tensor_ops_on_a_gpu():
    from bnscope.train.diagnostics.rows import _device_ranges, _host_ranges

    # a bounded activation, an unbounded one, one whose values are all equal, and gradients (one all 0)
    tensors = [torch.rand(3, 4).tanh(), torch.randn(3, 4).relu(), torch.full((2, 6), 0.25)]
    tensors += [torch.randn(3, 4), torch.zeros(12), torch.randn(5) * 1e-3]
    rows = diagnostics._Rows(tensors, ("tanh", "relu", "gelu"), len(tensors))
    lo = torch.cat([g.amin(1) for g in rows.binned])
    hi = torch.cat([g.amax(1) for g in rows.binned])
    on_host = torch.tensor(_host_ranges(rows.plan, lo.tolist(), hi.tolist()))
    on_device = _device_ranges(rows.plan, lo, hi)
    assert torch.equal(on_host, on_device)
    own = on_device[rows.plan.binned_order].tolist()
    assert own[0] == [-1.0, 1.0] and own[2] == [-0.75, 1.25] and own[4] == [-1.0, 1.0]
    assert own[1] == [lo[rows.plan.binned_rows.index(1)].item(), hi[rows.plan.binned_rows.index(1)].item()]


def test_the_one_device_to_host_copy_keeps_every_part_as_it_was():
    # what a GPU's statistics step sends through its single copy: float64 sums (a BatchNorm gain's, whose
    # spread float32 would lose), float32 ranges, int counts and the image's ASCII codes
    gain = torch.full((100,), 1.0, dtype=torch.float64) + torch.arange(100, dtype=torch.float64) * 1e-9
    parts = [
        ("sums", torch.stack([gain.sum(), gain.square().sum()]), "float"),
        ("range", torch.tensor([[-0.5, 0.25]]), "float"),
        ("hist", torch.tensor([[3, 0, 2**20]]), "int"),
        ("image", torch.tensor(list(b"0f9a"), dtype=torch.uint8), "text"),
    ]
    out = diagnostics._through_one_copy(parts)
    assert out["sums"] == [gain.sum().item(), gain.square().sum().item()]  # to the last float64 digit
    assert out["range"] == [[-0.5, 0.25]] and out["hist"] == [[3, 0, 2**20]] and out["image"] == "0f9a"


def test_a_gpus_count_by_scatter_equals_a_cpus_bincount():
    from bnscope.train.diagnostics.rows import _count, _scatter_count

    slots = 3 * diagnostics.HIST_BINS
    index = torch.randint(0, slots + 5, (1000,), generator=torch.Generator().manual_seed(0), dtype=torch.int32)
    ones = torch.ones(1000, dtype=torch.long)
    on_cpu, by_scatter = _count(index, slots, ones), _scatter_count(index, slots, ones)
    assert on_cpu.tolist() == by_scatter.tolist() and len(on_cpu) == slots
    assert int(on_cpu.sum()) == int((index < slots).sum())  # a value past the slots counts nowhere
