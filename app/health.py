"""The health badges' rules, written once: what each one measures, and where ok ends. The page reads
them from GET /api/health/rules; scripts/calibrate_health.py (the lecture's tanh network) and
scripts/calibrate_families.py (other activation families) measured the numbers.

Each rule judges one value a badge shows: ok inside `amber` (bounds included), amber inside `red`,
red outside it. A rule judges only what it was calibrated on: a layer's measure by the layer's kind
(`kinds`), the network's gradient flow and update:data where every activation is of its kinds. What no
rule judges is "not judged" (`not_judged`), never judged by another family's rule: a ReLU's saturation
(half its outputs at 0 is normal), the gradient flow and update:data of a network that is not a tanh
MLP (AdamW's update:data sits near -1 to -3 in the examples, where SGD's -3 rule would call it red).
The measures, as the lecture explains them (for tanh):

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

Other families (scripts/calibrate_families.py, 2026-12-03, one CPU thread, 2 min): examples/cnn.py (ReLU,
600 steps) and examples/transformer_block.py (GELU, 1,500), both AdamW; the lecture's MLP with BN and its
tanhs swapped for sigmoid, ReLU, GELU or SiLU, SGD lr 0.1, 3k steps; stats every 20 / 50 / 100 steps.
Broken: the CNN with its BN biases at -5 (dead ReLUs), the transformer with its MLPs' first Linear x10
and the MLPs without BN at gain 5 (an exploding gain), each at init.

  family, measure        healthy runs: min..max            broken, step 0                      ok    | red outside
  sigmoid saturation %   0..0.09                           gain 5 no BN 23.6..47.3             <= 5  | 20
  ReLU dead %            0 at every stats step             CNN BN bias -5: 20.8..46.9;         <= 2  | 10
                                                           gain 5 no BN 12 (last ReLU)
  ReLU activation_std    CNN 0.56..0.90; MLP 0.575..0.633  gain 5 no BN 2.74..446              <= 1.5 | 2.5
  GELU/SiLU dead %       0 at every stats step             gain 5 no BN 12 (last layer)        <= 2  | 10
  GELU/SiLU act. std     transformer 0.30..0.62;           transformer x10 3.26;               <= 1.5 | 2.5
                         MLPs 0.546..0.64                  gain 5 no BN 2.76..447
Not judged, as measured: ReLU/GELU/SiLU saturation (<= 0) 38..75 % in healthy runs (half is normal); the
CNN's gradient flow 3.7..7.6 and update:data -3.4..-0.93 (AdamW), healthy by its accuracy.
"""

import math
from collections import deque
from dataclasses import asdict, dataclass
from typing import Literal

Level = Literal["ok", "amber", "red"]
Bounds = tuple[float | None, float | None]  # (lo, hi); None: unbounded on that side

UPDATE_RATIO_POINTS = 5  # update:data is noisy step to step: judge the mean of the last few
TANH = ("tanh",)
RELU_FAMILY = ("relu", "leaky_relu", "relu6", "prelu")  # flat (or nearly) wherever the input is negative
GELU_FAMILY = ("gelu", "silu")  # smooth ReLUs: a small gradient below 0, none far below


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
    quantity: str  # what is judged: a layer's saturation, dead, activation_std; the network's gradient_flow,
    # update_to_data (its weights')
    kinds: tuple[str, ...]  # the activations it was calibrated on: a layer of another kind (a network with
    # one, for the network's quantities) is not judged by it


CALIBRATED = "calibrated with scripts/calibrate_health.py on 2026-12-01"
FAMILIES = "calibrated with scripts/calibrate_families.py on 2026-12-03"

