"""What the dashboard costs while it is watched: a real `bnscope serve` trains the default network;
steps/s is measured in windows without and with a headless Chromium showing the page (interleaved:
off, on, off, on, ...; medians), and, while the page is open, its long tasks (PerformanceObserver
'longtask': main-thread tasks over 50 ms) and JS heap at the start and the end of each window.

    from bench.page import measure; measure()   # or: python -m bench.page
"""

import contextlib
import statistics
import time
from pathlib import Path

from bench.server import BenchServer

CHROMIUM = Path("/usr/bin/chromium")  # the distribution's browser: Playwright never downloads its own
CHROMIUM_ARGS = [  # the tests' too (tests/browser.py)
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]

OBSERVE = """() => {
  window.__longTasks = [];
  new PerformanceObserver((list) => { for (const e of list.getEntries()) window.__longTasks.push(e.duration); })
    .observe({ type: "longtask", buffered: true });
}"""
TAKE = """() => { const tasks = window.__longTasks.splice(0); return { tasks, heap: performance.memory.usedJSHeapSize }; }"""


def _rate(server: BenchServer, run_id: int, seconds: float) -> float:
    start = server.run(run_id)["step"]
    time.sleep(seconds)
    return (server.run(run_id)["step"] - start) / seconds


def _browser_cpu_s() -> float:
    """CPU seconds used so far by every Chromium process (renderer, GPU, network: all of the page's cost)."""
    import psutil

    total = 0.0
    for process in psutil.process_iter(["name", "cpu_times"]):
        if process.info["name"] and "chrom" in process.info["name"] and process.info["cpu_times"]:
            total += process.info["cpu_times"].user + process.info["cpu_times"].system
    return total


def measure(
    window_s: float = 20.0,
    rounds: int = 3,
    warmup_s: float = 10.0,
    width: int = 1440,
    height: int = 900,
    server: BenchServer | None = None,
    log=print,
) -> dict:
    """Steps/s of the default network without and with the page open; the page's long tasks and heap.
    `server`: one to use (one run of it trains, any others pause), else a server of its own.
    Returns {"steps_per_s_without", "steps_per_s_with", "ratio", "long_tasks", "longest_task_ms",
    "long_task_share", "browser_cores" (CPU of all Chromium processes, in cores), "heap_mb_start",
    "heap_mb_end", "window_s", "rounds"}."""
    from playwright.sync_api import sync_playwright

    with contextlib.ExitStack() as stack:
        server = server or stack.enter_context(BenchServer())
        playwright = stack.enter_context(sync_playwright())
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, "--enable-precise-memory-info"]
        )
        run = {"id": server.train_only(1)[0]}  # the default network, longer than the benchmark
        time.sleep(warmup_s)  # past start-up and the first speed measurement
        without, with_page, tasks, heaps, cores = [], [], [], [], []
        for round_ in range(rounds):
            without.append(_rate(server, run["id"], window_s))
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(f"{server.url}/?runs={run['id']}")
            page.wait_for_selector("#run-chips .chip-label")
            page.evaluate(OBSERVE)
            time.sleep(2)  # the first load and draw are not what watching costs
            start, cpu = page.evaluate(TAKE), _browser_cpu_s()
            with_page.append(_rate(server, run["id"], window_s))
            end = page.evaluate(TAKE)
            cores.append((_browser_cpu_s() - cpu) / window_s)
            tasks += end["tasks"]
            heaps.append((start["heap"], end["heap"]))
            page.close()
            log(
                f"  round {round_ + 1}: {without[-1]:.0f} steps/s without the page, {with_page[-1]:.0f} with; "
                f"browser {cores[-1]:.2f} cores, {len(end['tasks'])} long tasks, heap {start['heap'] / 2**20:.1f} -> {end['heap'] / 2**20:.1f} MB"
            )
        browser.close()
    median_without, median_with = statistics.median(without), statistics.median(with_page)
    return {
        "steps_per_s_without": median_without,
        "steps_per_s_with": median_with,
        "ratio": median_with / median_without,
        "long_tasks": len(tasks),
        "longest_task_ms": max(tasks, default=0.0),
        "long_task_share": sum(tasks) / (1000 * window_s * rounds),
        "browser_cores": statistics.median(cores),
        "heap_mb_start": statistics.median(h[0] for h in heaps) / 2**20,
        "heap_mb_end": statistics.median(h[1] for h in heaps) / 2**20,
        "window_s": window_s,
        "rounds": rounds,
    }


if __name__ == "__main__":
    print(measure())
