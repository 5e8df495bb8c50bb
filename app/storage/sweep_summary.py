"""What a sweep shows at one step, member by member and group by group: the values behind the page's
effect chart (GET /api/sweeps/{id}/summary), read from the store.

A measure is a series name (bnscope.events.series_points): `loss` (the mean over the statistics interval
that ends at the step: one step's minibatch loss is noise), `dev_loss`, `saturation/tanh1`,
`act_std/tanh1`, `grad_std/tanh1`, `update_to_data/linear1` (the mean of its last 5 values, as the health
badges take it), `grad_to_data/linear1`, `dead/tanh1`... each at the step or the nearest before it.
Members that differ only by seed form a group: its mean, min and max of each measure.
"""

import csv
import io
import statistics

from bnscope.storage.store import Store

MEASURES = ("loss", "dev_loss", "saturation/", "act_std/", "grad_std/", "dead/", "update_to_data/", "grad_to_data/")
UPDATE_MEAN_OF = 5  # update:data is judged on the mean of its last 5 values (bnscope.health)


def _value(store: Store, run_id: int, name: str, step: int, stats_every: int) -> float | None:
    db = store.connect()
    if name == "loss":
        row = db.execute(
            "SELECT AVG(value) FROM series WHERE run_id=? AND name=? AND step>? AND step<=?",
            (run_id, name, step - stats_every, step),
        ).fetchone()
    else:
        count = UPDATE_MEAN_OF if name.startswith("update_to_data/") else 1
        row = db.execute(
            "SELECT AVG(value) FROM (SELECT value FROM series WHERE run_id=? AND name=? AND step<=? "
            "ORDER BY step DESC LIMIT ?)",
            (run_id, name, step, count),
        ).fetchone()
    return row[0]


def summary(store: Store, sweep: dict, members: list[dict], step: int | None) -> dict:
    """`sweep`: a store sweep row (its `vary`); `members`: its runs as the API describes them (id, config,
    step). `step` None: the newest statistics step every member has reached."""
    vary = sweep["vary"]
    shown = [s for s in vary if s != "seed"]
    if step is None:
        reached = [store.last_stats_step(m["id"]) for m in members]
        step = min((s for s in reached if s is not None), default=0) if all(s is not None for s in reached) else 0
    names = sorted({n for m in members for n in store.series_names(m["id"]) if n.startswith(MEASURES)})
    rows, groups = [], {}
    with store.reading():
        for m in members:
            settings = {s: m["config"][s] for s in vary}
            values = {n: _value(store, m["id"], n, step, m["config"]["stats_every"]) for n in names}
            rows.append({"run_id": m["id"], "settings": settings, "step": min(step, m["step"]), "values": values})
            key = tuple(settings[s] for s in shown)
            groups.setdefault(key, []).append(rows[-1])
    return {
        "sweep_id": sweep["id"],
        "step": step,
        "vary": vary,
        "axis": shown[0] if shown else "seed",
        "lines_by": shown[1] if len(shown) > 1 else None,
        "measures": names,
        "members": rows,
        "groups": [_group(dict(zip(shown, key)), mine, names) for key, mine in groups.items()],
    }


def _group(settings: dict, members: list[dict], names: list[str]) -> dict:
    """Members that differ only by seed: each measure's mean, min and max over them."""
    out = {"settings": settings, "runs": [m["run_id"] for m in members], "mean": {}, "min": {}, "max": {}}
    for n in names:
        values = [m["values"][n] for m in members if m["values"][n] is not None]
        out["mean"][n] = statistics.fmean(values) if values else None
        out["min"][n] = min(values, default=None)
        out["max"][n] = max(values, default=None)
    return out


def to_csv(answer: dict) -> str:
    """The summary as CSV: a row a member, its varied settings, then every measure."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    settings, names = list(answer["vary"]), answer["measures"]
    writer.writerow(["run_id", "step", *settings, *names])
    for m in answer["members"]:
        writer.writerow(
            [m["run_id"], m["step"], *(m["settings"][s] for s in settings), *(m["values"][n] for n in names)]
        )
    return buffer.getvalue()
