"""Learning quality: the default network trained for its full 200,000 steps on a names file,
with the final train/dev/test loss in eval mode and the wall time."""

import time
from pathlib import Path

from bnscope.config import RunConfig
from bnscope.data import make_splits, read_names
from bnscope.trainer import Trainer

LECTURE_NAMES = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "makemore-names.txt"


def measure(names: Path, steps: int = 200_000) -> dict:
    config = RunConfig(steps=steps)
    splits = make_splits(read_names(names), config.block_size)
    finals: dict[str, float] = {}

    def keep_finals(event: dict) -> None:
        if event["type"] == "eval" and event.get("final"):
            finals[event["split"]] = event["loss"]

    trainer = Trainer(config, splits, emit=keep_finals)
    t0 = time.perf_counter()
    status = trainer.run()
    wall = time.perf_counter() - t0
    return {"names": str(names), "steps": steps, "status": status, "wall_s": wall, "steps_per_s": steps / wall, **finals}


if __name__ == "__main__":
    import sys

    from bnscope.data import DEFAULT_NAMES

    steps = 2_000 if "--quick" in sys.argv else 200_000
    for path in (DEFAULT_NAMES, LECTURE_NAMES):
        if path.exists():
            print(measure(path, steps))
