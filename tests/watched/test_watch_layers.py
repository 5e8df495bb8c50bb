"""bnscope.watch(layers): the seed notebook's own classes, trained with the lecture's loop (no optimizer),
watched into a real data directory; every panel's values checked against the same quantities computed
the way the lecture's cells compute them."""

import pytest
import torch
import torch.nn.functional as F

import bnscope
from bnscope.train.data import make_splits
from bnscope.storage.store import Store


# ---- the seed notebook's classes, their three bugs fixed (self.bias, torch.no_grad(), Tanh's self.out) ----
class Linear:
    def __init__(self, fan_in, fan_out, bias=True, generator=None):
        self.weight = torch.randn((fan_in, fan_out), generator=generator) / fan_in**0.5
        self.bias = torch.zeros(fan_out) if bias else None

    def __call__(self, x):
        self.out = x @ self.weight
        if self.bias is not None:
            self.out += self.bias
        return self.out

    def parameters(self):
        return [self.weight] + ([] if self.bias is None else [self.bias])


class BatchNorm1d:
    def __init__(self, dim, eps=1e-5, momentum=0.1):
        self.eps = eps
        self.momentum = momentum
        self.training = True
        # parameters (trained with backprop)
        self.gamma = torch.ones(dim)
        self.beta = torch.zeros(dim)
        # buffers (trained with a running 'momentum update')
        self.running_mean = torch.zeros(dim)
        self.running_var = torch.ones(dim)

    def __call__(self, x):
        if self.training:
            xmean = x.mean(0, keepdim=True)  # batch mean
            xvar = x.var(0, keepdim=True)  # batch variance
        else:
            xmean = self.running_mean
            xvar = self.running_var
        xhat = (x - xmean) / torch.sqrt(xvar + self.eps)  # normalize to unit variance
        self.out = self.gamma * xhat + self.beta
        if self.training:
            with torch.no_grad():
                self.running_mean = (1 - self.momentum) * self.running_mean + self.momentum * xmean
                self.running_var = (1 - self.momentum) * self.running_var + self.momentum * xvar
        return self.out

    def parameters(self):
        return [self.gamma, self.beta]


class Tanh:
    def __call__(self, x):
        self.out = torch.tanh(x)
        return self.out

    def parameters(self):
        return []


def lecture_network(n_embd=10, n_hidden=100, block_size=3, vocab_size=27):
    g = torch.Generator().manual_seed(2147483647)  # for reproducibility
    C = torch.randn((vocab_size, n_embd), generator=g)
    layers = [
        Linear(n_embd * block_size, n_hidden, bias=False, generator=g),
        BatchNorm1d(n_hidden),
        Tanh(),
        Linear(n_hidden, n_hidden, bias=False, generator=g),
        BatchNorm1d(n_hidden),
        Tanh(),
        Linear(n_hidden, n_hidden, bias=False, generator=g),
        BatchNorm1d(n_hidden),
        Tanh(),
        Linear(n_hidden, vocab_size, bias=False, generator=g),
        BatchNorm1d(vocab_size),
    ]
    with torch.no_grad():
        layers[-1].gamma *= 0.1  # last layer: make less confident
        for layer in layers[:-1]:
            if isinstance(layer, Linear):
                layer.weight *= 5 / 3
    parameters = [C] + [p for layer in layers for p in layer.parameters()]
    for p in parameters:
        p.requires_grad = True
    return C, layers, parameters


TANHS = {2: "tanh1 · layers[2]", 5: "tanh2 · layers[5]", 8: "tanh3 · layers[8]"}  # position -> the run's name
LINEARS = {0: "linear1 · layers[0]", 3: "linear2 · layers[3]", 6: "linear3 · layers[6]", 9: "linear4 · layers[9]"}
NORMS = {
    1: "batchnorm1 · layers[1]",
    4: "batchnorm2 · layers[4]",
    7: "batchnorm3 · layers[7]",
    10: "batchnorm4 · layers[10]",
}


def lecture_cells(C, layers, parameters, lr) -> dict:
    """What the lecture's cells print and plot after a step, computed as they compute them."""
    acts = {}
    for i, layer in enumerate(layers):  # the forward pass activation statistics
        if isinstance(layer, Tanh):
            t, dt = layer.out, layer.out.grad
            hy = torch.histc(t.detach(), bins=50, min=-1.0, max=1.0)  # the lecture's torch.histogram, on tanh's range
            acts[TANHS[i]] = {
                "mean": t.mean().item(),
                "std": t.std().item(),
                "saturation": (t.abs() > 0.97).float().mean().item() * 100,
                "grad_mean": dt.mean().item(),
                "grad_std": dt.std().item(),
                "hist": hy.int().tolist(),
                "dead": int((t.abs() > 0.99).all(0).sum()),
            }
    weights = {}
    for p in parameters:  # the weights' gradient statistics: 2-D parameters only
        if p.ndim == 2:
            name = (
                "C"
                if p is C
                else LINEARS[next(i for i, layer in enumerate(layers) if any(p is q for q in layer.parameters()))]
            )
            t = p.grad
            weights[name] = {
                "grad_mean": t.mean().item(),
                "grad_std": t.std().item(),
                "grad_to_data": (t.std() / p.std()).item(),
                "ud": ((lr * p.grad).std() / p.data.std()).log10().item(),
            }
    norms = {
        NORMS[i]: {
            "gain_mean": layer.gamma.mean().item(),
            "gain_std": layer.gamma.std().item(),
            "bias_mean": layer.beta.mean().item(),
            "mean_of_running_var": layer.running_var.mean().item(),
            "running_mean": layer.running_mean.view(-1).tolist(),
        }
        for i, layer in enumerate(layers)
        if isinstance(layer, BatchNorm1d)
    }
    return {"activations": acts, "weights": weights, "norms": norms}


