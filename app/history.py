"""Events -> named time series, and the even decimation that keeps every answer bounded.

Series names (one value per step at the series' cadence):
  loss                        minibatch loss, every step
  lr                          learning rate, at each scalars event
  update_to_data/<weight>     log10 update:data ratio, every update_every steps
  dev_loss                    full dev split in eval mode, every dev_every steps
  saturation/<tanh>, act_mean/<tanh>, act_std/<tanh>, dead/<tanh>, grad_std/<tanh>
  grad_to_data/<weight>
  running_mean/<batchnorm>, running_var/<batchnorm>   (means across channels)
The page builds the same series from live events (static/dashboard.js).
"""

import math

from bnscope.config import RunConfig

MAX_LEVEL = 40  # step 0 sits on every level, so the first point is always kept


def level_of(ordinal: int) -> int:
    """Decimation level of the k-th sample of a series: the number of trailing zero bits of k.
    Keeping the samples of level >= L keeps every 2**L-th one, evenly spaced, first included."""
    if ordinal == 0:
        return MAX_LEVEL
    return min((ordinal & -ordinal).bit_length() - 1, MAX_LEVEL)


def layer_names(config: RunConfig) -> dict[str, list[str]]:
    """The names diagnostics gives a network of this config: its Tanh layers, its 2-D weights
    (the embedding C and every Linear) and its BatchNorm layers."""
    n_linear = config.n_layers + 1
    return {
        "tanh": [f"tanh{i}" for i in range(1, config.n_layers + 1)],
        "weights": ["C"] + [f"linear{i}" for i in range(1, n_linear + 1)],
        "batchnorm": [f"batchnorm{i}" for i in range(1, n_linear + 1)] if config.batchnorm else [],
    }


def series_points(event: dict, config: RunConfig) -> list[tuple[str, int, int, float]]:
    """(series name, step, level, value) for every value an event contributes."""
    weight_names = layer_names(config)["weights"]
    points: list[tuple[str, int, int, float]] = []
    kind, step = event["type"], event["step"]

    def add(name: str, at: int, cadence: int, value: float) -> None:
        points.append((name, at, level_of(at // cadence), value))

    if kind == "scalars":
        for offset, loss in enumerate(event["loss"]):
            add("loss", step + offset, 1, loss)
        if event["loss"]:
            add("lr", step, 1, event["lr"])
        for at, row in zip(event["ud_steps"], event["ud"]):
            for name, value in zip(weight_names, row):
                add(f"update_to_data/{name}", at, config.update_every, value)
    elif kind == "stats":
        for layer in event["layers"]:
            for key in ("saturation", "dead", "grad_std"):
                add(f"{key}/{layer['name']}", step, config.stats_every, layer[key])
            add(f"act_mean/{layer['name']}", step, config.stats_every, layer["mean"])
            add(f"act_std/{layer['name']}", step, config.stats_every, layer["std"])
        for weight in event["weights"]:
            add(f"grad_to_data/{weight['name']}", step, config.stats_every, weight["grad_to_data"])
        for bn in event["batchnorm"]:
            add(f"running_mean/{bn['name']}", step, config.stats_every, bn["mean_of_running_mean"])
            add(f"running_var/{bn['name']}", step, config.stats_every, bn["mean_of_running_var"])
    elif kind == "eval" and event["split"] == "dev":
        add("dev_loss", step, config.dev_every, event["loss"])
    return [p for p in points if p[3] is not None and math.isfinite(p[3])]  # log10(0) = -inf: no point


def decimation_level(count: int, max_points: int) -> int:
    """The lowest level whose samples (every 2**L-th of `count`) number at most max_points - 1,
    leaving room for the last point."""
    level = 0
    while (count - 1) // (1 << level) + 1 > max_points - 1 and level < MAX_LEVEL:
        level += 1
    return level


def evenly(items: list, max_count: int) -> list:
    """At most max_count items, evenly spaced, first and last kept."""
    if len(items) <= max_count:
        return items
    if max_count < 2:
        return items[-max_count:] if max_count else []
    last = len(items) - 1
    picks = sorted({round(i * last / (max_count - 1)) for i in range(max_count)})
    return [items[i] for i in picks]


def cadence_of(series: str, config: RunConfig) -> int:
    """Steps between two samples of a series."""
    kind = series.split("/", 1)[0]
    if kind in ("loss", "lr"):
        return 1
    if kind == "update_to_data":
        return config.update_every
    if kind == "dev_loss":
        return config.dev_every
    return config.stats_every
