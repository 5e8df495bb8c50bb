// The top of the page: the connection, the legend of the runs drawn (each a chip that hides its lines), and
// the step bar (the scrubber, and where each shown run is and at which step its at-step panels draw it).

import { META } from "./meta.js";
import { runColor } from "./palette.js";
import { $, buildOnce, describeSettings, el, formatInt, setText } from "./util.js";

/** How each run differs from the first shown one: its legend name. */
export function labelOf(live, first) {
  const run = live.run;
  if (live === first || !run.config || !first.run.config) return `#${run.id} ${run.name}`;
  const differs = Object.fromEntries(Object.entries(run.config).filter(([key, value]) => first.run.config[key] !== value));
  return `#${run.id} ${Object.keys(differs).length ? describeSettings(differs) : "same settings"}`;
}

export function renderConnection(view, reachable) {
  const streamed = view.lives.filter((l) => l.wantStream);
  const down = !reachable ? "offline: the server does not answer" : streamed.some((l) => !l.connected) ? "reconnecting…" : null;
  const text = down ?? (streamed.length ? "live" : "up to date");
  const node = $("connection");
  setText(node, text);
  node.classList.toggle("offline", Boolean(down));
}

/** The legend of the runs drawn: colour, number and what differs from the first; a button hides one. */
export function renderChips(view, hidden, redraw) {
  const chips = $("run-chips");
  const lives = view.lives;
  const first = lives[0];
  const structure = JSON.stringify(lives.map((l) => [l.run.id, labelOf(l, first), hidden.has(l.run.id)]));
  buildOnce(chips, structure, () => lives.map((live) => {
    const slot = view.slots.get(live.run.id);
    const off = hidden.has(live.run.id);
    const chip = el("button", { type: "button", className: "run-chip", "aria-pressed": String(!off),
      title: off ? "show this run's lines" : "hide this run's lines", style: `--run:${runColor(slot)}` },
    el("span", { className: "slot-chip", textContent: String(slot + 1), style: `background:${runColor(slot)}` }),
    el("span", { className: "chip-label", textContent: labelOf(live, first) }),
    el("span", { className: "chip-status" }));
    chip.addEventListener("click", () => {
      off ? hidden.delete(live.run.id) : hidden.add(live.run.id);
      redraw();
    });
    return chip;
  }));
  chips.querySelectorAll(".chip-status").forEach((node, i) => {
    const run = lives[i].run;
    node.className = `chip-status status status-${run.status}`;
    setText(node, META.broken.includes(run.status) ? `${run.status} at ${formatInt(run.step)}` : run.status);
  });
}

export function renderScrubber(view, follow) {
  const scrubber = $("step-scrubber");
  const reached = Math.max(0, ...view.lives.map((l) => l.run.step));
  scrubber.max = Math.max(0, reached - 1);
  scrubber.step = view.lives.find((l) => l.run.config)?.run.config.stats_every ?? 1;
  if (follow && view.step !== null) scrubber.value = view.step;
  const label = view.step === null ? "–" : `step ${formatInt(view.step)}${follow ? " · live" : ""}`;
  setText($("step-label"), label);
  renderWhere(view);
  $("btn-live").disabled = follow;
}

/** Where each shown run is, and at which step its at-step panels draw it: why the runs are compared at
 * the shown step (matched: the newest step every run has statistics for). */
function renderWhere(view) {
  const where = $("step-where");
  const structure = JSON.stringify(view.runs.map((r) => r.slot));
  buildOnce(where, structure, () => view.runs.map((run) => el("span", { className: "where", dataset: { run: String(run.id) } },
    el("span", { className: "slot-chip", textContent: String(run.slot + 1), style: `background:${runColor(run.slot)}` }),
    el("span", { className: "where-text" }))));
  where.querySelectorAll(".where").forEach((node, i) => {
    const run = view.runs[i];
    const drawn = run.behind ? "not yet at this step" : run.stats ? `drawn at ${formatInt(run.stats.step)}${run.exact ? "" : " (reading…)"}`
      : view.step === null || !run.live.latestStats ? "no statistics yet" : "reading…";
    node.dataset.drawn = run.stats && !run.behind ? String(run.stats.step) : "";
    setText(node.lastChild, `at step ${formatInt(run.live.run.step)} (${run.live.run.status}) · ${drawn}`);
  });
}
