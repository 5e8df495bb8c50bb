"""The lecture's notebook, reproduced to the digit.

`notebook()` is makemore_part3_bn.ipynb's PyTorch-ified deep network and its loop (the cells after
"SUMMARY + PYTORCHIFYING": init, training loop, the statistics it prints, split_loss, sampling), written
out here on the lecture's layers. On the lecture's names file it prints what the notebook printed, and
bnscope, trained with the preset "the lecture's notebook, exactly", matches it within float noise.
The tests on that file skip where it is absent; the rest run on the small names list.
"""

import pytest
import torch
import torch.nn.functional as F

from bnscope import cli
from bnscope.api.schemas import RunCreate, SweepCreate
from bnscope.config import RunConfig
from bnscope.train.data import decode, make_splits, read_names
from bnscope.models import lecture
from bnscope.models.fused import ManualBackprop
from bnscope.models.lecture import LectureMLP
from bnscope.presets import PRESETS
from bnscope.train.sampling import sample_names
from bnscope.train.trainer import Trainer
from bnscope.train.worker import CommandQueue
from tests.conftest import REPO
from tests.models.test_models import lecture_init, paired_parameters

CPU = torch.device("cpu")
NAMES = REPO.parent / "shared" / "data" / "makemore-names.txt"  # makemore's names.txt: never copied into the repo
NOTEBOOK = next(p for p in PRESETS if p["id"] == "lecture-notebook")
SAMPLE_SEED = 2147483647 + 10  # the notebook's last cell

# What the notebook printed: the spec.
PRINTED_LOSS_0 = "3.2870"
PRINTED_TANH = [  # per Tanh at step 1000: std, saturated %, gradient std
    ("0.63", "2.78", 2.640702e-03),
    ("0.64", "2.56", 2.245584e-03),
    ("0.65", "2.25", 2.045742e-03),
    ("0.65", "1.69", 1.983134e-03),
    ("0.65", "1.88", 1.952382e-03),
]
PRINTED_WEIGHTS = [  # per 2-D parameter (C, then each Linear) at step 1000: gradient std, grad:data
    (8.020534e-03, 8.012630e-03),
    (9.241077e-03, 4.881091e-02),
    (7.132879e-03, 6.964619e-02),
    (6.234305e-03, 6.073741e-02),
    (5.742187e-03, 5.631483e-02),
    (5.672205e-03, 5.570125e-02),
    (1.209416e-02, 1.160106e-01),
]
PRINTED_SPLITS = {"train": 2.4002976417541504, "dev": 2.3982467651367188}
PRINTED_NAMES = (
    "carpah qarlileif jmrix thty sacansa jazhnte dpn arciigqeiunellaia chriiv kalein "
    "dhlm join qhinn sroin arian quiqaelogiearyxix kaeklinsan ed ecoia gtleley"
).split()


def notebook(config: RunConfig, splits, steps: int, n_names: int = 20) -> dict:
    """The notebook's cells: its losses, the statistics it prints after its last step, its train and
    dev losses in eval mode, and its sampled names."""
    g = torch.Generator().manual_seed(config.seed)  # one generator: the init, then the minibatches
    C, layers = lecture_init(config, g)
    parameters = [C] + [p for layer in layers for p in layer.parameters()]
    for p in parameters:
        p.requires_grad = True
    Xtr, Ytr = splits.Xtr, splits.Ytr
    lossi = []
    for i in range(steps):
        # minibatch construct
        ix = torch.randint(0, Xtr.shape[0], (config.batch_size,), generator=g)
        Xb, Yb = Xtr[ix], Ytr[ix]
        # forward pass
        emb = C[Xb]
        x = emb.view(emb.shape[0], -1)
        for layer in layers:
            x = layer(x)
        loss = F.cross_entropy(x, Yb)
        # backward pass
        for layer in layers:
            layer.out.retain_grad()
        for p in parameters:
            p.grad = None
        loss.backward()
        # update
        lr = 0.1 if i < config.lr_decay_step else 0.01
        for p in parameters:
            p.data += -lr * p.grad
        lossi.append(loss.item())
    with torch.no_grad():  # what its histogram cells print, after the last step
        tanhs = [layer.out for layer in layers[:-1] if isinstance(layer, lecture.Tanh)]
        tanh = [(t.std().item(), ((t.abs() > 0.97).float().mean() * 100).item(), t.grad.std().item()) for t in tanhs]
        weights = [(p.grad.std().item(), (p.grad.std() / p.std()).item()) for p in parameters if p.ndim == 2]
    net = LectureMLP(C, layers).eval()

    @torch.no_grad()
    def split_loss(x, y) -> float:
        return F.cross_entropy(net(x), y).item()

    g = torch.Generator().manual_seed(SAMPLE_SEED)
    names = []
    for _ in range(n_names):
        out, context = [], [0] * config.block_size
        while True:
            with torch.no_grad():
                logits = net(torch.tensor([context]))
            ix = torch.multinomial(F.softmax(logits, dim=1), num_samples=1, generator=g).item()
            context = context[1:] + [ix]
            out.append(ix)
            if ix == 0:
                break
        names.append(decode(out[:-1]))
    train, dev = split_loss(Xtr, Ytr), split_loss(splits.Xdev, splits.Ydev)
    return {"losses": lossi, "tanh": tanh, "weights": weights, "names": names, "train": train, "dev": dev}


