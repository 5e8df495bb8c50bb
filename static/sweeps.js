// Sweeps make gain live: one run per gain (and BatchNorm on and off), same seed and minibatches,
// trained side by side; the gain buttons and the BatchNorm switch then move the shown run between the
// members at once, at the same step, in every panel — nothing starts, nothing waits.

import { api } from "./api.js";
import { MAX_RUNS } from "./palette.js";
import { buildOnce, el, formatSetting } from "./util.js";

const FAMILY_SETTINGS = ["gain", "batchnorm"];

/** The members of the sweeps over gain or BatchNorm that share `run`'s other settings. */
export function familyOf(run, runs, sweeps) {
  const own = sweeps.find((s) => s.id === run?.sweep_id);
  if (!own || !FAMILY_SETTINGS.includes(own.setting)) return [];
  const rest = (sweep) => JSON.stringify(Object.entries(sweep.config).filter(([key]) => !FAMILY_SETTINGS.includes(key)).sort());
  const ids = new Set(sweeps.filter((s) => FAMILY_SETTINGS.includes(s.setting) && rest(s) === rest(own)).map((s) => s.id));
  return runs.filter((r) => ids.has(r.sweep_id) && r.config);
}

const sameGain = (a, b) => Math.abs(a - b) < 1e-9;

export class Sweeps {
  /** actions: {replace(Map oldId -> newId), select(ids), notify(text, kind), refresh()} */
  constructor(explorer, form, actions) {
    this.explorer = explorer;
    this.form = form;
    this.actions = actions;
    this.base = null; // the config a new sweep starts from: the first shown trainer run's
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.start();
    });
  }

  /** shown: the overlaid runs' RunOut, in slot order. */
  render(shown, runs, sweeps) {
    const focus = shown.find((r) => r.sweep_id !== null && familyOf(r, runs, sweeps).length) ?? null;
    const family = focus ? familyOf(focus, runs, sweeps) : [];
    const trainer = shown.find((r) => r.config);
    if (trainer && this.base?.id !== trainer.id) {
      this.base = { id: trainer.id, config: trainer.config };
      this.form.elements.steps.value = trainer.config.steps;
    }
    const gains = [...new Set(family.map((r) => r.config.gain))].sort((a, b) => a - b);
    const norms = new Set(family.map((r) => r.config.batchnorm));
    const structure = JSON.stringify([focus?.id, family.map((r) => r.id), shown.map((r) => r.id)]);
    buildOnce(this.explorer, structure, () => {
      if (!focus) return [el("p", { className: "hint", textContent: "No shown run belongs to a sweep yet: start one below." })];
      const gainButtons = gains.map((gain) => {
        const b = el("button", { type: "button", textContent: formatSetting(gain), "aria-pressed": String(sameGain(gain, focus.config.gain)) });
        b.addEventListener("click", () => this.moveTo(focus, family, gain, focus.config.batchnorm));
        return b;
      });
      const bn = el("input", { type: "checkbox", role: "switch", className: "switch", id: "sweep-batchnorm", checked: focus.config.batchnorm });
      bn.disabled = norms.size < 2;
      bn.title = bn.disabled ? "this sweep has no members with BatchNorm switched the other way" : "switch every shown member's BatchNorm";
      bn.addEventListener("change", () => this.switchNorm(shown, family, bn.checked));
      const all = el("button", { type: "button", textContent: `Overlay all ${Math.min(family.length, MAX_RUNS)} members` });
      const otherNormLast = (r) => Number(r.config.batchnorm !== focus.config.batchnorm);
      all.addEventListener("click", () =>
        this.actions.select(family.toSorted((a, b) => otherNormLast(a) - otherNormLast(b)).slice(0, MAX_RUNS).map((r) => r.id)));
      return [
        el("p", { className: "hint", textContent: `Run #${focus.id} is one of ${family.length} sweep members: move it without waiting.` }),
        el("div", { className: "gain-buttons", role: "group", "aria-label": "sweep gain" }, el("span", { textContent: "Gain" }), ...gainButtons),
        el("div", { className: "switch-row" }, el("label", { htmlFor: "sweep-batchnorm", textContent: "BatchNorm" }), bn),
        all,
      ];
    });
  }

  /** Show the member with `gain` (and `batchnorm`, when there is one) in the focused run's place. */
  moveTo(focus, family, gain, batchnorm) {
    const matches = family.filter((r) => sameGain(r.config.gain, gain));
    const target = matches.find((r) => r.config.batchnorm === batchnorm) ?? matches[0];
    if (target && target.id !== focus.id) this.actions.replace(new Map([[focus.id, target.id]]));
  }

  /** Every shown member to its twin with BatchNorm `on` (same gain). */
  switchNorm(shown, family, on) {
    const moves = new Map();
    for (const run of shown) {
      if (!family.some((r) => r.id === run.id) || run.config.batchnorm === on) continue;
      const twin = family.find((r) => r.config.batchnorm === on && sameGain(r.config.gain, run.config.gain));
      if (twin) moves.set(run.id, twin.id);
    }
    this.actions.replace(moves);
  }

  async start() {
    const gains = [...this.form.querySelectorAll("input[name=gain]:checked")].map((box) => Number(box.value));
    const norm = this.form.elements.batchnorm.value;
    const norms = norm === "both" ? [true, false] : [norm === "on"];
    if (!this.form.reportValidity()) return;
    const shared = Object.entries(this.base?.config ?? {}).filter(([key]) => !FAMILY_SETTINGS.includes(key));
    const config = { ...Object.fromEntries(shared), steps: Number(this.form.elements.steps.value) };
    // one grid: the gains x BatchNorm on and off, every member training at once, in lockstep
    const vary = {};
    if (gains.length >= 2) vary.gain = gains;
    if (norms.length === 2) vary.batchnorm = norms;
    if (!Object.keys(vary).length) {
      this.actions.notify("Pick at least two gains, or BatchNorm on and off.", "error");
      return;
    }
    const body = { config: { ...config, ...(vary.gain ? {} : { gain: gains[0] }), ...(vary.batchnorm ? {} : { batchnorm: norms[0] }) }, vary };
    const button = this.form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const made = await api.post("/api/sweeps", body);
      await this.actions.refresh();
      this.actions.select(made.runs.slice(0, MAX_RUNS));
      this.actions.notify(`Started a sweep of ${made.runs.length} runs: they train together, step for step.`, "ok");
    } catch (err) {
      this.actions.notify(err.message, "error");
    } finally {
      button.disabled = false;
    }
  }
}
