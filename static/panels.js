// The dashboard's panels. Each draws both runs of the view (A, and B when there is a comparison):
// time series against the step, histograms at the statistics step the view shows.
//
// view = {runs: [{tag: "A"|"B", data: RunData, stats: a statistics event or null}],
//         stepRange: [0, last] of the step axes or null for all, uirevision: keeps zoom while it is the same}
// Only "A"/"B" and server-made layer names reach Plotly; run names stay in DOM text.
// draw(view, visible): legends, labels and images are always kept current (cheap, and the page keeps
// its layout); the Plotly charts are drawn only while `visible`.

import { UPDATE_RATIO_POINTS } from "./health.js";
import {
  LegendTable, SeriesChart, WholeChart, axis, baseLayout, darkRunColor, hline, layerColor, runColor, stepAxis,
} from "./plots.js";
import { el, formatInt, formatNum, setText } from "./util.js";

const part = (section, selector) => section.querySelector(selector);

/** What a time-series layout depends on besides its traces. */
const layoutKey = (view) => `${view.uirevision}|${view.stepRange}`;

/** Time-series traces, one per layer per run, coloured by run and shaded by depth. */
function layerTraces(view, legend, layersOf, seriesName, extra = {}) {
  return view.runs.flatMap(({ tag, data }) => {
    const layers = layersOf(data);
    return layers.map((layer, i) => ({
      series: data.get(seriesName(layer)),
      type: "scatter",
      mode: "lines",
      name: `${tag} ${layer}`,
      line: { color: layerColor(tag, i, layers.length), width: 1.5 },
      hovertemplate: `${tag} ${layer} %{y:.3g}<extra></extra>`,
      visible: legend ? legend.shows(layer) : true,
      ...extra,
    }));
  });
}

/** Every layer either run has, in order (runs may differ in depth). */
function unionOf(runs) {
  const all = [];
  for (const { layers } of runs) for (const layer of layers) if (!all.includes(layer)) all.push(layer);
  return all;
}

/** The view's runs, each with the layers it has in one panel. */
const withLayers = (view, layersOf) => view.runs.map((run) => ({ ...run, layers: layersOf(run) }));

/** A legend column with the latest value (the mean of the last `points`) of a series per layer. */
const latestColumn = (label, seriesName, { digits = 3, suffix = "", points = 1 } = {}) => ({
  label,
  cell: (run, layer) => {
    const value = run.data.get(seriesName(layer)).recentMean(Infinity, points);
    return value === null ? "–" : `${formatNum(value, digits)}${suffix}`;
  },
});

/** A per-layer time-series panel with its legend table of the latest values. `series`: one or more
 * [seriesName(layer), extra trace properties], each drawn for every layer (e.g. on a second subplot).
 * A panel whose runs have none of its layers shows its `.empty` note instead. */
function layerSeriesPanel(section, { layersOf, series, columns, layout }) {
  const chart = new SeriesChart(part(section, ".chart"));
  const empty = part(section, ".empty");
  let view = null;
  const legend = new LegendTable(part(section, ".legend"), () => draw(view, true));
  function draw(current, visible) {
    view = current;
    const runs = withLayers(view, (run) => layersOf(run.data));
    const layers = unionOf(runs);
    section.classList.toggle("is-empty", !layers.length);
    if (empty) empty.hidden = layers.length > 0;
    if (!layers.length) return;
    legend.render(runs.filter((run) => run.layers.length), layers, columns);
    if (!visible) return;
    const traces = series.flatMap(([name, extra]) => layerTraces(view, legend, layersOf, name, extra));
    chart.draw(traces, () => layout(view), layoutKey(view));
  }
  return { section, draw };
}

// ---- loss -----------------------------------------------------------------------------------------

function lossPanel(section) {
  const chart = new SeriesChart(part(section, ".chart"));
  const draw = (view, visible) => {
    if (!visible) return;
    const traces = view.runs.flatMap(lossTraces);
    const key = `${layoutKey(view)}|${view.runs.map((r) => r.data.timelineVersion).join()}`;
    chart.draw(traces, () => lossLayout(view), key);
  };
  return { section, draw };
}

