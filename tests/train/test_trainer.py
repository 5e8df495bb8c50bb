import math
import threading
import time

import pytest
import torch
import torch.nn.functional as F

from bnscope.train.data import STOI, VOCAB_SIZE, make_splits
from bnscope.train.trainer import EXPLODE_STEPS, Trainer, load_model
from bnscope.train.worker import CommandQueue
from bnscope.models import MLP
from bnscope.models.lecture import LectureMLP
from tests.servers import wait_for

CPU = torch.device("cpu")  # bit-for-bit reproducible, whatever machine runs the tests
LONG = 10_000_000  # steps for a run that only ends when the test stops it
NEVER = 1_000_000  # the longest cadence: statistics and dev evaluation at step 0 only


class EventLog:
    """The trainer's `emit`: keeps every event and lets the test thread wait for one."""

    def __init__(self):
        self.events: list[dict] = []
        self._changed = threading.Condition()

    def __call__(self, event: dict) -> None:
        with self._changed:
            self.events.append(event)
            self._changed.notify_all()

    def wait_for(self, predicate, start: int = 0, timeout: float = 30) -> tuple[int, dict]:
        """The first event at index >= start that matches, waiting for it if need be."""

        def found():
            return next(((i, e) for i, e in enumerate(self.events) if i >= start and predicate(e)), None)

        with self._changed:
            hit = self._changed.wait_for(found, timeout)
        assert hit, f"no matching event within {timeout} s"
        return hit

    def of(self, kind: str) -> list[dict]:
        with self._changed:
            return [e for e in self.events if e["type"] == kind]

    def losses(self) -> list[float]:
        return [loss for e in self.of("scalars") for loss in e["loss"]]

    def statuses(self) -> list[str]:
        return [e["status"] for e in self.of("status")]


def is_status(status):
    return lambda e: e["type"] == "status" and e["status"] == status


def is_training(event) -> bool:
    """A scalars event after step 0's (which a stats step flushes at once): steps are under way."""
    return event["type"] == "scalars" and event["step"] > 0


def assert_scalars_cover_steps_in_order(log: EventLog, first_step: int, end_step: int) -> None:
    step = first_step
    for event in log.of("scalars"):
        assert event["step"] == step
        step += len(event["loss"])
    assert step == end_step


def assert_all_finite(values) -> None:
    flat = [x for v in values for x in (v if isinstance(v, list) else [v])]
    assert all(math.isfinite(x) for x in flat), flat


def statuses_and_messages(log: EventLog) -> list[tuple[str, str]]:
    return [(e["status"], e["message"]) for e in log.of("status")]


def final_status(log: EventLog) -> dict:
    return log.of("status")[-1]


@pytest.fixture
def run_in_thread():
    """Starts trainer.run(commands) in a thread; whatever a test leaves running is stopped at the end."""
    started = []

    def start(trainer: Trainer) -> tuple[threading.Thread, CommandQueue]:
        commands = CommandQueue()
        thread = threading.Thread(target=trainer.run, args=(commands,), daemon=True)
        thread.start()
        started.append((commands, thread))
        return thread, commands

    yield start
    for commands, thread in started:
        commands.put({"op": "stop"})
        thread.join(30)


def lecture_losses(config, splits, steps: int) -> list[float]:
    """The lecture's training loop on its hand-written layers, with the trainer's seeding:
    one generator for the init, another (same seed) for the minibatches."""
    model = MLP(vocab_size=VOCAB_SIZE, generator=torch.Generator().manual_seed(config.seed), **config.model_kwargs())
    net = LectureMLP.from_torch(model)
    parameters = net.parameters()
    g = torch.Generator().manual_seed(config.seed)
    losses = []
    for i in range(steps):
        ix = torch.randint(0, splits.Xtr.shape[0], (config.batch_size,), generator=g)
        loss = F.cross_entropy(net(splits.Xtr[ix]), splits.Ytr[ix])
        for p in parameters:
            p.grad = None
        loss.backward()
        lr = config.lr_at(i)
        for p in parameters:
            p.data += -lr * p.grad
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("batchnorm", [True, False], ids=["bn", "no-bn"])
def test_trainer_follows_the_lectures_training_loop_step_for_step(make_config, splits, batchnorm):
    config = make_config(steps=120, lr_decay_step=60, batchnorm=batchnorm)  # the decay happens mid-run
    log = EventLog()

    assert Trainer(config, splits, emit=log, device=CPU).run(CommandQueue()) == "finished"

    assert log.losses() == pytest.approx(lecture_losses(config, splits, 120), rel=1e-4)


