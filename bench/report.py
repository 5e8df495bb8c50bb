"""BENCHMARKS.md from the sections' result dicts: one renderer a section, the targets, the headline
table, the header. Nothing here measures."""

import math

from bench.throughput import RATIOS, VARIANTS


# ---- numbers --------------------------------------------------------------------------------------
def x(s: dict) -> str:
    return f"{s['median']:.2f}× ({s['min']:.2f}–{s['max']:.2f})"


def rate(s: dict) -> str:
    return f"{s['median']:,.0f} ({s['min']:,.0f}–{s['max']:,.0f})"


def ms(value: float) -> str:
    return "—" if value is None or math.isnan(value) else f"{value:.1f} ms" if value < 100 else f"{value:,.0f} ms"


def pcts(p: dict, keys=("p50", "p95", "p99", "max")) -> str:
    return " | ".join(ms(p[k]) for k in keys)


def rounds(n: int) -> str:
    return f"{n} round{'s' if n != 1 else ''}"


def table(head: list[str], rows: list[list], align: str | None = None) -> str:
    align = align or "-" + "r" * (len(head) - 1)
    rule = ["---" if a == "-" else "---:" for a in align]
    return "\n".join("| " + " | ".join(str(c) for c in row) + " |" for row in [head, rule, *rows])


# ---- targets --------------------------------------------------------------------------------------
def targets(results: dict) -> list[dict]:
    """Each target the issues set, with what was measured: {"target", "measured", "met", "by"}."""
    out = []

    def at_least(name: str, value: float, goal: float, unit: str = "×", at_most: bool = False) -> None:
        out.append(
            {
                "target": f"{name} {'≤' if at_most else '≥'} {goal:g}{unit}",
                "measured": f"{value:.2f}{unit}",
                "met": value <= goal if at_most else value >= goal,
                "by": f"{value - goal:+.2f}{unit} ({(value / goal - 1) * 100:+.0f}%)",
            }
        )

    def below(name: str, value: float, goal: float) -> None:
        out.append(
            {
                "target": f"{name} < {goal:g} ms",
                "measured": ms(value),
                "met": value < goal,
                "by": f"{value - goal:+.1f} ms ({(value / goal - 1) * 100:+.0f}%)",
            }
        )

    if "throughput" in results:
        t = results["throughput"]["ratios"]
        at_least("bnscope's trainer vs the same fused step unlogged (median)", t["trainer_vs_fused"]["median"], 0.95)
        at_least(
            "bnscope's trainer vs the same trainer without diagnostics (median)", t["trainer_vs_bare"]["median"], 0.95
        )
    if "sampling" in results:
        below(
            "GET samples n=10 p99, 2 runs training + 20 stream clients",
            results["sampling"]["api_ms"]["loaded"]["p99"],
            50,
        )
    if "workers" in results:
        w = results["workers"]
        at_least("total steps/s, 2 runs at once vs 1 (median)", w["scaling"][2]["median"], 1.8)
        m = w["made"]
        at_least(
            f"total steps/s, {m['runs']} runs made, default slots ({m['training']} train, {m['queued']} queued) vs 1 (median)",
            m["vs_1"]["median"],
            1.8,
        )
        at_least(
            "total steps/s, 4 runs training at once (BNSCOPE_MAX_RUNS=4) vs 1 (median)", w["scaling"][4]["median"], 1.8
        )
        at_least(
            "1 run in a worker process vs the in-process trainer (median)", w["worker_vs_inprocess"]["median"], 0.95
        )
        below("stats-event latency p95 (publish → client), 4 runs training", w["stats_latency_ms_4_runs"]["p95"], 100)
    if "ray" in results:
        at_least(
            "a run's steps/s as a Ray actor vs a worker process (median)",
            results["ray"]["ray_vs_process"]["median"],
            0.9,
        )
    if "watch" in results:
        from bench import watch

        for key, network, goal in (
            ("lecture", "the lecture's network", watch.TARGET),
            ("small", "a small MLP", watch.TARGET_SMALL),
        ):
            if key in results["watch"]:
                at_least(
                    f"bnscope.watch every={watch.EVERY} vs unwatched, {network} (median)",
                    results["watch"][key]["ratios"][f"watch_{watch.EVERY}"]["median"],
                    goal,
                )
    if "startup" in results:
        from bench import startup

        at_least(
            "`bnscope train --steps 1` vs the bare script (median)",
            results["startup"]["rows"][0]["ratio"]["median"],
            startup.TARGET,
            at_most=True,
        )
    if "sweeps" in results:
        s = results["sweeps"]["served"]
        at_least(
            f"total steps/s, a gain × BatchNorm grid of {s['members']} as stacks vs 1 run (median)",
            s["vs_one"]["grid"]["median"],
            2.5,
        )
    if "stats" in results:
        from bench import stats_cost

        at_least(
            "a statistics sample of the lecture's network, wall",
            results["stats"]["wall_ms"]["collect"],
            stats_cost.TARGET_MS,
            " ms",
            at_most=True,
        )
    return out


