// Health checks per layer, after the lecture's rules of thumb, and the badges that show them.
// Each badge is a link to the panel that shows the quantity, with its thresholds in a tooltip.

import { buildOnce, el, formatInt, formatNum, setText } from "./util.js";

export const UPDATE_RATIO_POINTS = 5; // update:data is noisy step to step: judge the mean of the last few

// in the order the badges are shown
const RULES = {
  saturation: {
    title: "Saturation",
    panel: "panel-saturation",
    explain: "share of tanh outputs with |t| > 0.97. Healthy: a few % at most (amber above 5 %, red above 15 %); " +
      "a saturated unit passes almost no gradient back.",
    level: (pct) => (pct > 15 ? "red" : pct > 5 ? "amber" : "ok"),
  },
  dead: {
    title: "Dead units",
    panel: "panel-dead",
    explain: "units saturated (|t| > 0.99) for every example of the batch: they learn nothing. Healthy: none " +
      "(amber: any, red: 10 % of the layer or more).",
    level: (dead, units) => (dead >= 0.1 * units ? "red" : dead > 0 ? "amber" : "ok"),
  },
  gradientFlow: {
    title: "Gradient flow",
    panel: "panel-act-grads",
    explain: "std of the gradient at the last tanh layer / at the first. Healthy: about 1, gradients the same size " +
      "at every depth (amber outside 0.5–2, red outside 0.2–5: vanishing below, exploding above).",
    level: (ratio) => (ratio < 0.2 || ratio > 5 ? "red" : ratio < 0.5 || ratio > 2 ? "amber" : "ok"),
  },
  updateRatio: {
    title: "Update:data",
    panel: "panel-update",
    explain: "log10 of std(lr × grad) / std(weight), mean of the last few measurements. Healthy: about −3, " +
      "each step changes a weight by ~1/1000 (amber outside −4…−2, red outside −5…−1.5).",
    level: (log10) => (log10 < -5 || log10 > -1.5 ? "red" : log10 < -4 || log10 > -2 ? "amber" : "ok"),
  },
};

/** Every check of one run at the statistics `stats`: [{rule, label, text, level}]. */
export function healthChecks(data, stats) {
  if (!stats) return [];
  const units = data.run.config.n_hidden;
  const checks = [];
  for (const layer of stats.layers) {
    checks.push(check("saturation", layer.name, `${formatNum(layer.saturation, 2)}%`, layer.saturation));
    checks.push(check("dead", layer.name, formatInt(layer.dead), layer.dead, units));
  }
  const [first, last] = [stats.layers[0], stats.layers.at(-1)];
  if (stats.layers.length > 1 && first.grad_std > 0) {
    const ratio = last.grad_std / first.grad_std;
    checks.push(check("gradientFlow", `${last.name} / ${first.name}`, `${formatNum(ratio, 2)}×`, ratio));
  }
  for (const weight of data.run.layers.weights) {
    const ratio = data.get(`update_to_data/${weight}`).recentMean(stats.step, UPDATE_RATIO_POINTS);
    if (ratio !== null) checks.push(check("updateRatio", weight, formatNum(ratio, 2), ratio));
  }
  return checks;
}

function check(rule, label, text, ...values) {
  return { rule, label, text, level: RULES[rule].level(...values) };
}

/** The badges of every run compared: rows [{tag, step, checks}] (A first). Built once per set of
 * checks, then updated in place as the numbers change. */
export function renderHealth(container, rows) {
  const structure = rows.map(({ tag, checks }) => `${tag}:${checks.map((c) => `${c.rule}/${c.label}`)}`).join("|");
  buildOnce(container, structure, () => rows.map(healthRow));
  const badges = container.querySelectorAll(".badge");
  const shown = rows.flatMap(({ step, checks }) => grouped(checks).map((c) => [c, step]));
  shown.forEach(([c, step], i) => showCheck(badges[i], c, step));
}

const grouped = (checks) => Object.keys(RULES).flatMap((rule) => checks.filter((c) => c.rule === rule));

/** One row of badges for a run, grouped by check. */
function healthRow({ tag, checks }) {
  const groups = Object.entries(RULES).map(([rule, { title }]) => {
    const badges = checks.filter((c) => c.rule === rule).map(badge);
    if (!badges.length) return null;
    return el("div", { className: "badge-group" }, el("span", { className: "badge-group-title", textContent: title }), ...badges);
  });
  return el("div", { className: "health-row" }, el("span", { className: `run-chip run-${tag}`, textContent: tag }), ...groups);
}

function badge(c) {
  return el(
    "a",
    { className: "badge", href: `#${RULES[c.rule].panel}` },
    el("span", { className: "badge-label", textContent: c.label }),
    el("span", { className: "badge-value" }),
  );
}

function showCheck(badge, c, step) {
  badge.className = `badge ${c.level}`;
  const verdict = c.level === "ok" ? "healthy" : c.level;
  badge.title = `${c.label}: ${c.text} at step ${formatInt(step)} (${verdict}).\n${RULES[c.rule].explain}`;
  setText(badge.lastChild, c.text);
}
