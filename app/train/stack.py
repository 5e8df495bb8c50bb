"""A sweep's members trained as one stack (bnscope.models.stacked): every member a run of its own, with
the events, commands and checkpoints of a single run (bnscope.train.trainer), and one step for all of them.

    trainer = StackTrainer(configs, splits, emit, checkpoints=[...])
    trainer.run(commands)   # until every member has ended; never raises

`emit(event)` gets each member's events with `member` (its index in `configs`) added. A command with a
`member` is for that member (pause, resume, stop, lr, checkpoint, weights, fail); one without is for all
(shutdown, fail). A member's checkpoint is a single run's (bnscope.train.trainer.Trainer.state_dict), so any
member resumes exactly, in a stack or alone.

Members that share a minibatch order (the same generator state: the same seed and batch order, at the
same step) share one draw. A paused member keeps its parameters, running statistics and generator; the
others go on. A member that ends (finished, stopped, diverged, failed) leaves the stack.
"""

import io

import torch

from bnscope.train import diagnostics
from bnscope.config import RunConfig
from bnscope.events import control_event, eval_event, model_event, scalars_event, stats_event, status_event
from bnscope.train.data import Splits
from bnscope.models.stacked import StackedMLP
from bnscope.train.trainer import (
    EXPLODE_STEPS,
    FLUSH_SECONDS,
    Commands,
    Emit,
    _RecentLoss,
    _Speedometer,
    build_model,
    divergence,
    pick_device,
    scalars,
    split_loss,
)


class Member:
    """One run of the stack: its config, its own MLP (its init, and its state to save and evaluate), its
    minibatch generator, its step and learning rate, and how it ends."""

    def __init__(self, index: int, config: RunConfig, checkpoint_every: int, device: torch.device):
        self.index, self.config = index, config
        init_gen = torch.Generator().manual_seed(config.seed)
        self.mlp = build_model(config, generator=init_gen).to(device)
        self.batch_gen = init_gen if config.batch_order == "lecture" else torch.Generator().manual_seed(config.seed)
        self.layers = diagnostics.lecture_layers(self.mlp)
        self.step = 0
        self.base_lr = config.lr
        self.paused = False
        self.outcome: tuple[str, str] | None = None
        self.recent = _RecentLoss(EXPLODE_STEPS)
        self.next_checkpoint = checkpoint_every

    @property
    def lr(self) -> float:
        return self.config.lr_at(self.step, self.base_lr)

    def load(self, state: bytes) -> None:
        saved = torch.load(io.BytesIO(state), map_location="cpu", weights_only=True)
        self.mlp.load_state_dict(saved["model"])
        self.step, self.base_lr = int(saved["step"]), float(saved["base_lr"])
        self.batch_gen = torch.Generator()
        self.batch_gen.set_state(saved["batch_gen"])

    def due(self, every: int) -> bool:
        return self.step % every == 0