def train(splits, tmp_path, steps, every, explicit=False):
    C, layers, parameters = lecture_network()
    g = torch.Generator().manual_seed(2147483647)
    Xtr, Ytr = splits.Xtr, splits.Ytr
    expected, losses = {}, []
    run = bnscope.watch(layers, weights={"C": C}, every=every, data_dir=tmp_path, name="lecture")
    for i in range(steps):
        # minibatch construct
        ix = torch.randint(0, Xtr.shape[0], (32,), generator=g)
        Xb, Yb = Xtr[ix], Ytr[ix]
        # forward pass
        emb = C[Xb]  # embed the characters into vectors
        x = emb.view(emb.shape[0], -1)  # concatenate the vectors
        for layer in layers:
            x = layer(x)
        loss = F.cross_entropy(x, Yb)  # loss function
        # backward pass
        for layer in layers:
            layer.out.retain_grad()
        for p in parameters:
            p.grad = None
        loss.backward()
        # update
        lr = 0.1 if i < 150000 else 0.01  # step learning rate decay
        for p in parameters:
            p.data += -lr * p.grad
        if i % every == 0:
            expected[i] = lecture_cells(C, layers, parameters, lr)
        losses.append(loss.item())
        if explicit:
            run.step()
            run.log(loss=loss.item())  # the step just ended's
        else:
            run.log(loss=loss.item())
    run.close()
    return run, expected, losses


def test_the_lectures_layers_watched_in_the_lectures_loop_show_what_its_cells_compute(real_words, tmp_path):
    splits = make_splits(real_words[::8], block_size=3)
    steps, every = 25, 10
    run, expected, losses = train(splits, tmp_path, steps, every)
    assert run.steps == steps and run.summary["dropped"] == 0

    store = Store(tmp_path / "bnscope.sqlite3")
    (row,) = store.runs()
    assert (row["name"], row["status"], row["step"]) == ("lecture", "finished", steps)
    assert [a["name"] for a in row["model"]["activations"]] == list(TANHS.values())
    assert [w["name"] for w in row["model"]["weights"]] == ["C", *LINEARS.values()]
    assert [n["name"] for n in row["model"]["norms"]] == list(NORMS.values())
    sampled = [0, 10, 20]
    assert store.stats_steps(row["id"]) == sampled
    close = lambda value: pytest.approx(value, rel=1e-4, abs=1e-7)  # noqa: E731
    for stats in store.stats_of(row["id"], sampled):
        want = expected[stats["step"]]
        for a in stats["activations"]:
            cell = want["activations"][a["name"]]
            assert (a["kind"], a["hist"], a["dead"], a["units"]) == ("tanh", cell["hist"], cell["dead"], 100), a["name"]
            for key in ("mean", "std", "saturation", "grad_mean", "grad_std"):
                assert a[key] == close(cell[key]), (stats["step"], a["name"], key)
        for w in stats["weights"]:
            cell = want["weights"][w["name"]]
            for key in ("grad_mean", "grad_std", "grad_to_data"):
                assert w[key] == close(cell[key]), (stats["step"], w["name"], key)
        for n in stats["norms"]:
            cell = want["norms"][n["name"]]
            assert n["kind"] == "batchnorm" and n["running_mean"] == close(cell.pop("running_mean"))
            for key, value in cell.items():
                assert n[key] == close(value), (stats["step"], n["name"], key)
    for name in ["C", *LINEARS.values()]:  # update:data: the change the step made, as the lecture's lr * grad
        at, values = store.series(row["id"], f"update_to_data/{name}", 0, 10**9, 1)
        assert at == sampled
        assert values == pytest.approx([expected[s]["weights"][name]["ud"] for s in sampled], abs=1e-4), name
    assert store.series(row["id"], "loss", 0, 10**9, 1) == (list(range(steps)), pytest.approx(losses))


def test_run_step_counts_the_steps_and_log_then_only_adds_values(real_words, tmp_path):
    splits = make_splits(real_words[::8], block_size=3)
    run, expected, losses = train(splits, tmp_path, steps=12, every=5, explicit=True)
    assert run.steps == 12
    store = Store(tmp_path / "bnscope.sqlite3")
    (row,) = store.runs()
    assert store.stats_steps(row["id"]) == [0, 5, 10]
    at, values = store.series(row["id"], "loss", 0, 10**9, 1)
    assert at == list(range(12)) and values == pytest.approx(losses)
    ud = store.series(row["id"], "update_to_data/C", 0, 10**9, 1)[1]
    assert ud == pytest.approx([expected[s]["weights"]["C"]["ud"] for s in (0, 5, 10)], abs=1e-4)


def test_a_list_that_is_not_layers_is_refused(tmp_path):
    with pytest.raises(TypeError):
        bnscope.watch([1, 2], data_dir=tmp_path)
    with pytest.raises(TypeError):
        bnscope.watch([Tanh()], torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1), data_dir=tmp_path)
