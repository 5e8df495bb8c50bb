"""Start-up: `bnscope train --steps N` against the lecture's bare script (bench/bare_lecture.py) doing the
same work (the dataset, the network, N steps, the final losses, 10 samples), each a whole new process.

    python -m bench --only startup        # or: python -m bench.startup [--quick]

The two take turns, a round each, timed from the process's start to its exit; medians over the rounds,
ratios round by round. Both train on names.txt with one torch thread.
"""

import argparse
import subprocess
import sys
import time
from pathlib import Path

from bench import report
from bench.common import interleaved, ratios, spread
from bnscope.train.data import DEFAULT_NAMES

TITLE = "Start-up: bnscope train against the bare lecture script"
BARE = Path(__file__).resolve().parent / "bare_lecture.py"
TARGET = 1.3  # bnscope train --steps 1 at most this many times the bare script's time


def _timed(command: list[str]):
    def run() -> tuple[int, float]:
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return 1, time.perf_counter() - started  # (1 process, seconds): interleaved's rate is processes/s

    return run


def measure(quick: bool = False, log=print) -> dict:
    rounds = 1 if quick else 5
    rows = []
    for steps in (1,) if quick else (1, 2000):
        commands = {
            "bare": [sys.executable, str(BARE), str(DEFAULT_NAMES), "--steps", str(steps)],
            "bnscope": [sys.executable, "-m", "bnscope.cli", "train", "--steps", str(steps), "--quiet"],
        }
        rates = interleaved({key: _timed(command) for key, command in commands.items()}, rounds, log=log)
        seconds = {key: [1 / r for r in values] for key, values in rates.items()}
        rows.append(
            {
                "steps": steps,
                "seconds": {key: spread(values) for key, values in seconds.items()},
                "ratio": ratios(seconds["bnscope"], seconds["bare"]),
            }
        )
    return {"rounds": rounds, "rows": rows}


def _seconds(s: dict) -> str:
    return f"{s['median']:.2f} ({s['min']:.2f}–{s['max']:.2f})"


def markdown(r: dict) -> str:
    rows = [
        [
            f"{row['steps']:,}",
            _seconds(row["seconds"]["bare"]),
            _seconds(row["seconds"]["bnscope"]),
            report.x(row["ratio"]),
        ]
        for row in r["rows"]
    ]
    met = r["rows"][0]["ratio"]["median"]
    return (
        f"Whole processes, {report.rounds(r['rounds'])} after a warm-up round, the two taking turns. `bare`: "
        "`python bench/bare_lecture.py names.txt --steps N`; `bnscope`: `python -m bnscope.cli train --steps N --quiet`.\n\n"
        + report.table(
            ["steps", "bare script, s (min–max)", "bnscope train, s (min–max)", "bnscope / bare (round by round)"], rows
        )
        + f"\n\nTarget: `bnscope train --steps 1` ≤ {TARGET:g}× the bare script's time: {met:.2f}× "
        f"({'met' if met <= TARGET else '**missed**'})."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: one round, one step")
    print(markdown(measure(parser.parse_args().quick)))


if __name__ == "__main__":
    main()