function lossTraces({ tag, data }) {
  const line = (series, name, style, extra = {}) => ({
    series: data.get(series), type: "scatter", mode: "lines", name: `${tag} ${name}`,
    line: style, hovertemplate: `${tag} ${name} %{y:.4g}<extra></extra>`, ...extra,
  });
  return [
    line("loss", "train", { color: runColor(tag, 0.22), width: 1 }),
    line("loss_smooth", "train (EMA)", { color: runColor(tag), width: 2.2 }),
    line("dev_loss", "dev", { color: darkRunColor(tag), width: 1.5, dash: "dot" },
      { mode: "lines+markers", marker: { size: 5 } }),
    line("lr", "lr", { color: runColor(tag, 0.45), width: 1, dash: "dash", shape: "hv" }, { yaxis: "y2" }),
  ];
}

/** Learning-rate changes and divergence, from the runs' timelines, as vertical marks. */
function lossMarks(view) {
  const shapes = [];
  const annotations = [];
  for (const { tag, data } of view.runs) {
    for (const event of data.timeline) {
      const text = event.type === "control" && event.action === "lr" ? `${tag}: lr → ${formatNum(event.lr)}`
        : event.type === "status" && event.status === "diverged" ? `${tag} diverged` : null;
      if (!text) continue;
      shapes.push({ type: "line", xref: "x", yref: "paper", x0: event.step, x1: event.step, y0: 0, y1: 1,
        line: { color: runColor(tag, 0.7), width: 1, dash: "dot" } });
      annotations.push({ x: event.step, xref: "x", y: tag === "A" ? 0.98 : 0.9, yref: "paper", text, showarrow: false,
        xanchor: "left", font: { size: 10, color: runColor(tag) }, bgcolor: "rgba(255,255,255,0.8)" });
    }
  }
  return { shapes, annotations };
}

/** The lr axis: every rate the runs used or may decay to (x0.1), with some room. */
function lrRange(view) {
  const rates = view.runs.flatMap(({ data }) => [...data.get("lr").values, data.run.lr]);
  return [Math.log10(Math.min(...rates) * 0.1) - 0.3, Math.log10(Math.max(...rates)) + 0.5];
}

function lossLayout(view) {
  return baseLayout(view.uirevision, {
    margin: { l: 48, r: 52, t: 28, b: 34 },
    showlegend: true,
    legend: { orientation: "h", traceorder: "normal", x: 0, y: 1.01, yanchor: "bottom", font: { size: 11 } },
    xaxis: stepAxis(view.stepRange),
    yaxis: { type: "log", title: { text: "loss (log scale)" } },
    yaxis2: axis({
      type: "log", overlaying: "y", side: "right", showgrid: false, title: { text: "learning rate" },
      range: lrRange(view), dtick: 1, exponentformat: "power",
    }),
    ...lossMarks(view),
  });
}

// ---- time series per layer --------------------------------------------------------------------------

const tanhLayers = (data) => data.run.layers.tanh;
const weightNames = (data) => data.run.layers.weights;
const batchnormLayers = (data) => data.run.layers.batchnorm;

function saturationPanel(section) {
  const name = (layer) => `saturation/${layer}`;
  return layerSeriesPanel(section, {
    layersOf: tanhLayers,
    series: [[name]],
    columns: [latestColumn("saturated", name, { digits: 2, suffix: "%" })],
    layout: (view) => baseLayout(view.uirevision, {
      xaxis: stepAxis(view.stepRange),
      yaxis: { title: { text: "% of |t| > 0.97" }, rangemode: "tozero" },
      shapes: [hline(5, "#d97706"), hline(15, "#dc2626")],
    }),
  });
}

function updateRatioPanel(section) {
  const name = (layer) => `update_to_data/${layer}`;
  return layerSeriesPanel(section, {
    layersOf: weightNames,
    series: [[name]],
    columns: [latestColumn("log10 ratio", name, { points: UPDATE_RATIO_POINTS })],
    layout: (view) => baseLayout(view.uirevision, {
      xaxis: stepAxis(view.stepRange),
      yaxis: { title: { text: "log10 update:data" } },
      shapes: [
        { type: "rect", xref: "paper", x0: 0, x1: 1, y0: -4, y1: -2, fillcolor: "rgba(22,163,74,0.08)", line: { width: 0 } },
        hline(-3, "#0f172a", "solid"),
      ],
    }),
  });
}