def render_targets(rows: list[dict]) -> str:
    if not rows:
        return "No section with a target was run."
    return table(
        ["target", "measured", "verdict"],
        [[r["target"], r["measured"], ("met" if r["met"] else "**missed**") + f", by {r['by']}"] for r in rows],
        align="-rr",
    )


# ---- sections ---------------------------------------------------------------------------------------
def throughput(r: dict) -> str:
    c = r["cadences"]
    rows = [[f"`{k}`: {label}", rate(r["steps_per_s"][k])] for k, label in VARIANTS.items()]
    ratio_rows = [[f"`{a}` / `{b}`", x(r["ratios"][key]), what] for key, (a, b, what) in RATIOS.items()]
    return (
        f"Windows of {r['steps_per_window']:,} steps each (cadences: stats every {c['stats_every']}, update:data every "
        f"{c['update_every']}, dev every {c['dev_every']:,}), {rounds(r['rounds'])} after a warm-up round.\n\n"
        + table(["variant", "steps/s, median (min–max)"], rows)
        + "\n\n"
        + table(["ratio (round by round)", "median (min–max)", "what it measures"], ratio_rows, align="-r-")
        + "\n\n"
        f"One dev evaluation ({r['dev_examples']:,} examples, eval mode): {ms(r['dev_eval_ms'])}, in every window of "
        "the variants that log (bnscope's trainers and TensorBoard's alike). The trainers' events go where a worker's "
        "go: an outbox, a sender thread pickling them down a pipe, the server's real path in a process of its own on "
        "the other core; each window ends once that process has stored what it was sent."
    )


def event_cost(r: dict) -> str:
    s, c = r["stats"], r["scalars"]
    rows = [
        ["series points (`bnscope.events.series_points`)", ms(s["ms"]["series points"]), ms(c["ms"]["series points"])],
        [
            "publish: series points, run state, JSON once (`to_json(wire(...))`), channel",
            ms(s["ms"]["publish"]),
            ms(c["ms"]["publish"]),
        ],
        ["zlib level 1 of the JSON (inside the store write)", ms(s["ms"]["compression"]), "—"],
        [
            f"`Store.write` in one transaction (of {s['batch']} stats / {c['batch']} scalars events)",
            ms(s["ms"]["store write"]),
            ms(c["ms"]["store write"]),
        ],
        ["**total: publish + store write**", f"**{ms(s['total_ms'])}**", f"**{ms(c['total_ms'])}**"],
    ]
    return (
        f"CPU time of this thread per event (mean over {s['events']} stats and {c['events']} scalars events).\n\n"
        + table(
            [
                "server work per event",
                f"stats event ({s['kib']:.0f} KiB)",
                f"scalars event ({c['kib']:.1f} KiB, {c['losses_per_event']:.0f} losses on average)",
            ],
            rows,
        )
    )