def _save(state: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


class StackTrainer:
    def __init__(
        self,
        configs: list[RunConfig],
        splits: Splits,
        emit: Emit,
        *,
        checkpoint_every: int = 10_000,
        checkpoints: list[bytes | None] | None = None,
        device: torch.device | None = None,
    ):
        self.device = device or pick_device()
        self.emit_raw, self.splits, self.checkpoint_every = emit, splits, checkpoint_every
        self.Xtr, self.Ytr = splits.Xtr.to(self.device), splits.Ytr.to(self.device)
        self.members = [Member(i, c, checkpoint_every, self.device) for i, c in enumerate(configs)]
        for member, state in zip(self.members, checkpoints or []):
            if state is not None:
                member.load(state)
                member.next_checkpoint = member.step + checkpoint_every
        self.rows = [m.index for m in self.members]  # the members in the stack, by row
        self.net = StackedMLP([m.mlp for m in self.members], [c.bn_variance for c in configs], self.device)
        self._pending: list[torch.Tensor] = []  # (R,) losses a step, since the last flush
        self._pending_ud: list[tuple[torch.Tensor, list[tuple[int, int]]]] = []  # (R, W) ratios, [(row, step)]
        self._speed = _Speedometer()
        self.until: int | None = None  # the step the sweep's pace lets this stack train to (None: no limit)
        self._regroup()

    def emit(self, member: Member, event: dict) -> None:
        self.emit_raw({**event, "member": member.index})

    # ---- the loop ---------------------------------------------------------------------------------
    def run(self, commands: Commands) -> None:
        try:
            for m in self.members:
                self.emit(m, model_event(m.step, m.layers.info()))
                self.emit(m, status_event(m.step, "running"))
            self._speed.start(0)
            while self.rows:
                self._obey(commands.poll())
                while self.rows and not self._can_step() and not any(self.members[i].outcome for i in self.rows):
                    self._obey([commands.wait()])  # every member paused, or paced: wait to be told
                self._end_members()
                if not self._can_step():
                    continue
                self._train_step()
                if self._speed.since_flush() >= FLUSH_SECONDS:
                    self._flush()
                self._end_members()
                for r in self._training:
                    if (m := self._row(r)).step >= m.next_checkpoint:
                        self._checkpoint(m)
        except Exception as err:  # one stack's fault must not take down its worker's server
            for i in self.rows:
                m = self.members[i]
                self.emit(m, status_event(m.step, "failed", f"{type(err).__name__}: {err}"))

    def _can_step(self) -> bool:
        """Some member trains, and the stack is not ahead of the sweep's pace (bnscope.runs.stacking.Pacer)."""
        if not self._training:
            return False
        return self.until is None or max(self._row(r).step for r in self._training) < self.until

    def _row(self, position: int) -> Member:
        return self.members[self.rows[position]]

    def _train_step(self) -> None:
        R, B = len(self.rows), self.members[self.rows[0]].config.batch_size
        # minibatch construct: one draw a group of members that share a generator (rows: (R, B))
        draws = [torch.randint(0, self.Xtr.shape[0], (B,), generator=gen) for gen, _ in self._groups]
        if len(draws) == 1 and len(self._training) == R:  # one batch order for all: no gather
            ix = draws[0].to(self.device).expand(R, B)
        else:
            ix = torch.stack(draws + [torch.zeros(B, dtype=torch.long)])[self._group_of_row].to(self.device)
        Xb, Yb = self.Xtr[ix], self.Ytr[ix]  # (R, B, block_size), (R, B)
        loss = self.net.step(Xb, Yb)  # forward, backward, update: (R,)
        training = [self._row(r) for r in self._training]
        stats = [m for m in training if m.due(m.config.stats_every)]
        ud = [(r, self._row(r).step) for r in self._training if self._row(r).due(self._row(r).config.update_every)]
        bodies = self._collect([self.rows.index(m.index) for m in stats]) if stats else {}
        if ud:
            self._pending_ud.append((self._update_to_data(), ud))
        self._pending.append(loss)
        for m in training:
            m.step += 1
            if m.step == m.config.lr_decay_step or m.step >= m.config.steps:
                self._lr_changed = True
        dev = [m for m in training if (m.step - 1) % m.config.dev_every == 0]
        if stats or dev:
            self._flush()
            for m in stats:
                if m.outcome is None:
                    self.emit(m, stats_event(m.step - 1, bodies[m.index]))
            for m in dev:
                if m.outcome is None:
                    self.emit(m, eval_event(m.step - 1, "dev", self._evaluate(m, "dev")))
        for m in training:
            if m.outcome is None and m.step >= m.config.steps:
                m.outcome = ("finished", "")
        if self._lr_changed:
            self._set_lr()

    # ---- statistics -------------------------------------------------------------------------------
    def _collect(self, positions: list[int]) -> dict[int, dict]:
        """Statistics of the members at `positions` (rows of the stack) in one pass of diagnostics over all
        their layers: each member's body is a single run's `stats` event body."""
        net, plan = self.net, []
        activations, weights, norms, outputs, grads = [], [], [], [], []
        for p in positions:
            m = self._row(p)
            layers = m.layers
            activations += layers.activations
            outputs += [h[p].T for h in net.h]  # (B, n_hidden) each, as a single run's
            grads += [dh[p].T for dh in net.dh]
            for (name, kind, _), l in zip(layers.weights, [None] + list(range(net.n_linear))):
                w = net.C[p] if l is None else net.W[l][p]  # (fan_out, fan_in), as nn.Linear's
                w.grad = net.grads["C"][0][p] if l is None else net.grads["W"][l][p]
                weights.append((name, kind, w))
            for (name, kind, _), l in zip(layers.norms, range(net.n_linear)):
                norms.append((name, kind, _NormView(net, l, p)))
            plan.append((m.index, len(layers.activations), len(layers.weights), len(layers.norms)))
        body, _ = diagnostics.collect_with(diagnostics.Layers(activations, weights, norms), outputs, grads, {})
        out, a, w, n = {}, 0, 0, 0
        for index, na, nw, nn_ in plan:
            out[index] = {
                "activations": body["activations"][a : a + na],
                "weights": body["weights"][w : w + nw],
                "norms": body["norms"][n : n + nn_],
            }
            a, w, n = a + na, w + nw, n + nn_
        return out

    def _update_to_data(self) -> torch.Tensor:
        """log10(std(lr * grad) / std(weight)) of C and every Linear weight of every member: (R, W), a std
        over each member's slice of each stacked tensor (two ops a weight, whatever R)."""
        net = self.net
        grad_std = torch.stack([g.flatten(1).std(1) for g in (net.grads["C"][0], *net.grads["W"])], 1)
        data_std = torch.stack([w.flatten(1).std(1) for w in (net.C, *net.W)], 1)
        return (net._lr.view(-1, 1) * grad_std / data_std).log10()

    # ---- events -------------------------------------------------------------------------------------
    def _flush(self) -> None:
        """Each training member's pending losses and ratios as its own `scalars` event."""
        if not self._pending:
            return
        n = len(self._pending)
        losses = torch.stack(self._pending).T.tolist()  # (R, n)
        ud_rows = torch.stack([t for t, _ in self._pending_ud]).tolist() if self._pending_ud else []
        rate = self._speed.flushed(self._speed_steps())
        for p in self._training:
            m = self._row(p)
            mine = [
                (step, ud_rows[k][p]) for k, (_, rows) in enumerate(self._pending_ud) for row, step in rows if row == p
            ]
            first = m.step - n
            body, diverged_at = scalars(first, losses[p], [s for s, _ in mine], [u for _, u in mine])
            if diverged_at is not None:
                m.step = diverged_at
            self.emit(m, scalars_event(**body, lr=m.lr, steps_per_s=rate, ud_names=m.layers.weight_names))
            m.outcome = m.outcome or divergence(diverged_at, m.recent, body["loss"], first, m.step)
        self._pending.clear()
        self._pending_ud.clear()

    def _speed_steps(self) -> int:
        return max((self._row(r).step for r in self._training), default=0)

    def _checkpoint(self, m: Member) -> None:
        self._flush()  # the losses it covers go out first: a checkpoint is never ahead of the history
        self.emit(m, {"type": "checkpoint", "step": m.step, "state": _save(self._state(m))})
        m.next_checkpoint = m.step + self.checkpoint_every

    def _state(self, m: Member) -> dict:
        """The member's checkpoint, a single run's (bnscope.train.trainer.Trainer.state_dict)."""
        self.net.load_into(self.rows.index(m.index), m.mlp)
        model = {k: v.detach().cpu() for k, v in m.mlp.state_dict().items()}
        for key in model:
            if key.endswith("num_batches_tracked"):
                model[key] = torch.tensor(m.step)
        return {"model": model, "step": m.step, "base_lr": m.base_lr, "batch_gen": m.batch_gen.get_state()}

    def _evaluate(self, m: Member, split: str) -> float:
        self.net.load_into(self.rows.index(m.index), m.mlp)
        return split_loss(m.mlp, self.splits, split)

    def _end_members(self) -> None:
        """Members whose outcome is decided leave the stack: final evaluation (finished), checkpoint, status."""
        ended = [self._row(p) for p in range(len(self.rows)) if self._row(p).outcome is not None]
        if not ended:
            return
        self._flush()
        for m in ended:
            if m.outcome[0] == "finished":
                for split in ("train", "dev", "test"):
                    self.emit(m, eval_event(m.step, split, self._evaluate(m, split), final=True))
            self._checkpoint(m)
            self.emit(m, status_event(m.step, m.outcome[0], m.outcome[1]))
        keep = [p for p in range(len(self.rows)) if self._row(p).outcome is None]
        self.rows = [self.rows[p] for p in keep]
        if self.rows:
            self.net.keep(keep)
        self._regroup()

    # ---- between steps: the user's commands ---------------------------------------------------------
    def _obey(self, commands: list[dict]) -> None:
        if commands:
            self._flush()  # what a command changes is marked after the steps done before it
        regroup = False
        for command in commands:
            op = command["op"]
            if op == "pace":
                self.until = command["until"]
                continue
            targets = (
                [self.members[command["member"]]]
                if "member" in command
                else [self._row(p) for p in range(len(self.rows))]
            )
            for m in targets:
                if m.outcome is not None or m.index not in self.rows:
                    continue
                if op == "pause" and not m.paused:
                    m.paused, regroup = True, True
                    self.emit(m, control_event(m.step, "pause"))
                    self._checkpoint(m)
                    self.emit(m, status_event(m.step, "paused"))
                elif op == "resume" and m.paused:
                    m.paused, regroup = False, True
                    self.emit(m, control_event(m.step, "resume"))
                    self.emit(m, status_event(m.step, "running"))
                elif op == "stop":
                    self.emit(m, control_event(m.step, "stop"))
                    m.outcome = ("stopped", "")
                elif op == "fail":
                    m.outcome = ("failed", command["message"])
                elif op == "shutdown":
                    m.outcome = ("interrupted", command.get("message", "the server stopped; resume to continue"))
                elif op == "lr":
                    m.base_lr = float(command["lr"])
                    self.emit(m, control_event(m.step, "lr", m.base_lr))
                    self._lr_changed = True
                elif op == "checkpoint":
                    self._checkpoint(m)
                elif op == "weights":
                    self.emit(
                        m, {"type": "weights", "step": m.step, "state": _save({"model": self._state(m)["model"]})}
                    )
        if regroup:
            self._regroup()
        if self._lr_changed:
            self._set_lr()

    def _regroup(self) -> None:
        """Which rows train, and which share a minibatch draw: members whose generators are in the same
        state draw from one of them (a paused member keeps a generator of its own)."""
        self._training = [p for p in range(len(self.rows)) if not self._row(p).paused]
        self._groups: list[tuple[torch.Generator, list[int]]] = []
        for p in self._training:
            m = self._row(p)
            state = m.batch_gen.get_state()
            group = next((g for g in self._groups if torch.equal(g[0].get_state(), state)), None)
            if group is None:
                gen = torch.Generator()
                gen.set_state(state)
                self._groups.append((gen, [p]))
            else:
                group[1].append(p)
        # each member's generator is its group's: the draws move it for all of them
        for gen, positions in self._groups:
            for p in positions:
                self._row(p).batch_gen = gen
        for p in range(len(self.rows)):
            if self._row(p).paused:
                own = torch.Generator()
                own.set_state(self._row(p).batch_gen.get_state())
                self._row(p).batch_gen = own
        group_of = [len(self._groups)] * len(self.rows)  # a paused row gets the dummy draw (row of zeros)
        for g, (_, positions) in enumerate(self._groups):
            for p in positions:
                group_of[p] = g
        self._group_of_row = torch.tensor(group_of, dtype=torch.long)
        self._set_lr()

    def _set_lr(self) -> None:
        members = [self._row(p) for p in range(len(self.rows))]
        self.net.set_rates([m.lr for m in members], [not m.paused for m in members])
        self._lr_changed = False


class _NormView:
    """A member's BatchNorm l as diagnostics reads a norm module: running statistics, gain and bias."""

    def __init__(self, net: StackedMLP, l: int, p: int):
        self.running_mean, self.running_var = net.running_mean[l][p], net.running_var[l][p]
        self.weight, self.bias = net.gamma[l][p], net.beta[l][p]
