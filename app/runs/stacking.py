"""A sweep as the server plans it: the grid of members, the stacks they train in, and each member's
handle on its stack's worker (bnscope.train.stack runs inside the worker).

Members whose tensors have the same shapes train as one stack; a sweep's stacks share out the slots
that are free when it is made (on CPU: one core a slot, so a sweep of 10 on 2 free slots is two stacks
of 5), or fill one stack on a GPU, so that all of its members start together and stay in lockstep.
"""

import itertools
from functools import cache

from bnscope.config import RunConfig

MAX_MEMBERS = 256  # members a sweep makes at most: a gain x seed grid on one GPU (the design target)
MAX_SWEEP_PARAMETERS = 50_000_000  # all members' parameters together (~200 MB of float32 weights)
SHAPE = ("n_embd", "n_hidden", "n_layers", "block_size", "batch_size")  # what must match within a stack


def grid(overrides: dict, vary: dict[str, list]) -> list[tuple[str, RunConfig]]:
    """The members of a sweep, in order: every combination of the varied settings' values on top of
    the shared `overrides`, each named by its varied values. A bad value raises ValidationError."""
    settings = list(vary)
    members = []
    for values in itertools.product(*(vary[s] for s in settings)):
        changes = dict(zip(settings, values))
        config = RunConfig(**{**overrides, **changes})
        members.append((", ".join(f"{s}={getattr(config, s)}" for s in settings), config))
    return members


def too_big(members: list[tuple[str, RunConfig]]) -> str | None:
    """Why the machine cannot hold this grid (over MAX_MEMBERS members or MAX_SWEEP_PARAMETERS parameters
    in all), or None."""
    if len(members) > MAX_MEMBERS:
        return f"the grid makes {len(members)} members; a sweep has at most {MAX_MEMBERS}"
    total = sum(config.parameter_count() for _, config in members)
    if total > MAX_SWEEP_PARAMETERS:
        most = f"{MAX_SWEEP_PARAMETERS:,}"
        return f"the grid's {len(members)} members have {total:,} parameters in all; a sweep has at most {most}"
    return None


def plan(members: list[tuple[int, RunConfig]], slots: int) -> list[list[int]]:
    """Run ids grouped into stacks: by shape, each shape's members dealt out over its share of `slots` (at
    least one stack a shape; on a GPU one stack a shape)."""
    by_shape: dict[tuple, list[int]] = {}
    for run_id, config in members:
        by_shape.setdefault(tuple(getattr(config, key) for key in SHAPE), []).append(run_id)
    share = 1 if cuda() else max(1, slots // max(1, len(by_shape)))
    stacks = []
    for ids in by_shape.values():
        count = min(len(ids), share)
        stacks += [ids[i::count] for i in range(count)]  # dealt out: each stack a like mix (BatchNorm on and off)
    return stacks


@cache
def cuda() -> bool:
    """Whether the workers train on a GPU (they pick CUDA when there is one): asked once, when the
    first sweep is planned, so the server imports torch only then."""
    import torch

    return torch.cuda.is_available()


class Pacer:
    """Keeps a sweep's stacks in lockstep: stacks in separate workers train at their own speed, so each is
    told to go no further than one statistics interval past the slowest (`pace`); a stack that gets there
    waits. Only members that train count (a paused or ended one holds nobody back)."""

    def __init__(self, interval: int):
        self.interval = interval
        self.stacks: dict[int, tuple[object, list]] = {}  # id(worker) -> (worker, its member runs)
        self.until: int | None = None

    def add(self, worker, runs: list) -> None:
        self.stacks[id(worker)] = (worker, runs)
        self.until = None
        self.update()

    def remove(self, worker) -> None:
        self.stacks.pop(id(worker), None)
        self.until = None
        self.update()

    def update(self) -> None:
        """After a member moved (or paused, or ended): tell every stack the step it may train to."""
        # a stack's progress is its leading member's: one resumed after a pause stays behind, and holds nobody.
        # A stack whose worker is still starting ("created") counts at its members' step: the first stack up
        # waits for it there, instead of running ahead of a sweep that has not begun
        going = ("created", "running")
        slowest = [
            max(r.state.step for r in runs if r.state.status in going)
            for _, runs in self.stacks.values()
            if any(r.state.status in going for r in runs)
        ]
        until = min(slowest) + self.interval if len(slowest) > 1 else None  # one stack alone needs no pacing
        if until != self.until:
            self.until = until
            for worker, _ in self.stacks.values():
                worker.send({"op": "pace", "until": until})


class MemberWorker:
    """One member's view of its stack's worker: its commands carry its index in the stack. The slot it
    holds is the stack's."""

    def __init__(self, stack, member: int):
        self.stack, self.member = stack, member

    @property
    def info(self) -> dict:
        return {**self.stack.info, "stack_member": self.member}

    @property
    def slot(self):
        return self.stack

    def send(self, command: dict) -> None:
        self.stack.send({**command, "member": self.member})

    def kill(self) -> None:
        self.stack.kill()  # the stack's process: its other members end interrupted, resumable