RULES: list[Rule] = [
    Rule(
        id="saturation",
        title="Saturation",
        panel="panel-saturation",
        measure="% of a tanh layer's outputs with |t| > 0.97 (one minibatch)",
        amber=(None, 30.0),
        red=(None, 50.0),
        explain="Outputs in the tanh's flat tail, where (1 - t²) ≈ 0 kills the gradient flowing back. "
        "A BatchNorm network starts near 3 % and climbs to ~25 % as it trains, which is fine; "
        "far above, most of the layer passes no gradient back.",
        source=f"{CALIBRATED}: default run max 24.7 % (p99 23.2 %) over 200k steps; gain 5 without BN at init 64–66 %",
        quantity="saturation",
        kinds=TANH,
    ),
    Rule(
        id="sigmoid_saturation",
        title="Saturation (sigmoid)",
        panel="panel-saturation",
        measure="% of a sigmoid layer's outputs below 0.03 or above 0.97 (one minibatch)",
        amber=(None, 5.0),
        red=(None, 20.0),
        explain="Outputs in the sigmoid's flat tails, where s(1 - s) ≈ 0 kills the gradient flowing back "
        "(a quarter of tanh's at best, so less of it can be spared). With BatchNorm before it, "
        "almost none.",
        source=f"{FAMILIES}: the lecture's MLP with sigmoids and BN, 3k steps, max 0.09 %; "
        "without BN at gain 5, at init 23.6–47.3 %",
        quantity="saturation",
        kinds=("sigmoid",),
    ),
    Rule(
        id="dead",
        title="Dead units",
        panel="panel-dead",
        measure="% of a tanh layer's units with |t| > 0.99 for every example of the batch",
        amber=(None, 0.0),
        red=(None, 10.0),
        explain="A unit saturated for every example learns nothing: the lecture's all-white column. Healthy: none.",
        source=f"{CALIBRATED}: default run 0 in every layer at every stats step of 200k; "
        "lr 50 without BN: 87–100 % from step 100 on",
        quantity="dead",
        kinds=TANH,
    ),
    Rule(
        id="relu_dead",
        title="Dead ReLUs",
        panel="panel-dead",
        measure="% of a ReLU layer's units never positive over the batch (every example and position)",
        amber=(None, 2.0),
        red=(None, 10.0),
        explain="A ReLU unit whose input is negative for every example passes no gradient back and never "
        "recovers. Half a layer's outputs at 0 is normal (not judged); a unit at 0 for all is not.",
        source=f"{FAMILIES}: 0 at every stats step of examples/cnn.py (600 steps) and of the lecture's MLP "
        "with ReLUs and BN (3k); at init the CNN with its BN biases at −5 20.8–46.9 %, "
        "the MLP without BN at gain 5 12 % (its last ReLU)",
        quantity="dead",
        kinds=RELU_FAMILY,
    ),
    Rule(
        id="gelu_dead",
        title="Dead GELU/SiLU units",
        panel="panel-dead",
        measure="% of a GELU or SiLU layer's units never positive over the batch (every example and position)",
        amber=(None, 2.0),
        red=(None, 10.0),
        explain="Below 0 a GELU or SiLU passes a small gradient, and far below none: a unit never positive "
        "barely learns. Half a layer's outputs below 0 is normal (not judged).",
        source=f"{FAMILIES}: 0 at every stats step of examples/transformer_block.py (1,500 steps) and of the "
        "lecture's MLP with GELUs or SiLUs and BN (3k); without BN at gain 5 12 % (their last layer) at "
        "init; the transformer with its MLPs ×10 up to 3.9 % by step 150",
        quantity="dead",
        kinds=GELU_FAMILY,
    ),
    Rule(
        id="activation_std",
        title="Activation std",
        panel="panel-activations",
        measure="std of a tanh layer's outputs (one minibatch)",
        amber=(0.5, 0.85),
        red=(0.2, 0.9),
        explain="The gain fights the tanh's squashing so every layer's outputs keep a similar spread "
        "(~0.6–0.8). Low: the activations shrink towards 0 with depth (gain too small); "
        "high: they pile up at ±1 (gain too big).",
        source=f"{CALIBRATED}: default run 0.62–0.82 (p99 0.80) over 200k steps; at init gain 5 "
        "without BN 0.91, gain 0.5 without BN 0.41 (tanh1) down to 0.024 (tanh5)",
        quantity="activation_std",
        kinds=TANH,
    ),
    Rule(
        id="relu_activation_std",
        title="Activation std (ReLU)",
        panel="panel-activations",
        measure="std of a ReLU layer's outputs (one minibatch)",
        amber=(None, 1.5),
        red=(None, 2.5),
        explain="Unbounded above, a ReLU passes on whatever scale its input has: ~0.6 after BatchNorm; far "
        "wider, a gain too big that grows layer after layer (the lecture's too-hot init, for a ReLU).",
        source=f"{FAMILIES}: examples/cnn.py 0.56–0.90 over 600 steps, the lecture's MLP with ReLUs and BN "
        "0.575–0.633 over 3k; without BN at gain 5, at init 2.74 (first layer) to 446 (last)",
        quantity="activation_std",
        kinds=RELU_FAMILY,
    ),
    Rule(
        id="gelu_activation_std",
        title="Activation std (GELU/SiLU)",
        panel="panel-activations",
        measure="std of a GELU or SiLU layer's outputs (one minibatch)",
        amber=(None, 1.5),
        red=(None, 2.5),
        explain="Unbounded above, a GELU or SiLU passes on whatever scale its input has: 0.3–0.65 in "
        "healthy runs; far wider, a gain too big that grows layer after layer.",
        source=f"{FAMILIES}: examples/transformer_block.py 0.30–0.62 over 1,500 steps, the lecture's MLP with "
        "GELUs or SiLUs and BN 0.546–0.64 over 3k; at init the transformer with its MLPs' first Linear "
        "×10 3.26, the MLPs without BN at gain 5 2.76 (first layer) to 447 (last)",
        quantity="activation_std",
        kinds=GELU_FAMILY,
    ),
    Rule(
        id="gradient_flow",
        title="Gradient flow",
        panel="panel-act-grads",
        measure="std(gradient at the last tanh) / std(gradient at the first tanh)",
        amber=(0.2, 2.0),
        red=(0.1, 5.0),
        explain="About 1 when the gradient keeps its size through the depth. Above: it shrinks on the "
        "way back to the input (vanishing); below: it grows (exploding).",
        source=f"{CALIBRATED}: default run 0.27–1.35 (p99 1.20) over 200k steps; at init gain 5 "
        "without BN 0.115, gain 0.5 without BN 16.2, torch-default init without BN 9.6",
        quantity="gradient_flow",
        kinds=TANH,
    ),
    Rule(
        id="update_to_data",
        title="Update:data",
        panel="panel-update",
        measure=f"log10(std(lr × grad) / std(weight)), mean of the last {UPDATE_RATIO_POINTS} measurements",
        amber=(-4.5, -2.0),
        red=(-5.5, -1.5),
        explain="How much of itself each step changes a weight: about −3 (1/1000) is healthy; it drops "
        "by 1 when the lr decays ×0.1. Much above: learning too fast, or the weight is too small "
        "(the no-BN last layer, scaled ×0.1); much below: barely learning.",
        source=f"{CALIBRATED}: default run −3.98 to −2.18 (p99 −2.31) over 200k steps; at init gain 0.5 "
        "(BN on) linear1–6 −2.17 to −1.84, BN off linear6 −0.62, gain 5 without BN linear6 −0.54",
        quantity="update_to_data",
        kinds=TANH,
    ),
]
BY_ID: dict[str, Rule] = {rule.id: rule for rule in RULES}
LAYER_QUANTITIES = ("saturation", "dead", "activation_std")  # judged a layer at a time, by its kind
NETWORK_QUANTITIES = ("gradient_flow", "update_to_data")  # judged where every activation is of the rule's kinds


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


