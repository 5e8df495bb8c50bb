// The "What if…" form: the settings of the comparison run. It shows B's settings (or A's when there
// is no B); what differs from A is marked, and Apply (or the BatchNorm switch, at once) starts a
// run paired with A that changes exactly those settings.

import { $, describeSettings, formatSetting } from "./util.js";

const FIELDS = ["gain", "init", "batchnorm", "last_layer_scale", "n_layers", "n_hidden", "steps", "seed"];
const NUMERIC = new Set(["gain", "last_layer_scale", "n_layers", "n_hidden", "steps", "seed"]);

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
    this.base = null; // A's config: what the changes are counted against
    this.shown = null; // the config the form was filled with (B's, or A's): nothing new until edited
    this.gainNumber = $("set-gain-number");
    this.gain = null; // exact: the slider and the number box round it (5/3 stays 5/3)
    this.form.addEventListener("input", (e) => this.onInput(e));
    this.form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.apply();
    });
    this.form.elements.batchnorm.addEventListener("change", () => this.apply());
    for (const preset of this.form.querySelectorAll("[data-gain]")) {
      preset.addEventListener("click", () => this.setGain(Number(preset.dataset.gain)));
    }
    $("btn-reset").addEventListener("click", () => this.show(this.base, this.base));
  }

  /** Show `config` (B's, or A's) with its differences from `base` (A's) marked. */
  show(config, base) {
    this.base = base;
    this.shown = config;
    for (const name of FIELDS) {
      const input = this.form.elements[name];
      if (input.type === "checkbox") input.checked = config[name];
      else input.value = config[name];
    }
    this.setGain(config.gain);
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

  /** The form's settings. */
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

  /** The settings that differ from `config`'s. */
  differencesFrom(config) {
    if (!config) return {};
    const changed = Object.entries(this.values()).filter(([name, value]) => value !== null && !same(value, config[name]));
    return Object.fromEntries(changed);
  }

  /** What the paired run changes: the settings that differ from A's, as the API's config overrides. */
  changes() {
    return this.differencesFrom(this.base);
  }

  refresh() {
    const changes = this.changes();
    $("gain-value").textContent = this.gain === null ? "–" : formatSetting(this.gain);
    for (const name of FIELDS) {
      this.form.elements[name].closest(".setting, label").classList.toggle("changed", name in changes);
    }
    const count = Object.keys(changes).length;
    $("settings-diff").textContent = count ? `Differs from A: ${describeSettings(changes)}` : "Same settings as A.";
    $("btn-apply").disabled = !this.canApply();
  }

  /** Something new to start: it differs from A, and was edited since the form was filled (unedited,
   * it is B, which already runs), and every field is valid. */
  canApply() {
    const edited = Object.keys(this.differencesFrom(this.shown)).length > 0;
    return edited && Object.keys(this.changes()).length > 0 && this.form.checkValidity();
  }

  async apply() {
    if (!this.form.checkValidity()) {
      this.form.reportValidity();
      return;
    }
    if (!this.canApply()) return;
    $("btn-apply").disabled = true;
    try {
      await this.onApply(this.changes());
    } finally {
      this.refresh();
    }
  }
}