def latency(r: dict) -> str:
    t, s = r["in_trainer_ms"], r["server_to_client_ms"]
    rows = [
        [
            f"loss point: its step → the trainer emits it (the flush wait: losses go every {r['flush_seconds']} s and at each stats step; in-process)",
            t["scalars"]["n"],
            pcts(t["scalars"]),
        ],
        ["loss point: server publish → SSE client", s["scalars"]["n"], pcts(s["scalars"])],
        [
            "stats event: its step → the trainer emits it (statistics computed; in-process)",
            t["stats"]["n"],
            pcts(t["stats"]),
        ],
        ["stats event: server publish → SSE client", s["stats"]["n"], pcts(s["stats"])],
        [
            "control round trip: PATCH lr sent → its control event at the SSE client",
            r["control_round_trip_ms"]["n"],
            pcts(r["control_round_trip_ms"]),
        ],
    ]
    return (
        "One run of the default network training in a real `bnscope serve`, one SSE client. A loss point's way from its "
        "step to a client is the first two rows in turn, plus the worker → server pipe, which no row holds (events carry "
        "no time from the worker; the round trip crosses it twice).\n\n"
        + table(["measure", "n", "p50", "p95", "p99", "max"], rows)
    )


def sampling(r: dict) -> str:
    a = r["api_ms"]
    rows = [
        ["1 run training, no stream clients", a["one run"]["n"], ms(a["one run"]["p50"]), ms(a["one run"]["p99"])],
        [
            f"2 runs training, {r['stream_clients']} stream clients reading",
            a["loaded"]["n"],
            ms(a["loaded"]["p50"]),
            ms(a["loaded"]["p99"]),
        ],
    ]
    names = [[f"{n:,}", f"{v:,.0f}"] for n, v in r["names_per_s"].items()]
    return (
        "`GET /api/runs/{id}/samples?n=10` through a real server, one request at a time, the two conditions taking turns.\n\n"
        + table(["condition", "requests", "p50", "p99"], rows)
        + "\n\n"
        "In-process (no server, no HTTP), `sample_names` from the default network trained 5,000 steps, one batch a call:\n\n"
        + table(["names a call", "names/s"], names)
    )


def workers(r: dict) -> str:
    s, rss = r["steps_per_s"], r["rss_4_runs"]
    rows = [
        [f"{k} run{'s' if k > 1 else ''} training at once", rate(s[str(k)]), x(r["scaling"][k]) if k > 1 else "1.00×"]
        for k in (1, 2, 4)
    ]
    m = r["made"]
    rows.append(
        [
            f"{m['runs']} runs made on a server with the default slots: {m['training']} train, {m['queued']} wait queued",
            rate(s["made"]),
            x(m["vs_1"]),
        ]
    )
    rows.append(
        [
            "1 run, the trainer in-process, the server's path on its thread (as when runs trained in threads)",
            rate(s["in-process"]),
            f"worker / in-process: {x(r['worker_vs_inprocess'])}",
        ]
    )
    lat = r["stats_latency_ms_4_runs"]
    workers_mib = ", ".join(f"{m:.0f}" for m in rss["workers_mib"])
    return (
        f"Windows of {r['window_s']:.0f} s, {rounds(r['rounds'])} (1 run, in-process, 2 runs, 4 runs, 4 made, …). "
        "The server that holds 1, 2 and 4 runs training at once has BNSCOPE_MAX_RUNS=4: on this machine four "
        "runs then share its cores; the default slots (the machine's cores) queue what is beyond them.\n\n"
        + table(["condition", "total steps/s, median (min–max)", "vs 1 run (round by round)"], rows)
        + "\n\n"
        f"With 4 runs training: stats events publish → client p50 {ms(lat['p50'])}, p95 {ms(lat['p95'])}, p99 "
        f"{ms(lat['p99'])} (n={lat['n']}, a client a run). Memory: server {rss['server_mib']:.0f} MiB RSS, workers "
        f"{workers_mib} MiB, other children {sum(rss['others_mib']):.0f} MiB."
    )


