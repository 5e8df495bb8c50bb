"""The health badges' rules, written once: what each one measures, and where ok ends. The page reads
them from GET /api/health/rules; scripts/calibrate_health.py measured the numbers.

Each rule judges one value a badge shows: ok inside `amber` (bounds included), amber inside `red`,
red outside it. The measures, as the lecture explains them:

  saturation      % of a tanh layer's outputs with |t| > 0.97. There the tanh is in its flat tail:
                  the local gradient (1 - t**2) is ~0, so the gradient flowing back is killed.
  dead            % of a layer's units with |t| > 0.99 for every example of the batch: the lecture's
                  all-white column, a neuron that never learns because no example reaches its
                  active part.
  activation_std  std of a tanh layer's outputs. The gain (5/3 for tanh) is there to fight the
                  squashing: too small and the activations shrink towards 0 with depth, too big and
                  they pile up at +-1.
  gradient_flow   std of the gradient at the last tanh / at the first: the lecture wants the gradient
                  histograms alike in every layer. Above 1 the gradient shrinks on its way back
                  to the input (vanishing); below 1 it grows (exploding).
  update_to_data  log10(std(lr * grad) / std(weight)) per weight, the mean of its last 5 measurements:
                  roughly -3: each step changes a weight by ~1/1000 of itself. Much above: it learns
                  too fast (or the weight is too small); much below: too slowly.

Calibration (scripts/calibrate_health.py, 2026-12-01, one CPU thread, 138 s): the default config over
its whole 200k steps, statistics every 100 steps; each broken config at init (step 0).

  measure         default, 200k steps: min..max (p99)  broken configs, step 0             ok       | red outside
  saturation %    1.7..24.7 (23.2)                    gain 5 no BN 64..66                <= 30    | 50
  dead %          0 at every step                     lr 50 no BN 87..100 (step 100 on)  0        | 10
  activation_std  0.62..0.82 (0.80)                   gain 5 no BN 0.91..0.92            0.5..0.85 | 0.2..0.9
                                                      gain 0.5 no BN 0.41 (tanh1)..0.024 (tanh5)
                                                      torch-default no BN 0.45..0.085
  gradient_flow   0.27..1.35 (1.20)                   gain 5 no BN 0.115                 0.2..2   | 0.1..5
                                                      gain 0.5 no BN 16.2; torch-default no BN 9.6
  update_to_data  -3.98..-2.18 (-2.31)                gain 0.5 linear1..6 -2.17..-1.84   -4.5..-2 | -5.5..-1.5
                                                      no BN linear6 -0.62; gain 5 no BN linear6 -0.54
                                                      gain 0.5 no BN C -5.6

What separates each broken config from the default:
  gain 5, no BN: saturation (red), activation_std (red), gradient_flow (amber), linear6's update:data.
  gain 0.5, BN on: only update:data. BatchNorm undoes the weights' scale in the forward pass: its
                  activations at step 0 are the default's to the bit, but its gradients are 3.3x
                  bigger on weights 3.3x smaller, so update:data is 10**1.05 higher (amber).
  gain 0.5 or torch-default, no BN: activation_std (red in the deep layers), gradient_flow (red).
  BN off, gain 5/3: genuinely healthy on saturation (6..19 % at step 0, under the default's late
                  run), activation_std, dead units and gradient flow; what gives it away is the last
                  layer: without BN its weight itself is scaled by 0.1, so update:data of linear6 is
                  -0.62 (red).
The default's saturation climbs as it trains (past 20 % from step ~105k): the old limits (amber > 5 %,
red > 15 %) turned a healthy run red. The default's gradient flow is one minibatch's: it dipped once
to 0.27 (step 146,200), else stayed >= 0.46.
"""

import math
from collections import deque
from dataclasses import asdict, dataclass
from typing import Literal

Level = Literal["ok", "amber", "red"]
Bounds = tuple[float | None, float | None]  # (lo, hi); None: unbounded on that side

UPDATE_RATIO_POINTS = 5  # update:data is noisy step to step: judge the mean of the last few


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    panel: str  # the page's panel that shows the quantity
    measure: str  # what the value is, and its unit
    amber: Bounds  # ok inside, amber outside...
    red: Bounds  # ...and red outside these
    explain: str
    source: str


CALIBRATED = "calibrated with scripts/calibrate_health.py on 2026-12-01"

