// The time-series panels: loss, and one line per layer per run for the per-layer series. Every run is
// drawn from its own RunSeries over the view's range at the view's one bucket width (equal footing),
// smoothed by the chart's own EMA span in steps, with the shown step marked.
//
// view = {runs: [{slot, id, live, label, stats}], range: {start, end}, step, key}
// Only slot numbers and server-made layer names reach Plotly; run names stay in DOM text.

import { Chart, ChartTools, LegendTable, axis, baseLayout, stepMarker } from "./charts.js";
import { layerColor, runColor, runDash, tint } from "./palette.js";
import { smooth } from "./series.js";
import { formatInt, formatNum } from "./util.js";

const part = (section, selector) => section.querySelector(selector);

/** The layers of `group` a run reports, in its order, then any others its series name (a watched run's). */
export function layersOf(live, group, prefix) {
  const named = live.series ? live.series.names().filter((n) => n.startsWith(`${prefix}/`)).map((n) => n.slice(prefix.length + 1)) : [];
  const listed = (group && live.run.layers?.[group]) || [];
  return [...new Set([...listed.filter((l) => named.includes(l)), ...named])];
}

/** Every layer any run has, in first-seen order. */
export function unionOf(lists) {
  return [...new Set(lists.flat())];
}

/** x axis over the view's range: the same for every chart, so zooming one zooms all. */
const stepAxis = (range) => ({ title: { text: "step", standoff: 4 }, range: [range.start, range.end], autorange: false });

/** A smoothed line of one series: {x, y} plus its value at `step`. The arrays are copies: Plotly.react
 * redraws a trace only when its arrays are new objects, and a series grows in place. */
function line(series, span, step) {
  const y = span ? smooth(series.steps, series.values, span) : series.values.slice();
  const i = step === null ? -1 : series.indexAt(step);
  return { x: series.steps.slice(), y, at: i < 0 ? null : y[i] };
}

/** A per-layer time-series panel. `parts`: [{prefix, yaxis?}] (a series per layer each, e.g. running
 * mean and var on two subplots); `format(values)`: the legend cell from each part's value at the step. */
function layerPanel(section, { group, parts, layout, format, heading, log = false, context }) {
  const tools = new ChartTools(section, { log }, context.redraw);
  const chart = new Chart(part(section, ".chart"), context.onRelayout);
  const empty = part(section, ".empty");
  const legend = new LegendTable(part(section, ".legend"), context.redraw);
  let drawn = null;
  function draw(view) {
    const key = `${view.key}|${tools.key}|${legend.key}`;
    if (key === drawn) return;
    drawn = key;
    const perRun = view.runs.map((run) => layersOf(run.live, group, parts[0].prefix));
    const layers = unionOf(perRun);
    if (empty) empty.hidden = layers.length > 0;
    section.classList.toggle("is-empty", !layers.length);
    if (section.id === "panel-metrics") section.hidden = !layers.length;
    const lines = new Map(); // "runIndex/layer/part" -> line
    const lineOf = (r, layer, p) => {
      const id = `${r}/${layer}/${p}`;
      if (!lines.has(id)) lines.set(id, line(view.runs[r].live.series.get(`${parts[p].prefix}/${layer}`), tools.span, view.step));
      return lines.get(id);
    };
    chart.draw(key, () => ({
      traces: view.runs.flatMap((run, r) => perRun[r].flatMap((layer, i) => parts.map((p, pi) => {
        const { x, y } = lineOf(r, layer, pi);
        return {
          x, y, type: "scatter", mode: "lines", name: `run ${run.slot + 1} ${layer}`, yaxis: p.yaxis,
          line: { color: layerColor(run.slot, i, perRun[r].length), width: 1.5, dash: runDash(run.slot) },
          hovertemplate: `run ${run.slot + 1} ${layer}: %{y:.3g} at step %{x}<extra></extra>`, visible: legend.shows(layer),
        };
      }))),
      layout: { ...layout(view, tools.log), xaxis: axis(stepAxis(view.range)) },
    }));
    if (!layers.length) return;
    legend.render(view.runs, layers, (r, layer) => {
      if (!perRun[r].includes(layer)) return "–";
      return format(parts.map((_, pi) => lineOf(r, layer, pi).at));
    }, view.step === null ? "layer" : `at ${formatInt(view.step)}`);
  }
  return { section, draw };
}

const yTitle = (text, log) => ({ title: { text }, type: log ? "log" : "linear" });
const number = (digits = 3, suffix = "") => ([value]) => (value === null ? "–" : `${formatNum(value, digits)}${suffix}`);

export function simplePanel(section, group, prefix, title, context, { format = number(), log = false, rangemode } = {}) {
  return layerPanel(section, {
    group, parts: [{ prefix }], format, log, context,
    layout: (view, isLog) => baseLayout({ yaxis: { ...yTitle(title, isLog), rangemode }, shapes: marker(view) }),
  });
}