def bnscope_run(config: RunConfig, splits) -> dict:
    """bnscope's trainer, as a worker runs it: its losses, the statistics at its last step, its final
    train and dev losses, and 20 names drawn one at a time from the notebook's sampling seed."""
    events = []
    trainer = Trainer(config, splits, emit=events.append, device=CPU)
    assert trainer.run(CommandQueue()) == "finished", events[-1]
    last = config.steps - 1
    (stats,) = [e for e in events if e["type"] == "stats" and e["step"] == last]
    finals = {e["split"]: e["loss"] for e in events if e["type"] == "eval" and e.get("final")}
    rows = sample_names(trainer.model.eval(), 20, block_size=config.block_size, seed=SAMPLE_SEED, one_at_a_time=True)
    return {
        "losses": [loss for e in events if e["type"] == "scalars" for loss in e["loss"]],
        "tanh": [(a["std"], a["saturation"], a["grad_std"]) for a in stats["activations"]],
        "weights": [(w["grad_std"], w["grad_to_data"]) for w in stats["weights"]],
        "names": [row["name"] for row in rows],
        **finals,
    }


@pytest.fixture(scope="module")
def lecture_splits():
    if not NAMES.exists():
        pytest.skip(f"the lecture's names file is not at {NAMES}")
    return make_splits(read_names(NAMES), block_size=3)


@pytest.fixture(scope="module")
def notebook_run(lecture_splits):
    return notebook(RunConfig(**NOTEBOOK["body"]["config"]), lecture_splits, steps=1001)


@pytest.fixture(scope="module")
def preset_run(lecture_splits):
    return bnscope_run(RunConfig(**NOTEBOOK["body"]["config"]), lecture_splits)


def test_the_notebooks_loop_here_prints_what_the_notebook_printed(notebook_run):
    assert f"{notebook_run['losses'][0]:.4f}" == PRINTED_LOSS_0
    for (std, saturation, grad_std), (printed_std, printed_saturation, printed_grad_std) in zip(
        notebook_run["tanh"], PRINTED_TANH, strict=True
    ):
        assert (f"{std:.2f}", f"{saturation:.2f}") == (printed_std, printed_saturation)
        assert grad_std == pytest.approx(printed_grad_std, rel=2e-6)  # printed to 7 digits
    for measured, printed in zip(notebook_run["weights"], PRINTED_WEIGHTS, strict=True):
        assert measured == pytest.approx(printed, rel=2e-6)
    assert notebook_run["train"] == pytest.approx(PRINTED_SPLITS["train"], abs=1e-6)
    assert notebook_run["dev"] == pytest.approx(PRINTED_SPLITS["dev"], abs=1e-6)
    assert notebook_run["names"] == PRINTED_NAMES


def test_the_preset_trains_the_notebooks_1001_losses(preset_run, notebook_run):
    assert len(preset_run["losses"]) == len(notebook_run["losses"]) == 1001
    assert preset_run["losses"] == pytest.approx(notebook_run["losses"], abs=1e-5)


def test_the_presets_step_1000_statistics_are_the_notebooks(preset_run, notebook_run):
    # a saturation is a count over 32 x 100 outputs: one output is 1/32 %
    for ours, theirs in zip(preset_run["tanh"], notebook_run["tanh"], strict=True):
        std, saturation, grad_std = ours
        assert std == pytest.approx(theirs[0], rel=1e-5)
        assert saturation == pytest.approx(theirs[1], abs=1 / 32 + 1e-9)
        assert grad_std == pytest.approx(theirs[2], rel=1e-4)
    # grad:data at the notebook's moment: the weight's std after the step's update
    for ours, theirs in zip(preset_run["weights"], notebook_run["weights"], strict=True):
        assert ours == pytest.approx(theirs, rel=1e-4)