def test_scalars_cover_every_step_once_in_order_with_ratios_at_their_cadence(make_config, splits):
    config = make_config(steps=95, stats_every=20, update_every=10)
    log = EventLog()

    Trainer(config, splits, emit=log, device=CPU).run(CommandQueue())

    assert_scalars_cover_steps_in_order(log, 0, 95)
    scalars = log.of("scalars")
    assert [s for e in scalars for s in e["ud_steps"]] == list(range(0, 95, 10))
    ratios = [r for e in scalars for r in e["ud"]]
    assert all(len(r) == 1 + config.n_layers + 1 for r in ratios)  # C and every Linear weight
    assert_all_finite(ratios)
    # each stats event comes after the losses of its own step
    for stats in log.of("stats"):
        index = log.events.index(stats)
        sent = sum(len(e["loss"]) for e in log.events[:index] if e["type"] == "scalars")
        assert sent == stats["step"] + 1
    assert [e["step"] for e in log.of("stats")] == [0, 20, 40, 60, 80]


def test_finishing_evaluates_train_dev_and_test_then_reports_finished(make_config, splits):
    config = make_config(steps=50, dev_every=20)
    log = EventLog()
    trainer = Trainer(config, splits, emit=log, device=CPU)

    assert trainer.run(CommandQueue()) == "finished"

    evals = log.of("eval")
    assert [(e["step"], e["split"]) for e in evals if not e.get("final")] == [(0, "dev"), (20, "dev"), (40, "dev")]
    finals = [e for e in evals if e.get("final")]
    assert [(e["step"], e["split"]) for e in finals] == [(50, "train"), (50, "dev"), (50, "test")]
    model = trainer.model.eval()  # BatchNorm on its running statistics, as an evaluation must be
    with torch.no_grad():
        for event in finals:
            X, Y = splits.split(event["split"])
            assert event["loss"] == pytest.approx(F.cross_entropy(model(X), Y).item(), rel=1e-5)
    assert log.statuses() == ["running", "finished"]
    assert log.events[-1]["type"] == "status"


def test_pause_holds_the_step_resume_continues_stop_ends_the_run(make_config, splits, run_in_thread):
    log = EventLog()
    trainer = Trainer(make_config(steps=LONG, stats_every=NEVER, dev_every=NEVER), splits, emit=log, device=CPU)
    thread, commands = run_in_thread(trainer)
    _, flushed = log.wait_for(is_training)
    wait_for(lambda: trainer.step > flushed["step"] + len(flushed["loss"]), every=0.001)  # some losses not sent yet

    commands.put({"op": "pause"})
    paused_at, paused = log.wait_for(is_status("paused"))
    time.sleep(0.3)  # a running trainer does hundreds of steps in this time
    assert trainer.step == paused["step"]
    assert [e["type"] for e in log.events[paused_at - 2 : paused_at + 1]] == ["control", "checkpoint", "status"]
    assert [e["type"] for e in log.events[paused_at + 1 :]] == []  # nothing while paused
    assert_scalars_cover_steps_in_order(log, 0, paused["step"])  # every loss up to the pause was sent

    commands.put({"op": "resume"})
    log.wait_for(lambda e: e["type"] == "scalars", start=paused_at)
    assert trainer.step > paused["step"]

    commands.put({"op": "stop"})
    thread.join(30)
    assert not thread.is_alive()
    assert log.statuses() == ["running", "paused", "running", "stopped"]
    assert [e["action"] for e in log.of("control")] == ["pause", "resume", "stop"]
    assert_scalars_cover_steps_in_order(log, 0, trainer.step)  # no step lost or repeated across the pause


def test_stop_while_paused_ends_the_run_without_resuming(make_config, splits, run_in_thread):
    log = EventLog()
    trainer = Trainer(make_config(steps=LONG, stats_every=NEVER, dev_every=NEVER), splits, emit=log, device=CPU)
    thread, commands = run_in_thread(trainer)
    log.wait_for(is_training)
    commands.put({"op": "pause"})
    _, paused = log.wait_for(is_status("paused"))

    commands.put({"op": "stop"})
    thread.join(30)

    assert final_status(log)["status"] == "stopped" and trainer.step == paused["step"]
    assert [e["action"] for e in log.of("control")] == ["pause", "stop"]


def test_a_new_lr_from_another_thread_takes_effect_between_steps(make_config, splits, run_in_thread):
    log = EventLog()
    trainer = Trainer(make_config(steps=LONG, stats_every=NEVER, dev_every=NEVER, lr=0.1), splits, emit=log, device=CPU)
    thread, commands = run_in_thread(trainer)
    _, before = log.wait_for(is_training)

    commands.put({"op": "lr", "lr": 0.05})
    control_at, control = log.wait_for(lambda e: e["type"] == "control" and e["action"] == "lr")
    later = lambda e: e["type"] == "scalars" and e["step"] >= control["step"]  # noqa: E731
    log.wait_for(later, start=control_at)
    commands.put({"op": "stop"})
    thread.join(30)

    assert before["lr"] == 0.1
    assert control["lr"] == 0.05
    after = [e for e in log.events[control_at:] if later(e)]
    assert after and all(e["lr"] == 0.05 for e in after)