RULES: list[Rule] = [
    Rule(
        id="saturation", title="Saturation", panel="panel-saturation",
        measure="% of a tanh layer's outputs with |t| > 0.97 (one minibatch)",
        amber=(None, 30.0), red=(None, 50.0),
        explain="Outputs in the tanh's flat tail, where (1 - t²) ≈ 0 kills the gradient flowing back. "
                "A BatchNorm network starts near 3 % and climbs to ~25 % as it trains, which is fine; "
                "far above, most of the layer passes no gradient back.",
        source=f"{CALIBRATED}: default run max 24.7 % (p99 23.2 %) over 200k steps; "
               "gain 5 without BN at init 64–66 %",
    ),
    Rule(
        id="dead", title="Dead units", panel="panel-dead",
        measure="% of a layer's units with |t| > 0.99 for every example of the batch",
        amber=(None, 0.0), red=(None, 10.0),
        explain="A unit saturated for every example learns nothing: the lecture's all-white column. "
                "Healthy: none.",
        source=f"{CALIBRATED}: default run 0 in every layer at every stats step of 200k; "
               "lr 50 without BN: 87–100 % from step 100 on",
    ),
    Rule(
        id="activation_std", title="Activation std", panel="panel-activations",
        measure="std of a tanh layer's outputs (one minibatch)",
        amber=(0.5, 0.85), red=(0.2, 0.9),
        explain="The gain fights the tanh's squashing so every layer's outputs keep a similar spread "
                "(~0.6–0.8). Low: the activations shrink towards 0 with depth (gain too small); "
                "high: they pile up at ±1 (gain too big).",
        source=f"{CALIBRATED}: default run 0.62–0.82 (p99 0.80) over 200k steps; at init gain 5 "
               "without BN 0.91, gain 0.5 without BN 0.41 (tanh1) down to 0.024 (tanh5)",
    ),
    Rule(
        id="gradient_flow", title="Gradient flow", panel="panel-act-grads",
        measure="std(gradient at the last tanh) / std(gradient at the first tanh)",
        amber=(0.2, 2.0), red=(0.1, 5.0),
        explain="About 1 when the gradient keeps its size through the depth. Above: it shrinks on the "
                "way back to the input (vanishing); below: it grows (exploding).",
        source=f"{CALIBRATED}: default run 0.27–1.35 (p99 1.20) over 200k steps; at init gain 5 "
               "without BN 0.115, gain 0.5 without BN 16.2, torch-default init without BN 9.6",
    ),
    Rule(
        id="update_to_data", title="Update:data", panel="panel-update",
        measure=f"log10(std(lr × grad) / std(weight)), mean of the last {UPDATE_RATIO_POINTS} measurements",
        amber=(-4.5, -2.0), red=(-5.5, -1.5),
        explain="How much of itself each step changes a weight: about −3 (1/1000) is healthy; it drops "
                "by 1 when the lr decays ×0.1. Much above: learning too fast, or the weight is too small "
                "(the no-BN last layer, scaled ×0.1); much below: barely learning.",
        source=f"{CALIBRATED}: default run −3.98 to −2.18 (p99 −2.31) over 200k steps; at init gain 0.5 "
               "(BN on) linear1–6 −2.17 to −1.84, BN off linear6 −0.62, gain 5 without BN linear6 −0.54",
    ),
]  # fmt: skip
BY_ID: dict[str, Rule] = {rule.id: rule for rule in RULES}


def _inside(value: float, bounds: Bounds) -> bool:
    lo, hi = bounds
    return (lo is None or value >= lo) and (hi is None or value <= hi)


def verdict(rule_id: str, value: float) -> Level:
    """ok inside `amber`, amber inside `red`, red outside it (a bound itself is inside). A value
    that is not a number (NaN: a diverged run) is red."""
    rule = BY_ID[rule_id]
    if math.isnan(value):
        return "red"
    if _inside(value, rule.amber):
        return "ok"
    return "amber" if _inside(value, rule.red) else "red"


def rules_json() -> list[dict]:
    """The rules as the page reads them (GET /api/health/rules)."""
    return [asdict(rule) | {"amber": list(rule.amber), "red": list(rule.red)} for rule in RULES]


# ---- the measures, from a run's events --------------------------------------------------------------
Measured = dict[str, dict[str, float]]  # rule id -> {label: value}


def measure(stats: dict, recent_ud: dict[str, list[float]]) -> Measured:
    """Each rule's values at one `stats` event (bnscope.events.StatsEvent); `recent_ud` holds each
    weight's last update:data values (log10) up to that step. Unmeasured values are left out."""
    acts = stats["activations"]
    out: Measured = {
        "saturation": {a["name"]: a["saturation"] for a in acts},
        "dead": {a["name"]: 100 * a["dead"] / a["units"] for a in acts if a["units"]},
        "activation_std": {a["name"]: a["std"] for a in acts if a["std"] is not None},
        "gradient_flow": {},
        "update_to_data": {name: sum(v) / len(v) for name, v in recent_ud.items() if v},
    }
    if len(acts) > 1:
        first, last = acts[0], acts[-1]
        if first["grad_std"] and last["grad_std"] is not None:
            out["gradient_flow"][f"{last['name']} / {first['name']}"] = last["grad_std"] / first["grad_std"]
    return out


class Monitor:
    """The trainer's `emit` (or a listener behind it): folds events, and keeps the measures of every
    stats step as (step, Measured) in `history`."""

    def __init__(self):
        self.history: list[tuple[int, Measured]] = []
        self._recent = Recent()

    def __call__(self, event: dict) -> None:
        if event["type"] == "scalars":
            self._recent.add(event)
        elif event["type"] == "stats":
            recent = {name: list(values) for name, values in self._recent.ud.items()}
            self.history.append((event["step"], measure(event, recent)))


def checks(measured: Measured) -> list[tuple[str, str, float, Level]]:
    """Every badge: (rule id, label, value, level)."""
    return [(rule_id, label, value, verdict(rule_id, value))
            for rule_id, values in measured.items() for label, value in values.items()]  # fmt: skip


class Recent:
    """A run's last UPDATE_RATIO_POINTS update:data values per weight, folded from its `scalars` events:
    what the update:data badge of the next `stats` event is judged on."""

    def __init__(self):
        self.ud: dict[str, deque[float]] = {}

    def add(self, scalars: dict) -> None:
        for row in scalars["ud"]:
            for name, value in zip(scalars["ud_names"], row):
                if value is not None:  # None: the gradient was all 0 (log10 0)
                    self.ud.setdefault(name, deque(maxlen=UPDATE_RATIO_POINTS)).append(value)

    def badges(self, stats: dict) -> list[dict]:
        """Every badge at a stats event: [{rule, label, value, level}], as the page shows them."""
        measured = measure(stats, {name: list(values) for name, values in self.ud.items()})
        return [{"rule": rule, "label": label, "value": value, "level": level} for rule, label, value, level in checks(measured)]