const marker = (view) => (view.step === null ? [] : [stepMarker(view.step)]);

// ---- loss -------------------------------------------------------------------------------------------

function lossPanel(section, context) {
  const tools = new ChartTools(section, { span: 200, log: true }, context.redraw);
  const chart = new Chart(part(section, ".chart"), context.onRelayout);
  function draw(view) {
    chart.draw(`${view.key}|${tools.key}`, () => ({
      traces: view.runs.flatMap((run) => lossTraces(run, tools.span)),
      layout: baseLayout({
        hovermode: "x",
        xaxis: stepAxis(view.range),
        yaxis: yTitle(tools.log ? "loss (log scale)" : "loss", tools.log),
        ...lossMarks(view),
      }),
    }));
  }
  return { section, draw };
}

function lossTraces({ slot, live }, span) {
  const loss = live.series.get("loss");
  const dev = live.series.get("dev_loss");
  const name = `run ${slot + 1}`;
  const traces = [];
  const steps = loss.steps.slice(); // new arrays: see line()
  if (span) {
    traces.push({ x: steps, y: loss.values.slice(), type: "scatter", mode: "lines", name: `${name} train (bucket means)`,
      line: { color: tint(slot, 0.7), width: 1 }, hoverinfo: "skip" });
  }
  traces.push(
    { x: steps, y: span ? smooth(loss.steps, loss.values, span) : loss.values.slice(), type: "scatter", mode: "lines", name: `${name} train`,
      line: { color: runColor(slot), width: 2, dash: runDash(slot) }, hovertemplate: `${name} train %{y:.4g}<extra></extra>` },
    { x: dev.steps.slice(), y: dev.values.slice(), type: "scatter", mode: "markers", name: `${name} dev`,
      marker: { color: runColor(slot), size: 7, symbol: "diamond" }, hovertemplate: `${name} dev %{y:.4g}<extra></extra>` },
  );
  return traces;
}

/** Learning-rate changes and divergence, from the runs' timelines, as vertical marks; and the step. */
function lossMarks(view) {
  const shapes = marker(view);
  const annotations = [];
  view.runs.forEach(({ slot, live }, r) => {
    for (const event of live.timeline) {
      const text = event.type === "control" && event.action === "lr" ? `${slot + 1}: lr → ${formatNum(event.lr)}`
        : event.type === "status" && event.status === "diverged" ? `${slot + 1} diverged at ${formatInt(event.step)}` : null;
      if (!text) continue;
      shapes.push({ type: "line", xref: "x", yref: "paper", x0: event.step, x1: event.step, y0: 0, y1: 1,
        line: { color: runColor(slot), width: 1, dash: "dot" } });
      annotations.push({ x: event.step, xref: "x", y: 0.98 - 0.07 * (r % 6), yref: "paper", text, showarrow: false,
        xanchor: "left", font: { size: 10, color: runColor(slot) }, bgcolor: "rgba(255,255,255,0.85)" });
    }
  });
  return { shapes, annotations };
}

// ---- the per-layer time series ------------------------------------------------------------------------

function batchnormPanel(section, context) {
  return layerPanel(section, {
    group: "norms", context,
    parts: [{ prefix: "running_mean" }, { prefix: "running_var", yaxis: "y2" }],
    format: ([mean, variance]) => `μ ${formatNum(mean)} · σ² ${formatNum(variance)}`,
    layout: (view, log) => baseLayout({
      grid: { rows: 2, columns: 1, subplots: [["xy"], ["xy2"]], roworder: "top to bottom" },
      yaxis: yTitle("running mean", false),
      yaxis2: axis(yTitle("running var", log)),
      shapes: marker(view),
    }),
  });
}

/** The time-series panels by section id. */
export const TIME_SERIES = {
  "panel-loss": lossPanel,
  "panel-saturation": (s, c) => simplePanel(s, "activations", "saturation", "% saturated", c, { format: number(2, "%"), rangemode: "tozero" }),
  "panel-act-std": (s, c) => simplePanel(s, "activations", "act_std", "activation std", c, { rangemode: "tozero" }),
  "panel-grad-std": (s, c) => simplePanel(s, "activations", "grad_std", "gradient std", c, { log: true }),
  "panel-update": (s, c) => simplePanel(s, "weights", "update_to_data", "log10 update:data", c, { format: number(2) }),
  "panel-grad-data": (s, c) => simplePanel(s, "weights", "grad_to_data", "grad:data", c, { log: true }),
  "panel-batchnorm": batchnormPanel,
  "panel-metrics": (s, c) => simplePanel(s, null, "metric", "value", c),
};