def _layer_value(quantity: str, act: dict) -> float | None:
    if quantity == "dead":
        return 100 * act["dead"] / act["units"] if act["units"] else None
    return act["std"] if quantity == "activation_std" else act[quantity]


def _network_rule(quantity: str, kinds: set[str]) -> Rule | None:
    """The rule that judges a network-wide quantity for a network of these activation kinds, if any."""
    return next((r for r in RULES if r.quantity == quantity and kinds and kinds <= set(r.kinds)), None)


def measure(stats: dict, recent_ud: dict[str, list[float]]) -> Measured:
    """Each rule's values at one `stats` event (bnscope.events.StatsEvent); `recent_ud` holds each
    weight's last update:data values (log10) up to that step. A rule measures only the layers (or the
    networks) of the kinds it was calibrated on; unmeasured values are left out (see not_judged)."""
    acts = stats["activations"]
    kinds = {a["kind"] for a in acts}
    out: Measured = {}
    for rule in RULES:  # the rules that apply to this network, in their order
        if rule.quantity in LAYER_QUANTITIES and kinds & set(rule.kinds):
            values = ((a["name"], _layer_value(rule.quantity, a)) for a in acts if a["kind"] in rule.kinds)
            out[rule.id] = {name: value for name, value in values if value is not None}
        elif rule.quantity in NETWORK_QUANTITIES and _network_rule(rule.quantity, kinds) is rule:
            out[rule.id] = {}
    if "update_to_data" in out:
        out["update_to_data"] = {name: sum(v) / len(v) for name, v in recent_ud.items() if v}
    if "gradient_flow" in out and len(acts) > 1:
        first, last = acts[0], acts[-1]
        if first["grad_std"] and last["grad_std"] is not None:
            out["gradient_flow"][f"{last['name']} / {first['name']}"] = last["grad_std"] / first["grad_std"]
    return out


def not_judged(stats: dict) -> list[dict]:
    """What a stats event shows that no rule judges, as [{quantity, label}]: a layer's measure with no
    rule calibrated on its kind (a ReLU's saturation: half its outputs at 0 is normal), and the
    network's gradient flow and its weights' update:data where no rule was calibrated on its kinds."""
    acts = stats["activations"]
    out = [
        {"quantity": quantity, "label": a["name"]}
        for a in acts
        for quantity in LAYER_QUANTITIES
        if not any(r.quantity == quantity and a["kind"] in r.kinds for r in RULES)
    ]
    kinds = {a["kind"] for a in acts}
    if _network_rule("gradient_flow", kinds) is None and len(acts) > 1:
        out.append({"quantity": "gradient_flow", "label": f"{acts[-1]['name']} / {acts[0]['name']}"})
    if _network_rule("update_to_data", kinds) is None:
        out += [{"quantity": "update_to_data", "label": w["name"]} for w in stats["weights"]]
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
    return [
        (rule_id, label, value, verdict(rule_id, value))
        for rule_id, values in measured.items()
        for label, value in values.items()
    ]


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

    def judged(self, stats: dict) -> dict:
        """A stats event's verdicts as the stream and the store carry them: `health`, its badges, and
        `not_judged`, what it shows that no rule judges (the page says so instead of a badge)."""
        return {"health": self.badges(stats), "not_judged": not_judged(stats)}

    def badges(self, stats: dict) -> list[dict]:
        """Every badge at a stats event: [{rule, label, value, level}], as the page shows them."""
        measured = measure(stats, {name: list(values) for name, values in self.ud.items()})
        return [
            {"rule": rule, "label": label, "value": value, "level": level}
            for rule, label, value, level in checks(measured)
        ]
