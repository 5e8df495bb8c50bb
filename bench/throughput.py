"""Training throughput, and what logging costs, every comparison on one and the same training step.

    python -m bench --only throughput

The default network on names.txt, one torch thread, the CPU. Each variant runs windows of exactly
`steps` steps (5,000 in a full run: a multiple of every cadence, so each window holds the same one
dev evaluation, 50 stats steps and 500 update:data measurements wherever they are made), the variants
taking turns A B C D E, A B C D E, ... (a warm-up round first, dropped). A window ends when what it
logged is on disk: the TensorBoard writer's flush, the store writer's (bench.loops, bench.inprocess).

  autograd      the lecture's loop through torch.nn and autograd, nothing logged
  fused         the fused step alone (bnscope.models.fused), nothing logged: what the trainer runs
  trainer       bnscope.train.trainer.Trainer at the default cadences (stats 100, update:data 10, dev 5000),
                as a worker process runs it: each event put in an outbox, pickled down a pipe by a sender
                thread to the server's real path (JSON, series points, a SQLite store writer) in a
                process of its own (bench.inprocess.ServerProcess), as `bnscope serve` takes it
  trainer_bare  the same trainer with its diagnostics off (no statistics, no update:data): the losses
                streamed and the dev evaluations alone, the same events' path
  fused_tb      the fused step logging the same statistics at the same cadences to TensorBoard
  autograd_tb   the lecture's loop logging them to TensorBoard (retain_grad hooks at stats steps)

Each ratio is taken round by round against the loop that does the same step unlogged.
"""

import statistics
import time

import torch

from bench.common import interleaved, ratios, spread
from bench.inprocess import ServerProcess, TrainerWindows
from bench.loops import autograd_step, fused_step, steps_window
from bench.server import LONG
from bnscope.config import RunConfig
from bnscope.train.data import make_splits, read_names
from bnscope.train.trainer import split_loss

VARIANTS = {
    "autograd": "lecture loop (torch.nn + autograd), unlogged",
    "fused": "fused step (bnscope.models.fused), unlogged",
    "trainer": "bnscope trainer = fused step + diagnostics at default cadences, events to the server's process",
    "trainer_bare": "the same trainer, diagnostics off: losses and dev evaluations alone, the same events' path",
    "fused_tb": "fused step + TensorBoard, same statistics and cadences",
    "autograd_tb": "lecture loop + TensorBoard, same statistics and cadences",
}
RATIOS = {  # (numerator, denominator, what it says)
    "fused_vs_autograd": ("fused", "autograd", "the fused step's own speed-up over the lecture loop"),
    "trainer_vs_fused": ("trainer", "fused", "bnscope's logging: trainer / the same fused step unlogged"),
    "trainer_vs_bare": ("trainer", "trainer_bare", "the diagnostics alone: trainer / the same trainer without them"),
    "fused_tb_vs_fused": ("fused_tb", "fused", "TensorBoard's logging: on the fused step / unlogged"),
    "autograd_tb_vs_autograd": ("autograd_tb", "autograd", "TensorBoard's logging: on the lecture loop / unlogged"),
    "trainer_vs_fused_tb": ("trainer", "fused_tb", "same step, same statistics: bnscope / TensorBoard"),
}


def measure(quick: bool, log=print) -> dict:
    torch.set_num_threads(1)  # the network is tiny: one thread is the fastest
    config = RunConfig()
    splits = make_splits(read_names(), config.block_size)
    steps, rounds = (50, 2) if quick else (5000, 5)
    bare = config.model_copy(update={"stats_every": LONG, "update_every": LONG})  # past every window
    trainers = {
        name: TrainerWindows(c, splits, path=ServerProcess(c))
        for name, c in (("trainer", config), ("trainer_bare", bare))
    }
    loops = {
        "autograd": autograd_step(config, splits),
        "fused": fused_step(config, splits),
        "fused_tb": fused_step(config, splits, tensorboard=True),
        "autograd_tb": autograd_step(config, splits, tensorboard=True),
    }
    windows = {name: steps_window(step, tb, steps) for name, (step, tb) in loops.items()}
    for name, trainer in trainers.items():
        windows[name] = lambda trainer=trainer: trainer.run_steps(steps)
    try:
        rates = interleaved({name: windows[name] for name in VARIANTS}, rounds, log=log)
    finally:
        for trainer in trainers.values():
            trainer.close()
        for _, tb in loops.values():
            if tb is not None:
                tb.close()
    dev_s = []
    for _ in range(3):
        t0 = time.perf_counter()
        split_loss(trainers["trainer"].trainer.model, splits, "dev")
        dev_s.append(time.perf_counter() - t0)
    return {
        "steps_per_window": steps,
        "rounds": rounds,
        "cadences": {
            "stats_every": config.stats_every,
            "update_every": config.update_every,
            "dev_every": config.dev_every,
        },
        "steps_per_s": {name: spread(values) for name, values in rates.items()},
        "ratios": {key: ratios(rates[a], rates[b]) for key, (a, b, _) in RATIOS.items()},
        "dev_eval_ms": statistics.median(dev_s) * 1e3,
        "dev_examples": int(splits.Xdev.shape[0]),
    }
