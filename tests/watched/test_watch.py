"""bnscope.watch on a user's own network, recorded into a real data directory (no server): what it
measures, checked against the test's own record of the same steps (plain hooks, direct torch
formulas), and what it counts as a step."""

import math
import subprocess
import sys
import warnings
from functools import partial

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import bnscope
from bnscope.train import diagnostics
from bnscope.storage.store import Store


class Block(nn.Module):
    """Nested: a pre-norm residual MLP block."""

    def __init__(self, d: int):
        super().__init__()
        self.norm, self.fc, self.act = nn.LayerNorm(d), nn.Linear(d, d), nn.GELU()

    def forward(self, x):
        return x + self.act(self.fc(self.norm(x)))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(8, 16)
        self.relu = nn.ReLU(inplace=True)
        self.drop = nn.Dropout(0.25)
        self.block = Block(16)
        self.shared = nn.Sequential(nn.Linear(16, 16), nn.Tanh())  # applied twice a forward
        self.bn = nn.BatchNorm1d(16)
        self.out = nn.Linear(16, 4)

    def forward(self, x):
        h = self.drop(self.relu(self.inp(x)))
        h = self.shared(self.shared(self.block(h)))
        return self.out(self.bn(h))


ACTIVATIONS = {"relu": "relu", "block.act": "gelu", "shared.1": "tanh"}
WEIGHTS = ["inp", "block.fc", "shared.0", "out"]
NORMS = {"block.norm": "layernorm", "bn": "batchnorm"}


class Record:
    """The test's own record of the last training forward: each activation module's outputs (copied:
    the in-place ReLU's is its input's storage) and the loss's gradients w.r.t. them."""

    def __init__(self, model: nn.Module):
        self.outputs: dict[str, list] = {}
        self.grads: dict[str, dict] = {}
        for name, module in model.named_modules():
            if name in ACTIVATIONS:
                module.register_forward_hook(partial(self._keep, name))

    def _keep(self, name, module, inputs, out):
        if module.training and torch.is_grad_enabled():
            calls, grads = self.outputs.setdefault(name, []), self.grads.setdefault(name, {})
            j = len(calls)
            calls.append(out.detach().clone())
            out.register_hook(lambda g: grads.__setitem__(j, g.clone()))

    def clear(self):
        self.outputs.clear()
        self.grads.clear()


FLAT = {"relu": lambda t: t <= 0, "gelu": lambda t: t <= 0, "tanh": lambda t: t.abs() >= 0.97}
DEAD = {"relu": lambda t: t <= 0, "gelu": lambda t: t <= 0, "tanh": lambda t: t.abs() >= 0.99}


def expected_stats(record: Record, model: Net, lr: float | None, before: dict | None) -> dict:
    """What the step's statistics should be, straight from torch."""
    acts = {}
    for name, kind in ACTIVATIONS.items():
        calls, grads = record.outputs[name], record.grads[name]
        out = torch.cat([c.reshape(-1) for c in calls])
        grad = torch.cat([grads[j].reshape(-1) for j in range(len(calls))])
        acts[name] = {
            "mean": out.mean().item(),
            "std": out.std().item(),
            "grad_std": grad.std().item(),
            "saturation": FLAT[kind](out).float().mean().item() * 100,
            # each call's units are units of their own: a unit dead for every example of that call
            "dead": sum(int(DEAD[kind](c).all(0).sum()) for c in calls),
            "units": sum(c.shape[1] for c in calls),
        }
    params = dict(model.named_modules())
    weights = {}
    for name in WEIGHTS:
        w = params[name].weight
        weights[name] = {"grad_to_data": (w.grad.std() / w.detach().std()).item()}
        if before is not None:
            weights[name]["ud"] = math.log10(((w.detach() - before[name]).std() / w.detach().std()).item())
    norms = {
        "bn": {
            "mean_of_running_mean": model.bn.running_mean.mean().item(),
            "mean_of_running_var": model.bn.running_var.mean().item(),
            "gain_mean": model.bn.weight.mean().item(),
        },
        "block.norm": {
            "gain_mean": model.block.norm.weight.mean().item(),
            "bias_mean": model.block.norm.bias.mean().item(),
        },
    }
    return {"activations": acts, "weights": weights, "norms": norms}


def recorded(data_dir) -> tuple[Store, dict]:
    store = Store(data_dir / "bnscope.sqlite3")
    (run,) = store.runs()
    return store, run