def test_the_presets_train_and_dev_losses_are_the_notebooks(preset_run, notebook_run):
    assert preset_run["train"] == pytest.approx(notebook_run["train"], abs=1e-5)
    assert preset_run["dev"] == pytest.approx(notebook_run["dev"], abs=1e-5)


def test_the_presets_20_names_are_the_notebooks(preset_run, notebook_run):
    assert preset_run["names"] == notebook_run["names"]


def test_the_command_line_prints_the_notebooks_losses_and_names(lecture_splits, tmp_path, capsys):
    command = "train --steps 1001 --gain 1 --batch-order lecture --bn-variance unbiased --quiet --samples 0"
    assert cli.main([*command.split(), "--names", str(NAMES), "--out", str(tmp_path / "w.pt")]) == 0
    out = capsys.readouterr().out
    assert "train loss 2.4003" in out and "dev   loss 2.3982" in out

    command = f"sample {tmp_path / 'w.pt'} -n 20 --seed {SAMPLE_SEED} --one-at-a-time --names {NAMES}"
    assert cli.main(command.split()) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()] == PRINTED_NAMES


# ---- on the small names list: no file needed ------------------------------------------------------------


def test_every_preset_is_a_run_or_sweep_body_and_the_first_is_the_lectures_recommendation_the_defaults():
    for preset in PRESETS:
        assert set(preset) == {"id", "kind", "name", "text", "body"} and preset["text"].endswith(".")
        # what POST /api/runs or POST /api/sweeps takes
        {"run": RunCreate, "sweep": SweepCreate}[preset["kind"]](**preset["body"])
    assert PRESETS[0]["kind"] == "run"
    assert RunConfig(**PRESETS[0]["body"]["config"]) == RunConfig() and RunConfig().gain == 5 / 3


def test_lecture_mode_trains_as_the_notebooks_loop_on_any_network(make_config, splits):
    config = make_config(steps=151, lr_decay_step=100, batch_order="lecture", bn_variance="unbiased")
    ours, theirs = bnscope_run(config, splits), notebook(config, splits, steps=151)
    assert ours["losses"] == pytest.approx(theirs["losses"], abs=1e-5)
    for mine, its in zip(ours["weights"], theirs["weights"], strict=True):
        assert mine == pytest.approx(its, rel=1e-4)
    assert ours["names"] == theirs["names"]


def test_own_batch_order_sees_other_batches_than_the_lecture_order(make_config, splits):
    own = bnscope_run(make_config(steps=20, stats_every=19), splits)["losses"]
    lecture_order = bnscope_run(make_config(steps=20, stats_every=19, batch_order="lecture"), splits)["losses"]
    assert own[0] != lecture_order[0]


def test_the_fused_unbiased_step_is_autograd_through_the_lectures_layers(make_mlp, splits):
    model = make_mlp(bn_variance="unbiased")
    net = LectureMLP.from_torch(model)
    backprop = ManualBackprop(model)
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        ix = torch.randint(0, splits.Xtr.shape[0], (32,), generator=g)
        Xb, Yb = splits.Xtr[ix], splits.Ytr[ix]
        expected = F.cross_entropy(net(Xb), Yb)
        for p in net.parameters():
            p.grad = None
        expected.backward()

        assert backprop(Xb, Yb).item() == pytest.approx(expected.item(), rel=1e-6)
        for name, ours, theirs, to_torch_layout in paired_parameters(model, net):
            torch.testing.assert_close(ours.grad, to_torch_layout(theirs.grad), rtol=1e-4, atol=1e-7, msg=name)
        with torch.no_grad():
            for _, ours, theirs, _ in paired_parameters(model, net):
                ours -= 0.1 * ours.grad
                theirs -= 0.1 * theirs.grad
    bns = [(m, layer) for m, layer in zip(model.layers, net.layers) if isinstance(layer, lecture.BatchNorm1d)]
    assert len(bns) == 3 and all(layer.unbiased for _, layer in bns)
    for module, layer in bns:  # the running statistics move as the lecture's layer moves them
        torch.testing.assert_close(module.running_mean, layer.running_mean, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(module.running_var, layer.running_var, rtol=1e-5, atol=1e-6)