@pytest.mark.parametrize("mode", [{}, dict(batch_order="lecture", bn_variance="unbiased")], ids=["own", "lecture"])
def test_resumed_trainer_continues_exactly_as_an_uninterrupted_run(make_config, splits, mode):
    config = make_config(steps=150, stats_every=10, lr_decay_step=100, **mode)
    uninterrupted = EventLog()
    Trainer(config, splits, emit=uninterrupted, device=CPU).run(CommandQueue())

    first_half, commands = EventLog(), CommandQueue()

    def shut_down_at_step_60(event):  # as the server does when it stops
        first_half(event)
        if event["type"] == "stats" and event["step"] == 60:
            commands.put({"op": "shutdown"})

    interrupted = Trainer(config, splits, emit=shut_down_at_step_60, device=CPU)
    assert interrupted.run(commands) == "interrupted"
    assert interrupted.step == 61
    (checkpoint,) = first_half.of("checkpoint")  # the trainer's own, at the step it stopped, after its events
    assert checkpoint["step"] == 61 and first_half.events[-2] is checkpoint
    assert final_status(first_half)["status"] == "interrupted" and "resume" in final_status(first_half)["message"]

    second_half = EventLog()
    resumed = Trainer(config, splits, emit=second_half, device=CPU)
    resumed.load_checkpoint(checkpoint["state"])
    assert resumed.run(CommandQueue()) == "finished"

    assert_scalars_cover_steps_in_order(second_half, 61, 150)
    assert first_half.losses() + second_half.losses() == uninterrupted.losses()
    finals = lambda log: [e["loss"] for e in log.of("eval") if e.get("final")]  # noqa: E731
    assert finals(second_half) == finals(uninterrupted)


def test_an_error_inside_the_run_marks_it_failed_instead_of_raising(make_config):
    # windows of 4 characters for a network built for 3: the first matrix multiply cannot work
    wrong_splits = make_splits(["emma", "olivia", "ava", "isabella", "sophia"], block_size=4)
    log = EventLog()
    trainer = Trainer(make_config(block_size=3), wrong_splits, emit=log, device=CPU)

    assert trainer.run(CommandQueue()) == "failed"

    last = log.events[-1]
    assert last["type"] == "status" and last["status"] == "failed" and last["message"].startswith("RuntimeError: ")


def first_step_predicting(char: str, config, splits) -> int:
    """The first step whose minibatch has `char` to predict, replaying the trainer's minibatch order."""
    g = torch.Generator().manual_seed(config.seed)
    for step in range(config.steps):
        ix = torch.randint(0, splits.Xtr.shape[0], (config.batch_size,), generator=g)
        if (splits.Ytr[ix] == STOI[char]).any():
            return step
    raise AssertionError(f"no minibatch asks for {char!r}")


def never_predicting(trainer: Trainer, char: str) -> Trainer:
    """The output BatchNorm's shift at -inf for `char`: the network gives it probability 0, so the
    loss is finite until a minibatch asks it to predict that character, and infinite there."""
    with torch.no_grad():
        trainer.model.layers[-1].bias[STOI[char]] = float("-inf")
    return trainer


def test_a_non_finite_loss_ends_the_run_as_diverged_at_that_step(make_config, splits):
    config = make_config(steps=400, stats_every=NEVER, dev_every=NEVER)
    inf_step = first_step_predicting("w", config, splits)  # 'w' is in one training example: "hawa"'s '.ha' -> 'w'
    assert 0 < inf_step < config.steps - 1
    log = EventLog()
    trainer = never_predicting(Trainer(config, splits, emit=log, device=CPU), "w")

    assert trainer.run(CommandQueue()) == "diverged"

    assert trainer.step == inf_step
    assert f"step {inf_step}" in final_status(log)["message"]
    assert log.statuses() == ["running", "diverged"]
    assert_scalars_cover_steps_in_order(log, 0, inf_step)  # the finite losses, none after
    for event in log.of("scalars"):
        assert_all_finite(event["loss"] + event["ud"] + [event["lr"], event["steps_per_s"]])
    assert not [e for e in log.of("eval") if e.get("final")]


def test_nothing_is_emitted_after_the_run_reports_diverged(make_config, splits):
    config = make_config(steps=400, stats_every=1, dev_every=NEVER)  # every step flushes for its stats
    inf_step = first_step_predicting("w", config, splits)
    log = EventLog()
    trainer = never_predicting(Trainer(config, splits, emit=log, device=CPU), "w")

    assert trainer.run(CommandQueue()) == "diverged"

    assert log.events[-1]["type"] == "status" and log.events[-1]["status"] == "diverged"
    assert log.events[-2]["type"] == "checkpoint"  # its weights are kept, to look at
    assert max(e["step"] for e in log.of("stats")) < inf_step