def series(store: Store, run_id: int, name: str) -> tuple[list[int], list[float]]:
    return store.series(run_id, name, 0, 10**9, 1)


def assert_matches(stats: dict, expected: dict) -> None:
    close = partial(pytest.approx, rel=1e-4, abs=1e-7)
    acts = {a["name"]: a for a in stats["activations"]}
    assert {name: a["kind"] for name, a in acts.items()} == ACTIVATIONS
    for name, want in expected["activations"].items():
        got = acts[name]
        assert got["units"] == want["units"] and got["dead"] == want["dead"], name
        for key in ("mean", "std", "grad_std", "saturation"):
            assert got[key] == close(want[key]), (name, key)
    weights = {w["name"]: w for w in stats["weights"]}
    assert list(weights) == WEIGHTS
    for name, want in expected["weights"].items():
        assert weights[name]["grad_to_data"] == close(want["grad_to_data"]), name
    norms = {n["name"]: n for n in stats["norms"]}
    assert {name: n["kind"] for name, n in norms.items()} == NORMS
    for name, want in expected["norms"].items():
        for key, value in want.items():
            assert norms[name][key] == close(value), (name, key)


def batch(g: torch.Generator, n: int = 32):
    return torch.randn(n, 8, generator=g), torch.randint(0, 4, (n,), generator=g)


def test_a_watched_step_measures_what_torch_says_and_evaluations_in_between_change_nothing(tmp_path):
    torch.manual_seed(0)
    model, g = Net(), torch.Generator().manual_seed(1)
    record = Record(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)  # momentum: update != lr * grad
    steps, every = 14, 4
    expected, losses = {}, []
    with bnscope.watch(model, optimizer, every=every, data_dir=tmp_path, name="mine") as run:
        for step in range(steps):
            record.clear()
            x, y = batch(g)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            model.eval()  # evaluations between backward and step: ignored, not counted
            with torch.no_grad():
                model(torch.randn(64, 8))
            model(torch.randn(64, 8)).sum()  # eval mode with grad on: also an evaluation
            model.train()
            before = {name: m.weight.detach().clone() for name, m in model.named_modules() if name in WEIGHTS}
            optimizer.step()
            if step % every == 0:
                expected[step] = expected_stats(record, model, 0.05, before)
            run.log(loss=loss.item())
            losses.append(loss.item())
    assert run.steps == steps and run.summary["dropped"] == 0

    store, row = recorded(tmp_path)
    assert (row["name"], row["source"], row["status"], row["step"]) == ("mine", "watched", "finished", steps)
    assert [e["name"] for e in row["model"]["activations"]] == list(ACTIVATIONS)
    sampled = list(range(0, steps, every))
    assert store.stats_steps(row["id"]) == sampled
    for stats in store.stats_of(row["id"], sampled):
        assert_matches(stats, expected[stats["step"]])
    for name in WEIGHTS:  # update:data: the change the optimizer made (SGD with momentum)
        at, values = series(store, row["id"], f"update_to_data/{name}")
        assert at == sampled
        assert values == pytest.approx([expected[s]["weights"][name]["ud"] for s in sampled], abs=1e-4)
    assert series(store, row["id"], "loss") == (list(range(steps)), pytest.approx(losses))


def test_gradient_accumulation_counts_optimizer_steps_and_measures_the_last_micro_batch(tmp_path):
    torch.manual_seed(0)
    model, g = Net(), torch.Generator().manual_seed(2)
    record = Record(model)
    lr, steps, every, micro = 0.1, 7, 3, 4
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    expected = {}
    with bnscope.watch(model, optimizer, every=every, data_dir=tmp_path) as run:
        for step in range(steps):
            optimizer.zero_grad()
            for _ in range(micro):
                record.clear()
                x, y = batch(g, 16)
                (F.cross_entropy(model(x), y) / micro).backward()
                run.log(micro_loss=1.0)  # during the step: it belongs to this step
            optimizer.step()
            if step % every == 0:
                expected[step] = expected_stats(record, model, lr, None)
                for name in WEIGHTS:  # plain SGD: the lecture's log10(std(lr * grad) / std(w)), the grad accumulated
                    w = dict(model.named_modules())[name].weight
                    expected[step]["weights"][name]["ud"] = math.log10(((lr * w.grad).std() / w.detach().std()).item())
    assert run.steps == steps

    store, row = recorded(tmp_path)
    sampled = [0, 3, 6]
    assert store.stats_steps(row["id"]) == sampled
    for stats in store.stats_of(row["id"], sampled):
        assert_matches(stats, expected[stats["step"]])
    for name in WEIGHTS:
        at, values = series(store, row["id"], f"update_to_data/{name}")
        assert at == sampled
        assert values == pytest.approx([expected[s]["weights"][name]["ud"] for s in sampled], abs=1e-4)
    at, _ = series(store, row["id"], "metric/micro_loss")
    assert at == list(range(steps))


