// Health badges and each panel's verdict, from the server's rules (GET /api/health/rules): a rule names
// a measure, its panel and its amber and red ranges; the page measures it at the shown step as
// bnscope.health.measure does and grades it (ok inside amber's range, amber outside it but inside
// red's, red outside red's; not a number: red). No threshold lives here.

import { api } from "./api.js";
import { runColor } from "./palette.js";
import { buildOnce, el, formatInt, formatNum, setText } from "./util.js";

const UPDATE_POINTS = 5; // update:data is judged on the mean of the last few values
const SYMBOL = { ok: "✓", amber: "!", red: "✕" };
const WORD = { ok: "healthy", amber: "needs a look", red: "unhealthy" };

const activations = (run) => run.stats?.activations ?? [];

/** rule id -> (run, step) -> [[label, value, text]] */
const MEASURES = {
  saturation: (run) => activations(run).map((a) => [a.name, a.saturation, `${formatNum(a.saturation, 2)}%`]),
  dead: (run) => activations(run).filter((a) => a.units).map((a) => {
    const pct = (100 * a.dead) / a.units;
    return [a.name, pct, `${formatNum(pct, 2)}%`];
  }),
  activation_std: (run) => activations(run).filter((a) => a.std !== null).map((a) => [a.name, a.std, formatNum(a.std, 2)]),
  gradient_flow: (run) => {
    const [first, last] = [activations(run)[0], activations(run).at(-1)];
    if (activations(run).length < 2 || !first.grad_std || last.grad_std === null) return [];
    const ratio = last.grad_std / first.grad_std;
    return [[`${last.name} / ${first.name}`, ratio, `${formatNum(ratio, 2)}×`]];
  },
  update_to_data: (run, step) => (run.stats?.weights ?? []).flatMap((w) => {
    const value = run.live.series.get(`update_to_data/${w.name}`).recentMean(step, UPDATE_POINTS);
    return value === null ? [] : [[w.name, value, formatNum(value, 2)]];
  }),
};

const inside = ([lo, hi], value) => (lo === null || value >= lo) && (hi === null || value <= hi);
const grade = (rule, value) =>
  Number.isNaN(value) ? "red" : inside(rule.amber, value) ? "ok" : inside(rule.red, value) ? "amber" : "red";

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
      this.rules = (await api.get("/api/health/rules")).rules.filter((rule) => MEASURES[rule.id]);
    } catch (err) {
      this.rules = [];
      this.problem = err.status === 404 ? "This server gives no health rules (GET /api/health/rules): no badges."
        : `Health rules could not be read: ${err.message}`;
    }
    onLoaded();
  }

  /** Every check of every shown run: [{run, rule, label, value, text, level}]. */
  checks(view) {
    return view.runs.flatMap((run) => (this.rules ?? []).flatMap((rule) =>
      MEASURES[rule.id](run, view.step ?? Infinity).map(([label, value, text]) => ({ run, rule, label, value, text, level: grade(rule, value) }))));
  }

  draw(view) {
    const checks = this.checks(view);
    setText(this.card.querySelector(".at-step"), view.step === null ? "waiting for statistics" : `at step ${formatInt(view.step)}`);
    this.drawBadges(view, checks);
    this.drawVerdicts(checks);
  }

  drawBadges(view, checks) {
    const rows = this.card.querySelector(".health-rows");
    const structure = JSON.stringify([this.problem, view.runs.map((r) => [r.slot, r.id, r.live.run.status]),
      checks.map((c) => `${c.run.slot}/${c.rule.id}/${c.label}`)]);
    buildOnce(rows, structure, () => {
      if (this.problem) return [el("p", { className: "muted", textContent: this.problem })];
      return view.runs.map((run) => this.row(run, checks.filter((c) => c.run === run)));
    });
    const badges = rows.querySelectorAll("a.badge");
    checks.forEach((c, i) => badges[i] && this.showBadge(badges[i], c));
  }

  row(run, checks) {
    const status = run.live.run;
    const ended = status.status === "diverged" || status.status === "failed"
      ? el("span", { className: "badge red", textContent: `✕ ${status.status} at step ${formatInt(status.step)}: ${status.message}` }) : null;
    const groups = (this.rules ?? []).map((rule) => {
      const mine = checks.filter((c) => c.rule === rule);
      if (!mine.length) return null;
      return el("div", { className: "badge-group" }, el("span", { className: "badge-group-title", textContent: rule.title }),
        ...mine.map((c) => el("a", { className: "badge", href: `#${rule.panel}` },
          el("span", { className: "badge-label", textContent: c.label }), el("span", { className: "badge-value" }))));
    });
    const chip = el("span", { className: "slot-chip", textContent: String(run.slot + 1), title: run.label, style: `background:${runColor(run.slot)}` });
    return el("div", { className: "health-row" }, chip, ended, ...groups);
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