function batchnormPanel(section) {
  const mean = (layer) => `running_mean/${layer}`;
  const variance = (layer) => `running_var/${layer}`;
  return layerSeriesPanel(section, {
    layersOf: batchnormLayers,
    series: [[mean], [variance, { yaxis: "y2" }]],
    columns: [latestColumn("mean", mean), latestColumn("var", variance)],
    layout: (view) => baseLayout(view.uirevision, {
      grid: { rows: 2, columns: 1, subplots: [["xy"], ["xy2"]], roworder: "top to bottom" },
      xaxis: stepAxis(view.stepRange),
      yaxis: { title: { text: "running mean" } },
      yaxis2: axis({ title: { text: "running var" } }),
    }),
  });
}

// ---- histograms at the shown statistics step ----------------------------------------------------------

/** Density over the evenly spaced bins of [lo, hi], so runs of different widths compare. */
function density(counts, [lo, hi]) {
  const width = (hi - lo) / counts.length;
  const total = counts.reduce((a, b) => a + b, 0);
  return {
    x: counts.map((_, i) => lo + (i + 0.5) * width),
    y: counts.map((count) => (total > 0 ? count / (total * width) : 0)),
  };
}

/** "at step 1,200", or each run's step when they differ (a run without statistics that far yet). */
function stepLabel(view) {
  const shown = view.runs.filter((r) => r.stats);
  if (!shown.length) return "no statistics yet";
  const steps = new Set(shown.map((r) => r.stats.step));
  if (steps.size === 1) return `at step ${formatInt(shown[0].stats.step)}`;
  return `at step ${shown.map((r) => `${r.tag} ${formatInt(r.stats.step)}`).join(" · ")}`;
}

/** A histogram per layer per run at the view's step. `entries(stats)`: [{name, counts, ...}],
 * `range(stats)`: the bins' [lo, hi]; `columns`: [{label, cell(entry) -> text}] for the legend. */
function histogramPanel(section, { entries, range, columns, xTitle }) {
  const chart = new WholeChart(part(section, ".chart"));
  const atStep = part(section, ".at-step");
  let view = null;
  let toggles = 0; // a legend click must redraw even though the statistics are the same
  const legend = new LegendTable(part(section, ".legend"), () => {
    toggles += 1;
    draw(view, true);
  });
  const entryOf = (run, layer) => run.stats && entries(run.stats).find((e) => e.name === layer);
  const legendColumns = columns.map(({ label, cell }) => ({
    label,
    cell: (run, layer) => (entryOf(run, layer) ? cell(entryOf(run, layer)) : "–"),
  }));
  const figure = (runs) => () => ({
    traces: runs.flatMap((run) =>
      run.layers.map((layer, i) => ({
        ...density(entryOf(run, layer).counts, range(run.stats)),
        type: "scatter",
        mode: "lines",
        name: `${run.tag} ${layer}`,
        line: { color: layerColor(run.tag, i, run.layers.length), width: 1.6 },
        hovertemplate: `${run.tag} ${layer}<br>%{x:.3g}: %{y:.3g}<extra></extra>`,
        visible: legend.shows(layer),
      })),
    ),
    layout: baseLayout(view.uirevision, {
      hovermode: "closest",
      xaxis: { title: { text: xTitle, standoff: 4 }, exponentformat: "e" },
      yaxis: { title: { text: "density" } },
    }),
  });
  function draw(current, visible) {
    view = current;
    const runs = withLayers(view, (run) => (run.stats ? entries(run.stats).map((e) => e.name) : []));
    setText(atStep, stepLabel(view));
    legend.render(runs, unionOf(runs), legendColumns);
    if (visible) chart.draw([view.uirevision, toggles, ...view.runs.map((r) => r.stats)], figure(runs));
  }
  return { section, draw };
}

function activationsPanel(section) {
  return histogramPanel(section, {
    entries: (stats) => stats.layers.map((l) => ({ ...l, counts: l.act_hist })),
    range: (stats) => stats.act_range,
    xTitle: "tanh output",
    columns: [
      { label: "mean", cell: (e) => formatNum(e.mean, 2) },
      { label: "std", cell: (e) => formatNum(e.std, 2) },
      { label: "saturated", cell: (e) => `${formatNum(e.saturation, 2)}%` },
    ],
  });
}

function activationGradientsPanel(section) {
  return histogramPanel(section, {
    entries: (stats) => stats.layers.map((l) => ({ ...l, counts: l.grad_hist })),
    range: (stats) => stats.grad_range,
    xTitle: "gradient at the tanh output",
    columns: [
      { label: "mean", cell: (e) => formatNum(e.grad_mean, 2) },
      { label: "std", cell: (e) => formatNum(e.grad_std, 3) },
    ],
  });
}

