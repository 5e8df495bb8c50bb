"""The health badges' rules, written once: what each measures, and where ok ends.

PLACEHOLDER: thresholds and calibration table are filled in from scripts/calibrate_health.py.
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


RULES: list[Rule] = []
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
        self._recent: dict[str, deque[float]] = {}

    def __call__(self, event: dict) -> None:
        if event["type"] == "scalars":
            for row in event["ud"]:
                for name, value in zip(event["ud_names"], row):
                    if value is not None:  # None: the gradient was all 0 (log10 0)
                        self._recent.setdefault(name, deque(maxlen=UPDATE_RATIO_POINTS)).append(value)
        elif event["type"] == "stats":
            recent = {name: list(values) for name, values in self._recent.items()}
            self.history.append((event["step"], measure(event, recent)))


def checks(measured: Measured) -> list[tuple[str, str, float, Level]]:
    """Every badge: (rule id, label, value, level)."""
    return [(rule_id, label, value, verdict(rule_id, value))
            for rule_id, values in measured.items() for label, value in values.items()]  # fmt: skip
