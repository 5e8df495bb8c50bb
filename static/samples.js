// The samples box: names from every shown run's current weights with one seed, side by side, each
// marked new (not in the training split) or seen in training; an optional prefix they all start with.

import { api } from "./api.js";
import { runColor } from "./palette.js";
import { $, el, formatInt } from "./util.js";

export class SamplesBox {
  /** runs() gives the shown runs now: [{slot, label, live}]. */
  constructor(runs, notify) {
    this.form = $("samples-form");
    this.runs = runs;
    this.notify = notify;
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.sample();
    });
  }

  async sample() {
    if (!this.form.reportValidity()) return;
    const { n, temperature, prefix } = this.form.elements;
    const seed = Math.floor(Math.random() * 2 ** 31); // one seed for every run: the same dice, different nets
    const query = new URLSearchParams({ n: n.value, temperature: temperature.value, seed, prefix: prefix.value });
    const button = this.form.querySelector("button");
    button.disabled = true;
    try {
      const runs = this.runs();
      const answers = await Promise.all(runs.map(({ live }) =>
        live.run.source === "trainer" ? api.get(`/api/runs/${live.run.id}/samples?${query}`).catch((err) => ({ error: err.message })) : { error: "a watched run: its network lives in the process that watches it" }));
      $("samples").replaceChildren(...runs.map((run, i) => column(run, answers[i])));
      $("samples-step").textContent = `seed ${seed}`;
    } catch (err) {
      this.notify(err.message, "error");
    } finally {
      button.disabled = false;
    }
  }
}

function column({ slot, label }, answer) {
  const heading = el("h3", {}, el("span", { className: "slot-chip", textContent: String(slot + 1), style: `background:${runColor(slot)}` }),
    el("span", { textContent: answer.error ? label : `${label} · step ${formatInt(answer.step)}` }));
  if (answer.error) return el("div", { className: "samples-column" }, heading, el("p", { className: "muted", textContent: answer.error }));
  const novel = answer.samples.filter((s) => s.novel).length;
  const names = answer.samples.map((s) =>
    el("li", { className: s.novel ? "novel" : "seen", title: s.novel ? "new: not in the training set" : "seen in training" },
      el("span", { className: "name", textContent: s.name || "(empty)" }),
      el("span", { className: "tag", textContent: s.novel ? "new" : "seen" })));
  return el("div", { className: "samples-column", style: `border-top-color:${runColor(slot)}` }, heading, el("ul", {}, ...names),
    el("p", { className: "samples-summary", textContent: `${novel} of ${answer.samples.length} new` }));
}