function weightGradientsPanel(section) {
  return histogramPanel(section, {
    entries: (stats) => stats.weights.map((w) => ({ ...w, counts: w.grad_hist })),
    range: (stats) => stats.weight_grad_range,
    xTitle: "weight gradient",
    columns: [
      { label: "shape", cell: (e) => e.shape.join("×") },
      { label: "std", cell: (e) => formatNum(e.grad_std, 3) },
      { label: "grad:data", cell: (e) => formatNum(e.grad_to_data, 3) },
    ],
  });
}

// ---- dead units and the |t| > 0.99 image -------------------------------------------------------------

const SATURATED = [248, 250, 252];
const DEAD_COLUMN = [239, 68, 68]; // white for the whole batch: a dead unit, drawn red to stand out
const ACTIVE = [15, 23, 42];

/** The lecture's image: a row per example of the batch, a column per unit, white where |t| > 0.99.
 * `hexRows`: 4 units per hex digit, the first unit in the highest bit. */
function drawSaturationImage(canvas, hexRows, units) {
  const bits = hexRows.map((row) =>
    Array.from({ length: units }, (_, u) => (parseInt(row[u >> 2], 16) >> (3 - (u & 3))) & 1),
  );
  const dead = Array.from({ length: units }, (_, u) => bits.every((row) => row[u] === 1));
  canvas.width = units;
  canvas.height = bits.length;
  const context = canvas.getContext("2d");
  const image = context.createImageData(units, bits.length);
  bits.forEach((row, r) =>
    row.forEach((bit, u) => {
      const [red, green, blue] = !bit ? ACTIVE : dead[u] ? DEAD_COLUMN : SATURATED;
      image.data.set([red, green, blue, 255], (r * units + u) * 4);
    }),
  );
  context.putImageData(image, 0, 0);
}

function saturationFigure(run, layer) {
  const stats = run.stats?.layers.find((l) => l.name === layer);
  const units = run.data.run.config.n_hidden;
  if (!stats) return el("figure", { className: "image" }, el("figcaption", { textContent: `${run.tag}: –` }));
  const canvas = el("canvas", { title: `${run.tag} ${layer}: a row per example, a column per unit; white: |t| > 0.99` });
  drawSaturationImage(canvas, stats.image, units);
  return el(
    "figure",
    { className: `image run-${run.tag}${stats.dead ? " has-dead" : ""}` },
    canvas,
    el("figcaption", { textContent: `${run.tag}: ${formatInt(stats.dead)} dead of ${formatInt(units)}` }),
  );
}

function deadPanel(section) {
  const chart = new SeriesChart(part(section, ".chart"));
  const images = part(section, ".images");
  const atStep = part(section, ".at-step");
  let imagesOf = [];
  function drawImages(view) {
    const stats = view.runs.map((r) => r.stats);
    if (stats.length === imagesOf.length && stats.every((s, i) => s === imagesOf[i])) return;
    imagesOf = stats;
    const runs = withLayers(view, (run) => (run.stats ? run.stats.layers.map((l) => l.name) : []));
    images.replaceChildren(
      ...unionOf(runs).map((layer) =>
        el("div", { className: "image-row" }, el("span", { className: "image-layer", textContent: layer }),
          ...runs.map((run) => saturationFigure(run, layer))),
      ),
    );
  }
  function draw(view, visible) {
    setText(atStep, stepLabel(view));
    drawImages(view);
    if (!visible) return;
    const layout = () => baseLayout(view.uirevision, {
      xaxis: stepAxis(view.stepRange),
      yaxis: { title: { text: "dead units" }, rangemode: "tozero" },
    });
    chart.draw(layerTraces(view, null, tanhLayers, (layer) => `dead/${layer}`), layout, layoutKey(view));
  }
  return { section, draw };
}

// ---- all of them --------------------------------------------------------------------------------------

const PANELS = {
  "panel-loss": lossPanel,
  "panel-activations": activationsPanel,
  "panel-saturation": saturationPanel,
  "panel-act-grads": activationGradientsPanel,
  "panel-weight-grads": weightGradientsPanel,
  "panel-update": updateRatioPanel,
  "panel-batchnorm": batchnormPanel,
  "panel-dead": deadPanel,
};

/** The page's chart panels, each {section, draw(view, visible)}. */
export const createPanels = () => Object.entries(PANELS).map(([id, make]) => make(document.getElementById(id)));