def ray(r: dict) -> str:
    lat, up = r["latency_ms"], r["startup_s"]
    rows = [
        [
            "steps/s, one run (median, min–max)",
            rate(r["steps_per_s"]["process"]),
            rate(r["steps_per_s"]["ray"]),
            x(r["ray_vs_process"]),
        ],
        [
            "stats event: publish → client, p50 / p95",
            *(f"{ms(lat[k]['stats']['p50'])} / {ms(lat[k]['stats']['p95'])}" for k in ("process", "ray")),
            "",
        ],
        [
            "loss points (scalars): publish → client, p50 / p95",
            *(f"{ms(lat[k]['scalars']['p50'])} / {ms(lat[k]['scalars']['p95'])}" for k in ("process", "ray")),
            "",
        ],
        [
            "control round trip (PATCH lr → control event), p50 / p95",
            *(
                f"{ms(lat[k]['control_round_trip']['p50'])} / {ms(lat[k]['control_round_trip']['p95'])}"
                for k in ("process", "ray")
            ),
            "",
        ],
        [
            "start-up: server launch → its first run `running` (one start)",
            f"{up['process']:.1f} s",
            f"{up['ray']:.1f} s",
            "",
        ],
    ]
    mem = r["ray_rss_mib"]
    return (
        f"Windows of {r['window_s']:.0f} s, {rounds(r['rounds'])}, the two servers taking turns.\n\n"
        + table(["measure", "worker process", "Ray actor (local)", "Ray / process"], rows)
        + "\n\n"
        f"Ray's memory: server {mem['server']:.0f} MiB, actor {', '.join(f'{m:.0f}' for m in mem['actor'])} MiB, "
        f"Ray's own processes {mem['ray_processes']:.0f} MiB in all."
    )


def page(r: dict) -> str:
    if "skipped" in r:
        return f"Skipped: {r['skipped']}."
    rows = [
        ["steps/s, page closed (median)", f"{r['steps_per_s_without']:,.0f}"],
        ["steps/s, page open (median)", f"{r['steps_per_s_with']:,.0f}"],
        ["open / closed", f"{r['ratio']:.2f}×"],
        ["browser CPU (all Chromium processes), median", f"{r['browser_cores']:.2f} cores"],
        [
            "long tasks (> 50 ms) while open",
            f"{r['long_tasks']} (longest {ms(r['longest_task_ms'])}, {r['long_task_share'] * 100:.1f}% of the time)",
        ],
        ["JS heap, window start → end (median)", f"{r['heap_mb_start']:.1f} → {r['heap_mb_end']:.1f} MB"],
    ]
    return (
        f"`bench/page.py`: the default network trains in a real server; headless Chromium shows its page in windows of "
        f"{r['window_s']:.0f} s, {rounds(r['rounds'])} (closed, open, closed, open, …).\n\n"
        + table(["measure", "value"], rows)
    )


def scale(r: dict) -> str:
    rows = [
        [
            f"{row['step']:,}",
            f"{row['rss_mib']:.0f} MiB",
            f"{row['whole']['kib']:,.0f} KiB",
            f"{ms(row['whole']['ms_median'])}, {ms(row['whole']['ms_max'])}",
            f"{row['zoom']['kib']:,.0f} KiB",
            f"{ms(row['zoom']['ms_median'])}, {ms(row['zoom']['ms_max'])}",
            f"{row['db_mib']:.1f} MiB",
        ]
        for row in r["rows"]
    ]
    return (
        f"One run of a small network ({r['config']}) in a real server. `/history?start=0&end=STEP&max_points=2000` "
        f"(whole run) and `start=STEP-{r['zoom_steps']:,}` (zoomed), 5 requests each.\n\n"
        + table(
            [
                "step",
                "server RSS",
                "whole: answer",
                "whole: median, max",
                "zoomed: answer",
                "zoomed: median, max",
                "database",
            ],
            rows,
        )
    )


def _loss_spread(s: dict) -> str:
    return f"{s['mean']:.4f} ± {s['std']:.4f} ({s['min']:.4f}–{s['max']:.4f})"