def test_without_an_optimizer_a_step_is_a_backward_pass(tmp_path):
    """The lecture's loop: p.data += -lr * p.grad by hand. Statistics come from the end of the backward,
    before the update; there is no update:data without an optimizer's step hooks."""
    torch.manual_seed(0)
    model, g = Net(), torch.Generator().manual_seed(3)
    record = Record(model)
    params = list(model.parameters())
    steps, every, expected = 9, 4, {}
    with bnscope.watch(model, every=every, data_dir=tmp_path) as run:
        for step in range(steps):
            record.clear()
            x, y = batch(g)
            loss = F.cross_entropy(model(x), y)
            for p in params:
                p.grad = None
            loss.backward()
            if step % every == 0:
                expected[step] = expected_stats(record, model, None, None)
            with torch.no_grad():
                model.eval()
                model(torch.randn(8, 8))
                model.train()
            for p in params:
                p.data += -0.1 * p.grad
    assert run.steps == steps
    store, row = recorded(tmp_path)
    assert store.stats_steps(row["id"]) == [0, 4, 8]
    for stats in store.stats_of(row["id"], [0, 4, 8]):
        assert_matches(stats, expected[stats["step"]])
    assert not [name for name in store.series_names(row["id"]) if name.startswith("update_to_data/")]


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 6, 3, padding=1), nn.Conv2d(6, 10, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)  # one module after both convolutions (6 then 10 channels)
        self.head = nn.Linear(10, 3)

    def forward(self, x):
        return self.head(self.relu(self.conv2(self.relu(self.conv1(x)))).mean((2, 3)))


def test_a_shared_relu_after_convolutions_counts_each_uses_channels_and_the_dead_ones(tmp_path):
    torch.manual_seed(0)
    model = CNN()
    with torch.no_grad():  # channels <= 0 at every pixel of every image: two in the first use, three in the second
        model.conv1.bias[:2] = -50.0
        model.conv2.bias[:3] = -50.0
    outputs = []
    model.relu.register_forward_hook(lambda m, i, o: outputs.append(o.detach().clone()))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    with bnscope.watch(model, optimizer, every=1, data_dir=tmp_path) as run:
        x = torch.randn(5, 1, 8, 8)
        F.cross_entropy(model(x), torch.tensor([0, 1, 2, 0, 1])).backward()
        optimizer.step()
    first, second = outputs
    dead = [int((o.amax(dim=(0, 2, 3)) <= 0).sum()) for o in (first, second)]
    assert dead[0] >= 2 and dead[1] >= 3
    store, row = recorded(tmp_path)
    (stats,) = store.stats_of(row["id"], [0])
    (relu,) = stats["activations"]
    assert (relu["name"], relu["units"], relu["dead"]) == ("relu", 16, sum(dead))
    both = torch.cat([first.reshape(-1), second.reshape(-1)])
    assert relu["saturation"] == pytest.approx((both <= 0).float().mean().item() * 100)
    assert {w["name"]: w["kind"] for w in stats["weights"]} == {"conv1": "conv", "conv2": "conv", "head": "linear"}
    assert run.summary["dropped"] == 0


def test_update_to_data_from_the_change_a_step_made_is_the_lectures_for_plain_sgd():
    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(20, 30))
    w.grad = torch.randn(20, 30)
    before = diagnostics.snapshot([w])
    torch.optim.SGD([w], lr=0.01).step()
    assert diagnostics.step_to_data(before, [w]).tolist() == pytest.approx(
        diagnostics.update_to_data([w], 0.01).tolist(), abs=1e-5
    )


def test_tied_weights_are_one_weight():
    model = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 10, bias=False))
    model[1].weight = model[0].weight
    assert diagnostics.find_layers(model).weight_names == ["0"]


