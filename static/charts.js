// Plotly building blocks: the config (nothing that leaves the machine), the base layout, a chart
// redrawn only when its inputs changed, each time-series chart's tools (smoothing, log scale), and
// the legend table under a per-layer chart.

import { runColor } from "./palette.js";
import { buildOnce, el, setText } from "./util.js";

/* global Plotly */

// no Chart Studio, no cloud, no link out; the PNG download stays
const CONFIG = {
  displaylogo: false,
  responsive: true,
  showLink: false,
  showSendToCloud: false,
  showEditInChartStudio: false,
  modeBarButtonsToRemove: ["sendDataToCloud", "editInChartStudio", "lasso2d", "select2d", "autoScale2d"],
};

const AXIS = { gridcolor: "#e5e7eb", linecolor: "#cbd5e1", zeroline: false, automargin: true, tickfont: { size: 10 } };

export function baseLayout(overrides = {}) {
  return {
    margin: { l: 52, r: 12, t: 10, b: 36 },
    paper_bgcolor: "rgba(0,0,0,0)",
    plot_bgcolor: "rgba(0,0,0,0)",
    font: { family: "system-ui, -apple-system, Segoe UI, sans-serif", size: 11, color: "#334155" },
    showlegend: false,
    hovermode: "closest",
    hoverlabel: { bgcolor: "rgba(255,255,255,0.95)", bordercolor: "#cbd5e1", font: { size: 11 } },
    ...overrides,
    xaxis: { ...AXIS, ...overrides.xaxis },
    yaxis: { ...AXIS, ...overrides.yaxis },
  };
}

export const axis = (options) => ({ ...AXIS, ...options });

/** A vertical line at `step` across the plot: the scrubbed step, the same on every chart. */
export const stepMarker = (step) => ({
  type: "line", xref: "x", yref: "paper", x0: step, x1: step, y0: 0, y1: 1, line: { color: "#0f172a", width: 1, dash: "dot" },
});

/** A Plotly chart drawn with Plotly.react only when `key` (a string of everything it shows) changed. */
export class Chart {
  constructor(div, onRelayout = null) {
    this.div = div;
    this.key = null;
    this.onRelayout = onRelayout;
  }

  draw(key, figure) {
    if (key === this.key) return false;
    this.key = key;
    const { traces, layout } = figure();
    Plotly.react(this.div, traces, layout, CONFIG);
    if (this.onRelayout && !this.listening) {
      this.div.on("plotly_relayout", this.onRelayout);
      this.listening = true;
    }
    return true;
  }
}

const SPANS = [0, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000]; // EMA spans in steps

/** A time-series chart's own tools: smoothing (an EMA span in steps, 0 = raw) and a log y axis. */
export class ChartTools {
  constructor(section, { span = 0, log = false } = {}, onChange) {
    const slider = el("input", { type: "range", min: 0, max: SPANS.length - 1, step: 1, value: SPANS.indexOf(span) });
    const shown = el("output", { className: "tool-value" });
    const logBox = el("input", { type: "checkbox", checked: log });
    this.span = span;
    this.log = log;
    const show = () => setText(shown, this.span ? `${this.span} steps` : "raw");
    slider.addEventListener("input", () => {
      this.span = SPANS[Number(slider.value)];
      show();
      onChange();
    });
    logBox.addEventListener("change", () => {
      this.log = logBox.checked;
      onChange();
    });
    show();
    const title = section.querySelector("h2").textContent;
    slider.setAttribute("aria-label", `${title}: smoothing (EMA span in steps)`);
    section.querySelector("header").append(
      el("div", { className: "chart-tools" },
        el("label", { title: "exponential moving average over this many steps, the same for every run and zoom" },
          "smooth ", slider, shown),
        el("label", {}, logBox, " log y")),
    );
  }

  get key() {
    return `${this.span}|${this.log}`;
  }
}

/** The legend of a per-layer chart: a row per layer (its first cell a button that hides or shows the
 * layer in every run), a column per run with its value at the shown step. */
export class LegendTable {
  constructor(container, onToggle) {
    this.container = container;
    this.onToggle = onToggle;
    this.hidden = new Set();
  }

  /** runs: [{slot, label}]; cell(runIndex, layer) -> text. */
  render(runs, layers, cell, heading) {
    const structure = JSON.stringify([runs.map((r) => [r.slot, r.label]), layers, heading]);
    buildOnce(this.container, structure, () => [this.table(runs, layers, heading)]);
    this.container.querySelectorAll("tbody tr").forEach((tr, row) => {
      const layer = layers[row];
      tr.classList.toggle("off", this.hidden.has(layer));
      tr.querySelector("button").setAttribute("aria-pressed", String(!this.hidden.has(layer)));
      tr.querySelectorAll("td.value").forEach((td, r) => setText(td, cell(r, layer)));
    });
  }

  table(runs, layers, heading) {
    const headings = runs.map((run) =>
      el("th", { scope: "col", title: run.label, style: `color:${runColor(run.slot)}` }, el("span", { className: "slot", textContent: String(run.slot + 1) })));
    const rows = layers.map((layer) => {
      const toggle = el("button", { type: "button", className: "layer-toggle", textContent: layer, title: "hide or show this layer in every run" });
      toggle.addEventListener("click", () => {
        this.hidden.has(layer) ? this.hidden.delete(layer) : this.hidden.add(layer);
        this.onToggle();
      });
      return el("tr", {}, el("th", { scope: "row" }, toggle), ...runs.map(() => el("td", { className: "value" })));
    });
    return el("table", { className: "legend-table" },
      el("thead", {}, el("tr", {}, el("th", { scope: "col", textContent: heading }), ...headings)), el("tbody", {}, ...rows));
  }

  shows(layer) {
    return !this.hidden.has(layer);
  }

  get key() {
    return [...this.hidden].join(",");
  }
}