def quality(r: dict) -> str:
    if "skipped" in r:
        return f"Skipped: {r['skipped']}."
    rows = [
        [
            f["names"],
            len(f["runs"]),
            _loss_spread(f["train"]),
            _loss_spread(f["dev"]),
            _loss_spread(f["test"]),
            f"{f['wall_s_each']:.0f} s",
        ]
        for f in r["files"]
    ]
    skipped = f"\n\n{r['note']}" if r.get("note") else ""
    network = (
        f"The default network, {r['overrides']['steps']:,} steps (the full schedule, lr ×0.1 after 150,000)"
        if set(r["overrides"]) == {"steps"}
        else f"A tiny network ({r['overrides']})"
    )
    return (
        f"{network}, seeds {', '.join(map(str, r['seeds']))}; final losses in eval mode, mean ± sample std (min–max) over the seeds.\n\n"
        + table(["names file", "seeds", "train", "dev", "test", "wall time each (median)"], rows)
        + "\n\n"
        f"The trainings ran {r['parallel']} at a time in worker processes (losses do not depend on speed); all of them "
        f"took {r['wall_s'] / 60:.1f} min. For reference only, not a peer: the lecture reports dev {r['lecture_dev']} on "
        "makemore-names.txt for its own, smaller network (one hidden layer with BatchNorm), not this five-layer one."
        + skipped
        + "\n\n"
        + _stacked_quality(r)
    )


def _stacked_quality(r: dict) -> str:
    """The same seeds as the members of one stack (a sweep over the seed), against the single runs."""
    rows = []
    for f in r["files"]:
        each = ", ".join(
            f"{seed}: {f['single_dev_each'][seed]:.4f} / {dev:.4f}" for seed, dev in f["stacked_dev_each"].items()
        )
        gap = (f["stacked_dev"]["mean"] - f["dev"]["mean"]) / f["dev"]["std"]
        rows.append(
            [
                f["names"],
                _loss_spread(f["stacked_dev"]),
                _loss_spread(f["stacked_test"]),
                each,
                f"{gap:+.1f}",
                f"{f['stacked_wall_s']:.0f} s",
            ]
        )
    return (
        "The same seeds trained as the members of one stack (a sweep over the seed, as the server trains it: "
        "bnscope.train.stack, one process, every member's diagnostics):\n\n"
        + table(
            [
                "names file",
                "dev, members",
                "test, members",
                "dev by seed: single run / member",
                "members' mean dev − single runs', in single-run std",
                "stack wall time",
            ],
            rows,
        )
    )


