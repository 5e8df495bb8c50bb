// The "What if…" form: one change to the first shown run's settings starts a paired run (its seed and
// minibatches, that setting different), overlaid beside it. What differs is marked as you edit.

import { $, describeSettings, formatSetting } from "./util.js";

const FIELDS = ["gain", "init", "batchnorm", "bn_variance", "batch_order", "last_layer_scale", "n_layers", "n_hidden", "steps", "lr", "seed"];
const NUMERIC = new Set(["gain", "last_layer_scale", "n_layers", "n_hidden", "steps", "lr", "seed"]);

/** Equal settings; numbers within rounding (a gain typed as 1.6666666667 is 5/3). */
function same(a, b) {
  if (typeof a !== "number" || typeof b !== "number") return a === b;
  return Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(b));
}

export class SettingsForm {
  /** onApply(changes) starts the paired run; it resolves when the request is done. */
  constructor(onApply) {
    this.form = $("settings");
    this.onApply = onApply;
    this.base = null; // {id, config}: the run the changes are counted against
    this.gainNumber = $("set-gain-number");
    this.gain = null; // exact: the slider and the number box round it (5/3 stays 5/3)
    this.form.addEventListener("input", (e) => this.onInput(e));
    this.form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.apply();
    });
    $("btn-reset").addEventListener("click", () => this.base && this.show(this.base));
  }

  /** Fill the form with a run's settings ({id, config}) when the first shown run changed. */
  follow(run) {
    if (!run?.config || run.id === this.base?.id) return;
    this.show({ id: run.id, config: run.config });
  }

  show(base) {
    this.base = base;
    for (const name of FIELDS) {
      const input = this.form.elements[name];
      if (input.type === "checkbox") input.checked = base.config[name];
      else input.value = base.config[name];
    }
    this.setGain(base.config.gain);
  }

  setGain(gain) {
    this.gain = gain;
    this.form.elements.gain.value = gain;
    this.gainNumber.value = Number(gain.toFixed(4));
    this.refresh();
  }

  onInput(event) {
    if (event.target === this.gainNumber) {
      this.gain = this.gainNumber.value === "" ? null : Number(this.gainNumber.value);
      if (this.gain !== null) this.form.elements.gain.value = this.gain;
    } else if (event.target.name === "gain") {
      this.gain = Number(event.target.value);
      this.gainNumber.value = event.target.value;
    }
    this.refresh();
  }

  values() {
    const values = {};
    for (const name of FIELDS) {
      const input = this.form.elements[name];
      if (input.type === "checkbox") values[name] = input.checked;
      else if (NUMERIC.has(name)) values[name] = input.value === "" ? null : Number(input.value);
      else values[name] = input.value;
    }
    values.gain = this.gain;
    return values;
  }

  /** The settings that differ from the base run's, as the API's config overrides. */
  changes() {
    if (!this.base) return {};
    const changed = Object.entries(this.values()).filter(([name, value]) => value !== null && !same(value, this.base.config[name]));
    return Object.fromEntries(changed);
  }

  refresh() {
    const changes = this.changes();
    $("gain-value").textContent = this.gain === null ? "–" : formatSetting(this.gain);
    for (const name of FIELDS) this.form.elements[name].closest(".setting, label").classList.toggle("changed", name in changes);
    const count = Object.keys(changes).length;
    $("settings-diff").textContent = !this.base ? "" : count ? `Differs from #${this.base.id}: ${describeSettings(changes)}` : `Same settings as #${this.base.id}.`;
    $("btn-apply").disabled = !count || !this.form.checkValidity();
  }

  async apply() {
    if (!this.form.reportValidity() || !Object.keys(this.changes()).length) return;
    $("btn-apply").disabled = true;
    try {
      await this.onApply(this.base.id, this.changes());
    } finally {
      this.refresh();
    }
  }
}
