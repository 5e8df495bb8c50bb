// Health badges and each panel's verdict. The server judges every stats event by its rules and sends
// the badges with it (`stats.health`: [{rule, label, value, level}]); the rules (GET /api/health/rules)
// give each badge its title, panel and healthy range. No threshold and no measure lives here.

import { api } from "./api.js";
import { drawnSteps, missingCell, stepLabel } from "./histograms.js";
import { META } from "./meta.js";
import { runColor } from "./palette.js";
import { buildOnce, el, formatInt, formatNum, setText } from "./util.js";

const SYMBOL = { ok: "✓", amber: "!", red: "✕" };
const WORD = { ok: "healthy", amber: "needs a look", red: "unhealthy" };

/** How a badge's value reads, by rule. */
const UNIT = { saturation: "%", dead: "%", gradient_flow: "×" };
const valueText = (rule, value) => `${formatNum(value, 2)}${UNIT[rule] ?? ""}`;

function rangeText([lo, hi]) {
  if (lo !== null && hi !== null) return `${formatNum(lo)} to ${formatNum(hi)}`;
  return lo !== null ? `at least ${formatNum(lo)}` : `at most ${formatNum(hi)}`;
}

export class Health {
  constructor(card, onLoaded) {
    this.card = card;
    this.rules = null; // null: not read yet; []: the server has none
    this.problem = "";
    this.load(onLoaded);
  }

  async load(onLoaded) {
    try {
      this.rules = (await api.get("/api/health/rules")).rules;
    } catch (err) {
      this.rules = [];
      this.problem = err.status === 404 ? "This server gives no health rules (GET /api/health/rules): no badges."
        : `Health rules could not be read: ${err.message}`;
    }
    onLoaded();
  }

  /** Every check of every shown run at its shown statistics: [{run, rule, label, value, text, level}]. */
  checks(view) {
    const rules = new Map((this.rules ?? []).map((rule, order) => [rule.id, { rule, order }]));
    const known = (badge) => rules.has(badge.rule);
    const byRule = (a, b) => rules.get(a.rule).order - rules.get(b.rule).order; // the badges are drawn grouped by rule
    return view.runs.flatMap((run) => (run.stats?.health ?? []).filter(known).sort(byRule).map((badge) => ({
      run, rule: rules.get(badge.rule).rule, label: badge.label, value: badge.value,
      text: valueText(badge.rule, badge.value), level: badge.level,
    })));
  }

  draw(view) {
    const checks = this.checks(view);
    const atStep = this.card.querySelector(".at-step");
    setText(atStep, view.step === null ? "waiting for statistics" : stepLabel(view));
    atStep.dataset.steps = drawnSteps(view);
    this.drawBadges(view, checks);
    this.drawVerdicts(checks);
  }

  drawBadges(view, checks) {
    const rows = this.card.querySelector(".health-rows");
    const structure = JSON.stringify([this.problem, view.runs.map((r) => [r.slot, r.id, r.live.run.status, r.behind, !r.stats]),
      checks.map((c) => `${c.run.slot}/${c.rule.id}/${c.label}`), view.runs.map((r) => r.stats?.not_judged ?? [])]);
    buildOnce(rows, structure, () => {
      if (this.problem) return [el("p", { className: "muted", textContent: this.problem })];
      return view.runs.map((run) => this.row(run, checks.filter((c) => c.run === run)));
    });
    const badges = rows.querySelectorAll("a.badge");
    checks.forEach((c, i) => badges[i] && this.showBadge(badges[i], c));
  }

  row(run, checks) {
    const status = run.live.run;
    const ended = META.broken.includes(status.status)
      ? el("span", { className: "badge red", textContent: `✕ ${status.status} at step ${formatInt(status.step)}: ${status.message}` }) : null;
    const groups = (this.rules ?? []).map((rule) => {
      const mine = checks.filter((c) => c.rule === rule);
      if (!mine.length) return null;
      return el("div", { className: "badge-group" }, el("span", { className: "badge-group-title", textContent: rule.title }),
        ...mine.map((c) => el("a", { className: "badge", href: `#${rule.panel}` },
          el("span", { className: "badge-label", textContent: c.label }), el("span", { className: "badge-value" }))));
    });
    const chip = el("span", { className: "slot-chip", textContent: String(run.slot + 1), title: run.label, style: `background:${runColor(run.slot)}` });
    const nothing = checks.length || ended ? null
      : el("span", { className: "muted small", textContent: missingCell(run) === "–" ? "no badges at this step" : missingCell(run) });
    return el("div", { className: "health-row" }, chip, ended, nothing, ...groups, this.notJudged(run));
  }

  /** What the run's statistics show that no rule judges (stats.not_judged: a ReLU's saturation, say), by
   * quantity: said as such, never judged by another kind's rule. */
  notJudged(run) {
    const byQuantity = new Map();
    for (const { quantity, label } of run.stats?.not_judged ?? []) byQuantity.set(quantity, [...(byQuantity.get(quantity) ?? []), label]);
    if (!byQuantity.size) return null;
    const title = (quantity) => this.rules?.find((rule) => rule.id === quantity)?.title ?? quantity;
    return el("div", { className: "badge-group not-judged" },
      el("span", { className: "badge-group-title", textContent: "Not judged" }),
      ...[...byQuantity].map(([quantity, labels]) => el("span", {
        className: "badge not-judged", textContent: `${title(quantity)}: ${labels.join(", ")}`,
        title: "No health rule was calibrated on this kind of layer (or of network), so none judges it: a rule made for " +
          "another kind would misjudge it (half a ReLU's outputs at 0 is normal; tanh's saturation rule would call it red).",
      })));
  }

  showBadge(badge, c) {
    badge.className = `badge ${c.level}`;
    badge.title = `run ${c.run.slot + 1} ${c.label}: ${c.text}, ${WORD[c.level]} (healthy: ${rangeText(c.rule.amber)}; ` +
      `red outside ${rangeText(c.rule.red)}).\n${c.rule.explain}${c.rule.source ? `\nSource: ${c.rule.source}` : ""}`;
    setText(badge.lastChild, `${SYMBOL[c.level]} ${c.text}`);
  }

  /** Each panel's line says how its checks stand now: the worst one, or that all are healthy. */
  drawVerdicts(checks) {
    const byPanel = new Map();
    for (const c of checks) {
      const id = c.rule.panel;
      if (!byPanel.has(id)) byPanel.set(id, []);
      byPanel.get(id).push(c);
    }
    for (const line of document.querySelectorAll(".panel .verdict")) {
      const mine = byPanel.get(line.closest(".panel").id) ?? [];
      line.hidden = !mine.length;
      if (!mine.length) continue;
      const order = { ok: 0, amber: 1, red: 2 };
      const worst = mine.reduce((a, b) => (order[b.level] > order[a.level] ? b : a));
      const bad = mine.filter((c) => c.level !== "ok").length;
      line.className = `verdict ${worst.level}`;
      setText(line, worst.level === "ok"
        ? `${SYMBOL.ok} Now healthy: all ${mine.length} checks inside ${worst.rule.title.toLowerCase()}'s healthy range (${rangeText(worst.rule.amber)}).`
        : `${SYMBOL[worst.level]} Now ${WORD[worst.level]}: ${bad} of ${mine.length} checks outside the healthy range; worst: run ${worst.run.slot + 1} ` +
          `${worst.label} ${worst.text} (healthy: ${rangeText(worst.rule.amber)}).`);
    }
  }
}