def test_scalars_stay_finite_when_a_huge_lr_saturates_every_tanh(make_config, splits):
    log = EventLog()
    trainer = Trainer(make_config(lr=100, batchnorm=False, gain=5.0, steps=300), splits, emit=log, device=CPU)

    trainer.run(CommandQueue())

    ratios = [v for event in log.of("scalars") for row in event["ud"] for v in row]
    for event in log.of("scalars"):
        assert_all_finite(event["loss"])
    assert all(v is None or math.isfinite(v) for v in ratios)
    assert None in ratios  # a weight with an all-zero gradient: log10(0) is no value, not -inf


def test_the_run_reports_its_layers_first_by_the_lectures_names(make_config, splits):
    log = EventLog()
    Trainer(make_config(steps=5, n_layers=2), splits, emit=log, device=CPU).run(CommandQueue())
    model = log.events[0]
    assert model["type"] == "model"
    assert [a["name"] for a in model["activations"]] == ["tanh1", "tanh2"]
    assert [w["name"] for w in model["weights"]] == ["C", "linear1", "linear2", "linear3"]
    assert [n["name"] for n in model["norms"]] == ["batchnorm1", "batchnorm2", "batchnorm3"]
    assert all(e["ud_names"] == ["C", "linear1", "linear2", "linear3"] for e in log.of("scalars"))


def test_checkpoints_come_at_their_cadence_and_at_the_end_after_the_events_they_cover(make_config, splits):
    log = EventLog()
    Trainer(make_config(steps=250), splits, emit=log, device=CPU, checkpoint_every=100).run(CommandQueue())
    checkpoints = log.of("checkpoint")
    assert [c["step"] for c in checkpoints] == [100, 200, 250]
    for checkpoint in checkpoints:
        before = log.events[: log.events.index(checkpoint)]
        assert sum(len(e["loss"]) for e in before if e["type"] == "scalars") == checkpoint["step"]
    # the last one holds the finished network: its losses are the final evaluation's
    model = load_model(make_config(steps=250), checkpoints[-1]["state"])
    X, Y = splits.split("dev")
    with torch.no_grad():
        dev = F.cross_entropy(model(X), Y).item()
    assert dev == pytest.approx(next(e["loss"] for e in log.of("eval") if e.get("final") and e["split"] == "dev"))


def test_weights_are_sent_when_asked_from_the_step_they_were_asked_at(make_config, splits, run_in_thread):
    log = EventLog()
    trainer = Trainer(make_config(steps=LONG, stats_every=NEVER, dev_every=NEVER), splits, emit=log, device=CPU)
    _, commands = run_in_thread(trainer)
    log.wait_for(is_training)
    commands.put({"op": "weights"})
    _, weights = log.wait_for(lambda e: e["type"] == "weights")
    model = load_model(trainer.config, weights["state"])
    assert weights["step"] > 0 and all(p.isfinite().all() for p in model.parameters())


def test_a_loss_that_explodes_ends_the_run_as_diverged_with_its_step(make_config, splits):
    """lr 50 without BatchNorm: the loss sits far above where any healthy run starts, yet stays finite."""
    log = EventLog()
    config = make_config(lr=50, batchnorm=False, steps=100_000, stats_every=NEVER, dev_every=NEVER)
    assert Trainer(config, splits, emit=log, device=CPU).run(CommandQueue()) == "diverged"
    status = final_status(log)
    assert "exploded" in status["message"] and status["step"] < 3 * EXPLODE_STEPS
    assert_all_finite(log.losses())
    recent = log.losses()[-EXPLODE_STEPS:]
    assert sum(recent) / len(recent) > 2 * math.log(VOCAB_SIZE)


def test_a_healthy_run_is_never_taken_for_an_explosion(make_config, splits):
    log = EventLog()
    assert Trainer(make_config(steps=3 * EXPLODE_STEPS), splits, emit=log, device=CPU).run(CommandQueue()) == "finished"


def test_steps_per_s_is_reported_only_after_a_warm_up(make_config, splits, run_in_thread):
    log = EventLog()
    trainer = Trainer(make_config(steps=LONG, stats_every=NEVER, dev_every=NEVER), splits, emit=log, device=CPU)
    run_in_thread(trainer)
    started = time.perf_counter()
    _, measured = log.wait_for(lambda e: e["type"] == "scalars" and e["steps_per_s"] > 0, timeout=30)
    assert time.perf_counter() - started >= 0.9  # nothing measured from the first, slow steps
    rate_window = [e for e in log.of("scalars") if e["steps_per_s"] == 0]
    assert rate_window and rate_window[0]["step"] == 0
    assert 50 < measured["steps_per_s"] < 100_000