# ---- the top of the file ----------------------------------------------------------------------------
def headline(results: dict) -> str:
    """The figures a README may quote, each measuring what its label says, with the section it comes from."""
    rows = []
    if "throughput" in results:
        t = results["throughput"]["ratios"]
        rows += [
            [
                "the fused step's own speed-up over the lecture's autograd loop (both unlogged)",
                x(t["fused_vs_autograd"]),
                "throughput",
            ],
            ["bnscope's logging: its trainer vs the same fused step unlogged", x(t["trainer_vs_fused"]), "throughput"],
            [
                "bnscope's diagnostics alone: its trainer vs the same trainer without them",
                x(t["trainer_vs_bare"]),
                "throughput",
            ],
            [
                "TensorBoard's logging of the same statistics: on the fused step vs unlogged",
                x(t["fused_tb_vs_fused"]),
                "throughput",
            ],
            [
                "TensorBoard's logging on the lecture's autograd loop vs unlogged",
                x(t["autograd_tb_vs_autograd"]),
                "throughput",
            ],
            [
                "bnscope vs TensorBoard, same fused step, same statistics and cadences",
                x(t["trainer_vs_fused_tb"]),
                "throughput",
            ],
        ]
    if "event_cost" in results:
        e = results["event_cost"]
        rows.append(
            [
                "server CPU per stats event / per scalars event (publish + store write)",
                f"{ms(e['stats']['total_ms'])} / {ms(e['scalars']['total_ms'])}",
                "event_cost",
            ]
        )
    if "latency" in results:
        lat = results["latency"]
        s, t = lat["server_to_client_ms"], lat["in_trainer_ms"]
        rows += [
            [
                "loss point, server publish → SSE client, p50 / p99",
                f"{ms(s['scalars']['p50'])} / {ms(s['scalars']['p99'])}",
                "latency",
            ],
            [
                f"loss point, its step → the trainer's flush (every {lat['flush_seconds']} s), p50 / max",
                f"{ms(t['scalars']['p50'])} / {ms(t['scalars']['max'])}",
                "latency",
            ],
            [
                "stats event, server publish → SSE client, p50 / p99",
                f"{ms(s['stats']['p50'])} / {ms(s['stats']['p99'])}",
                "latency",
            ],
        ]
    if "sampling" in results:
        a = results["sampling"]["api_ms"]
        rows.append(
            [
                "GET samples n=10, p99: 1 run training / 2 runs + 20 stream clients",
                f"{ms(a['one run']['p99'])} / {ms(a['loaded']['p99'])}",
                "sampling",
            ]
        )
    if "workers" in results:
        w = results["workers"]
        rows += [
            [
                "total steps/s vs 1 run: 2 runs / 4 runs made (default slots) / 4 training at once",
                f"{x(w['scaling'][2])} / {x(w['made']['vs_1'])} / {x(w['scaling'][4])}",
                "workers",
            ],
            ["1 run in a worker process vs the in-process trainer", x(w["worker_vs_inprocess"]), "workers"],
        ]
    if "ray" in results:
        r = results["ray"]
        rows.append(
            [
                "a run as a local Ray actor vs a worker process, steps/s; Ray start-up",
                f"{x(r['ray_vs_process'])}; {r['startup_s']['ray']:.1f} s",
                "ray",
            ]
        )
    if "page" in results and "skipped" not in results["page"]:
        rows.append(["steps/s with the page open vs closed", f"{results['page']['ratio']:.2f}×", "page"])
    if "scale" in results:
        last = results["scale"]["rows"][-1]
        rows.append(
            [
                f"/history of a {last['step']:,}-step run: median time, answer",
                f"{ms(last['whole']['ms_median'])}, {last['whole']['kib']:,.0f} KiB",
                "scale",
            ]
        )
    if "quality" in results and "skipped" not in results["quality"]:
        for f in results["quality"]["files"]:
            rows.append(
                [
                    f"dev loss, {f['names']}, mean ± std over {len(f['runs'])} seeds",
                    f"{f['dev']['mean']:.4f} ± {f['dev']['std']:.4f}",
                    "quality",
                ]
            )
    if "sweeps" in results:
        s = results["sweeps"]["served"]
        rows.append(
            [
                (
                    f"a gain × BatchNorm grid of {s['members']}, stacked / {s['members']} runs a process each (0.2), "
                    "total steps/s vs 1 run"
                ),
                f"{x(s['vs_one']['grid'])} / {x(s['vs_one']['singles'])}",
                "sweeps",
            ]
        )
    return table(
        ["figure", "value", "section (`python -m bench --only …`)"], [[a, b, f"`{c}`"] for a, b, c in rows], align="-r-"
    )


def machine_line(m: dict) -> str:
    return (
        f"{m['cpu']}, {m['cores']} cores, Python {m['python']}, torch {m['torch']}, {m['torch_threads']} torch "
        f"thread per training"
    )


def load_line(load: tuple, other: dict) -> str:
    line = f"load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1 / 5 / 15 min) at start"
    if not other["samples"]:
        return line + "; too short for a sample of other processes' CPU"
    return (
        line + f"; other processes used {other['mean_cores']:.2f} cores on average, {other['max_cores']:.2f} at most "
        f"in a {other['every']:g}-s sample"
    )


def busy(other: dict, cores: int) -> bool:
    """Busy: others took more than a tenth of the machine on average, or over half a core in more than a
    tenth of the samples. (Not one sample: a process of the benchmark's own that ends, or a daemon it
    starts, such as Ray's, shows once as "other".)"""
    return other["mean_cores"] > 0.1 * cores or other["over_half_core"] > 0.1