def test_a_compiled_model_measures_what_the_eager_one_does(tmp_path):
    """Hooks on a torch.compile'd module (the aot_eager backend: no C compiler needed): the same
    statistics as without compiling, at the same steps, whether watch() or compile() comes first."""
    torch._dynamo.reset()

    def train(data_dir, how):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        g = torch.Generator().manual_seed(4)
        if how == "compile, then watch":
            forward = torch.compile(model, backend="aot_eager")
            run = bnscope.watch(forward, optimizer, every=3, data_dir=data_dir)
        else:
            run = bnscope.watch(model, optimizer, every=3, data_dir=data_dir)
            forward = model if how == "eager" else torch.compile(model, backend="aot_eager")
        for _ in range(7):
            x, y = batch(g, 16)
            F.cross_entropy(forward(x), y).backward()
            optimizer.step()
            optimizer.zero_grad()
        run.close()
        store, row = recorded(data_dir)
        return row["model"], store.stats_of(row["id"], store.stats_steps(row["id"]))

    model, eager = train(tmp_path / "eager", "eager")
    assert [s["step"] for s in eager] == [0, 3, 6]
    for how in ("compile, then watch", "watch, then compile"):
        names, compiled = train(tmp_path / how, how)
        assert names == model  # the compiled module's own names, without torch's _orig_mod prefix
        for a, b in zip(eager, compiled):
            for x, y in zip(a["activations"] + a["weights"], b["activations"] + b["weights"]):
                assert (x["name"], x.get("grad_std")) == (y["name"], pytest.approx(y.get("grad_std"), rel=1e-5))


def test_log_and_a_bad_value_never_raise_into_the_loop(tmp_path, caplog):
    model = nn.Linear(3, 3)
    with bnscope.watch(model, data_dir=tmp_path) as run:
        run.log(loss="not a number")
        run.log(loss=float("nan"), acc=0.5)
    assert "run.log() skipped" in caplog.text
    store, row = recorded(tmp_path)
    assert series(store, row["id"], "metric/acc") == ([0], [0.5])


def test_a_failing_run_in_a_with_block_is_marked_failed_and_the_error_goes_on(tmp_path):
    model = nn.Linear(3, 3)
    with pytest.raises(ZeroDivisionError), bnscope.watch(model, data_dir=tmp_path):
        raise ZeroDivisionError("division by zero")
    _, row = recorded(tmp_path)
    assert row["status"] == "failed" and "ZeroDivisionError" in row["message"]


def test_arguments_are_checked_before_training(tmp_path):
    with pytest.raises(ValueError, match="every"):
        bnscope.watch(nn.Linear(2, 2), every=0, data_dir=tmp_path)
    with pytest.raises(ValueError, match="not both"):
        bnscope.watch(nn.Linear(2, 2), server="http://127.0.0.1:1", data_dir=tmp_path)
    with pytest.raises(TypeError):
        bnscope.watch(lambda x: x, data_dir=tmp_path)


def test_import_bnscope_loads_no_torch_until_watch_is_used():
    code = (
        "import sys, bnscope; assert 'torch' not in sys.modules; w = bnscope.watch; "
        "assert 'torch' in sys.modules and callable(w) and bnscope.watch is w; import bnscope.watched.hooks; "
        "assert bnscope.watch is w"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_nothing_is_dropped_and_no_warning_when_all_was_recorded(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with bnscope.watch(nn.Linear(2, 2), data_dir=tmp_path) as run:
            run.log(loss=1.0)
            assert run.flush(timeout=30)  # in the store now, for any reader
            store, row = recorded(tmp_path)
            assert series(store, row["id"], "loss") == ([0], [1.0]) and row["status"] == "running"
    assert run.summary == {"sent": 3, "dropped": 0, "dropped_why": {}}  # model, metrics, finished


def test_losses_logged_every_step_go_out_together_with_the_learning_rate(tmp_path):
    """As the trainer sends its own: one `scalars` event for the losses of consecutive steps (about every
    0.1 s), so a fast loop does not hand the sender thread an event a step."""
    model = nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02)
    with bnscope.watch(model, optimizer, every=10**6, data_dir=tmp_path) as run:
        for step in range(2000):
            optimizer.step()  # a step with no gradients: counted all the same
            run.log(loss=step / 1000)
    store, row = recorded(tmp_path)
    assert series(store, row["id"], "loss") == (list(range(2000)), pytest.approx([s / 1000 for s in range(2000)]))
    steps, lrs = series(store, row["id"], "lr")
    assert set(lrs) == {0.02} and 1 <= len(steps) < 200
    assert row["last_event_id"] < 200  # 2,000 losses, a few events
