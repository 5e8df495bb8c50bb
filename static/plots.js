// Plotly building blocks: the two runs' colours, a time-series chart that appends instead of
// redrawing, a histogram chart, and the legend table shown under the per-layer charts.

import { MAX_POINTS } from "./rundata.js";
import { buildOnce, el, setText } from "./util.js";

/* global Plotly */

const HUE = { A: 221, B: 22 }; // A blue, B orange: the same in every panel, the run bar and the badges

const shade = (tag, lightness, alpha = 1) => `hsla(${HUE[tag]}, 85%, ${lightness}%, ${alpha})`;

export const runColor = (tag, alpha = 1) => shade(tag, 50, alpha);

export const darkRunColor = (tag) => shade(tag, 30);

/** Layers of one run share its hue, from light (first layer) to dark (last), so depth reads at a glance. */
export function layerColor(tag, index, count) {
  const depth = count > 1 ? index / (count - 1) : 0.5;
  return shade(tag, Math.round(68 - 40 * depth));
}

const CONFIG = {
  displaylogo: false,
  responsive: true,
  modeBarButtonsToRemove: ["lasso2d", "select2d", "autoScale2d"],
};

const AXIS = { gridcolor: "#e5e7eb", linecolor: "#cbd5e1", zeroline: false, automargin: true, tickfont: { size: 10 } };

/** The layout every chart starts from; `uirevision` keeps a user's zoom while the data updates. */
export function baseLayout(uirevision, overrides = {}) {
  return {
    uirevision,
    margin: { l: 48, r: 12, t: 10, b: 34 },
    paper_bgcolor: "rgba(0,0,0,0)",
    plot_bgcolor: "rgba(0,0,0,0)",
    font: { family: "Inter, system-ui, -apple-system, Segoe UI, sans-serif", size: 11, color: "#334155" },
    showlegend: false,
    hovermode: "x unified",
    hoverlabel: { bgcolor: "rgba(255,255,255,0.95)", bordercolor: "#cbd5e1", font: { size: 11 } },
    ...overrides,
    xaxis: { ...AXIS, ...overrides.xaxis },
    yaxis: { ...AXIS, ...overrides.yaxis },
  };
}

export const axis = (options) => ({ ...AXIS, ...options });

/** The step axis of a time series: over `range` when given (the steps both runs reached), else all. */
export const stepAxis = (range) => ({
  title: { text: "step", standoff: 4 },
  ...(range ? { range, autorange: false } : { autorange: true }),
});

/** A horizontal reference line across the plot, e.g. the healthy -3 of the update:data ratio. */
export const hline = (y, color, dash = "dash") => ({
  type: "line", xref: "paper", x0: 0, x1: 1, y0: y, y1: y, line: { color, width: 1.2, dash },
});

/** Time series that only grow are appended with Plotly.extendTraces; anything else (other traces,
 * a decimated series, a changed layout) is redrawn whole with Plotly.react.
 * A trace is Plotly's trace object plus `series` (a rundata Series) for its x and y. */
export class SeriesChart {
  constructor(div) {
    this.div = div;
    this.signature = null;
    this.drawnLengths = [];
  }

  /** `makeLayout()` is called only when the chart is redrawn whole; `layoutKey` says when it changed. */
  draw(traces, makeLayout, layoutKey) {
    const signature = `${traces.map((t) => `${t.series.key}:${t.visible ?? true}`).join(",")}|${layoutKey}`;
    if (signature === this.signature) {
      this.extend(traces);
      return;
    }
    const plotlyTraces = traces.map(({ series, ...trace }) => ({ ...trace, x: series.steps.slice(), y: series.values.slice() }));
    Plotly.react(this.div, plotlyTraces, makeLayout(), CONFIG);
    this.signature = signature;
    this.drawnLengths = traces.map((t) => t.series.steps.length);
  }

  extend(traces) {
    const update = { x: [], y: [] };
    const indices = [];
    traces.forEach(({ series }, i) => {
      const drawn = this.drawnLengths[i];
      if (series.steps.length <= drawn) return;
      update.x.push(series.steps.slice(drawn));
      update.y.push(series.values.slice(drawn));
      indices.push(i);
      this.drawnLengths[i] = series.steps.length;
    });
    if (indices.length) Plotly.extendTraces(this.div, update, indices, MAX_POINTS);
  }
}

/** A chart redrawn whole (small data: histograms of 50 bins), only when its inputs changed. */
export class WholeChart {
  constructor(div) {
    this.div = div;
    this.inputs = [];
  }

  draw(inputs, makeFigure) {
    if (inputs.length === this.inputs.length && inputs.every((x, i) => x === this.inputs[i])) return;
    this.inputs = inputs;
    const { traces, layout } = makeFigure();
    Plotly.react(this.div, traces, layout, CONFIG);
  }
}

/** The legend of a per-layer chart as a table: one row per layer with both runs' numbers side by
 * side in their colours; clicking a row hides or shows that layer in both runs. */
export class LegendTable {
  constructor(container, onToggle) {
    this.container = container;
    this.onToggle = onToggle;
    this.hidden = new Set();
  }

  /** runs: [{tag, layers}] (the layers that run has in this chart); columns: [{label, cell(run, layer) -> text}]. */
  render(runs, layers, columns) {
    const structure = JSON.stringify([runs.map((r) => [r.tag, r.layers]), layers, columns.map((c) => c.label)]);
    buildOnce(this.container, structure, () => [this.table(runs, layers, columns)]);
    this.container.querySelectorAll("tbody tr").forEach((tr, row) => {
      const layer = layers[row];
      tr.classList.toggle("off", this.hidden.has(layer));
      const cells = tr.querySelectorAll("td.value");
      runs.forEach((run, r) => columns.forEach((column, c) => setText(cells[r * columns.length + c], column.cell(run, layer))));
    });
  }

  table(runs, layers, columns) {
    const headings = runs.flatMap((run) =>
      columns.map((c, i) =>
        el("th", { className: `run-${run.tag}${i === 0 ? " first" : ""}`, textContent: `${run.tag} ${c.label}` })),
    );
    const rows = layers.map((layer) => {
      const swatches = runs.map((run) => {
        const index = run.layers.indexOf(layer);
        const color = index < 0 ? "transparent" : layerColor(run.tag, index, run.layers.length);
        return el("span", { className: "swatch", style: `background:${color}` });
      });
      const values = runs.flatMap((run) => columns.map((_, i) => el("td", { className: `value${i === 0 ? " first" : ""}` })));
      const tr = el("tr", { title: "click to hide or show this layer" },
        el("td", { className: "layer" }, ...swatches, el("span", { textContent: layer })), ...values);
      tr.addEventListener("click", () => {
        this.hidden.has(layer) ? this.hidden.delete(layer) : this.hidden.add(layer);
        this.onToggle();
      });
      return tr;
    });
    return el("table", { className: "legend-table" },
      el("thead", {}, el("tr", {}, el("th", { textContent: "layer" }), ...headings)), el("tbody", {}, ...rows));
  }

  shows(layer) {
    return !this.hidden.has(layer);
  }
}
