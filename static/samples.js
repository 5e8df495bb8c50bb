// The samples box: names from both runs' current weights with the same seed, side by side, each
// marked new (not in the training split) or seen in training.

import { api } from "./api.js";
import { $, el, formatInt } from "./util.js";

export class SamplesBox {
  /** runs() gives the runs to sample from now: [{tag, run}] (A, and B when compared). */
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
    const { n, temperature } = this.form.elements;
    const seed = Math.floor(Math.random() * 2 ** 31); // one seed for both runs: the same dice, different nets
    const query = `n=${n.value}&temperature=${temperature.value}&seed=${seed}`;
    const button = this.form.querySelector("button");
    button.disabled = true;
    try {
      const runs = this.runs();
      const answers = await Promise.all(runs.map(({ run }) => api.get(`/api/runs/${run.id}/samples?${query}`)));
      $("samples").replaceChildren(...runs.map(({ tag, run }, i) => column(tag, run, answers[i])));
      $("samples-step").textContent = `seed ${seed}`;
    } catch (err) {
      this.notify(err.message, "error");
    } finally {
      button.disabled = false;
    }
  }
}

function column(tag, run, answer) {
  const novel = answer.samples.filter((s) => s.novel).length;
  const names = answer.samples.map((s) =>
    el("li", { className: s.novel ? "novel" : "seen", title: s.novel ? "new: not in the training set" : "seen in training" },
      el("span", { className: "name", textContent: s.name || "(empty)" }),
      el("span", { className: "tag", textContent: s.novel ? "new" : "seen" })),
  );
  return el(
    "div",
    { className: `samples-column run-${tag}` },
    el("h3", {}, el("span", { className: `run-chip run-${tag}`, textContent: tag }),
      el("span", { textContent: `#${run.id} ${run.name} · step ${formatInt(answer.step)}` })),
    el("ul", {}, ...names),
    el("p", { className: "samples-summary", textContent: `${novel} of ${answer.samples.length} new` }),
  );
}
