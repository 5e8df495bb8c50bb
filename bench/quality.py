"""Learning quality: the default network over its full schedule (200,000 steps), 3 seeds, on each
names file, with the final train/dev/test loss in eval mode (the trainer's final evaluation); and the
same 3 seeds trained as one stack (a sweep over the seed, bnscope.train.stack), so that a member's loss
can be read against the single runs' seed spread.

    python -m bench --only quality [--lecture-names PATH]

The trainings run in parallel worker processes, one a core (spawned, one torch thread each): they
measure loss, which does not depend on speed. The wall time of each training and of all of them
together is reported apart from the losses, as a by-product, not as a speed figure. --quick trains a
tiny network 100 steps with 2 seeds.
"""

import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

SEEDS = (2147483647, 1, 2)  # the lecture's seed, then two more
LECTURE_NAMES = Path("/work/shared/data/makemore-names.txt")  # the lecture's exact file; never copied into the repo
LECTURE_DEV = 2.1048  # the lecture's dev loss for ITS network: one hidden layer of 200, BatchNorm (not this one)


QUICK = {"steps": 100, "n_hidden": 16, "n_layers": 2}  # --quick: a tiny network, so its final evaluations are quick too


def train_one(names: str, seed: int, overrides: dict) -> dict:
    import torch

    from bnscope.config import RunConfig
    from bnscope.train.data import make_splits, read_names
    from bnscope.train.trainer import Trainer
    from bnscope.train.worker import CommandQueue

    torch.set_num_threads(1)
    config = RunConfig(**overrides, seed=seed)
    finals: dict[str, float] = {}

    def keep(event: dict) -> None:
        if event["type"] == "eval" and event.get("final"):
            finals[event["split"]] = event["loss"]

    trainer = Trainer(config, make_splits(read_names(Path(names)), config.block_size), keep, device=torch.device("cpu"))
    t0 = time.perf_counter()
    status = trainer.run(CommandQueue())
    return {"names": names, "seed": seed, "status": status, "wall_s": time.perf_counter() - t0, **finals}


def train_stack(names: str, seeds: list[int], overrides: dict) -> dict:
    """The seeds as the members of one stack, as the server trains a sweep over the seed: each member's finals."""
    import torch

    from bnscope.config import RunConfig
    from bnscope.train.data import make_splits, read_names
    from bnscope.train.stack import StackTrainer
    from bnscope.train.worker import CommandQueue

    torch.set_num_threads(1)
    configs = [RunConfig(**overrides, seed=seed) for seed in seeds]
    finals: list[dict[str, float]] = [{} for _ in seeds]

    def keep(event: dict) -> None:
        if event["type"] == "eval" and event.get("final"):
            finals[event["member"]][event["split"]] = event["loss"]

    splits = make_splits(read_names(Path(names)), configs[0].block_size)
    t0 = time.perf_counter()
    StackTrainer(configs, splits, keep, device=torch.device("cpu")).run(CommandQueue())
    return {
        "names": names,
        "wall_s": time.perf_counter() - t0,
        "members": [{"seed": s, **f} for s, f in zip(seeds, finals)],
    }


def _spread(values: list[float]) -> dict:
    return {"mean": statistics.mean(values), "std": statistics.stdev(values), "min": min(values), "max": max(values)}


def measure(quick: bool, names_files: list[Path], log=print) -> dict:
    overrides, seeds = (QUICK, SEEDS[:2]) if quick else ({"steps": 200_000}, SEEDS)
    jobs = [(str(path), seed) for path in names_files for seed in seeds]
    parallel = min(len(jobs), os.cpu_count() or 1)
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=parallel, mp_context=get_context("spawn")) as pool:
        stacks = [pool.submit(train_stack, str(path), list(seeds), overrides) for path in names_files]
        runs = list(pool.map(train_one, *zip(*jobs), [overrides] * len(jobs)))
        stacks = [job.result() for job in stacks]
    wall = time.perf_counter() - t0
    files = []
    for path in names_files:
        mine = [r for r in runs if r["names"] == str(path)]
        row = {"names": path.name, "runs": mine, "wall_s_each": statistics.median(r["wall_s"] for r in mine)}
        stack = next(s for s in stacks if s["names"] == str(path))
        for split in ("train", "dev", "test"):
            row[split] = _spread([r[split] for r in mine])
            row[f"stacked_{split}"] = _spread([m[split] for m in stack["members"]])
        row["stacked_dev_each"] = {m["seed"]: m["dev"] for m in stack["members"]}
        row["single_dev_each"] = {r["seed"]: r["dev"] for r in mine}
        row["stacked_wall_s"] = stack["wall_s"]
        files.append(row)
        log(
            f"  {path.name}: "
            + ", ".join(f"{s} {row[s]['mean']:.4f} ± {row[s]['std']:.4f}" for s in ("train", "dev", "test"))
        )
    return {
        "overrides": overrides,
        "seeds": list(seeds),
        "files": files,
        "wall_s": wall,
        "parallel": parallel,
        "lecture_dev": LECTURE_DEV,
    }
