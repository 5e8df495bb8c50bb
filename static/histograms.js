// The histogram panels: each layer's histogram at the shown step, every run overlaid (density, so
// runs of different ranges compare), and beside it one layer's histograms over all steps as a
// heatmap (x = step, y = value on one axis for all steps, colour = log density), for one run.

import { api } from "./api.js";
import { Chart, LegendTable, baseLayout, stepMarker } from "./charts.js";
import { META } from "./meta.js";
import { unionOf } from "./panels.js";
import { layerColor, runDash } from "./palette.js";
import { el, formatInt, formatNum, setText } from "./util.js";

const HEATMAP_ROWS = 64;
const HEATMAP_REFRESH_MS = 30_000; // a training run's heatmap is read again at most this often (200 stats reads)

// kind -> what the legend shows; where its histograms are in a statistics event is the server's (META)
const LEGENDS = {
  activations: {
    xTitle: (entry) => `${entry?.kind ?? "activation"} output`,
    cell: (e) => `σ ${formatNum(e.std, 2)} · ${formatNum(e.saturation, 2)}%`, heading: "σ · saturated",
  },
  activation_grads: {
    xTitle: () => "gradient at the output", cell: (e) => `σ ${formatNum(e.grad_std, 3)}`, heading: "gradient σ",
  },
  weight_grads: {
    xTitle: () => "weight gradient", cell: (e) => `σ ${formatNum(e.grad_std, 3)} · ${formatNum(e.grad_to_data, 3)}`,
    heading: "σ · grad:data",
  },
};
const KINDS = Object.fromEntries(Object.entries(META.histogram_kinds).map(([kind, { group, hist, range }]) =>
  [kind, { entries: (stats) => stats[group].filter((e) => e[hist]?.length), hist, range, ...LEGENDS[kind] }]));

/** Density over the evenly spaced bins of [lo, hi]. */
function density(counts, [lo, hi]) {
  const width = (hi - lo) / counts.length || 1;
  const total = counts.reduce((a, b) => a + b, 0);
  return {
    x: counts.map((_, i) => lo + (i + 0.5) * width),
    y: counts.map((count) => (total > 0 ? count / (total * width) : 0)),
  };
}

/** "at step 1,200", or each run's own step when they differ (its nearest recorded statistics), and the
 * runs not yet at the shown step. */
export function stepLabel(view) {
  const shown = view.runs.filter((r) => r.stats);
  const behind = view.runs.filter((r) => r.behind).map((r) => `${r.slot + 1}: not yet at this step`);
  if (!shown.length) return behind.length ? behind.join(" · ") : "no statistics yet";
  const steps = new Set(shown.map((r) => r.stats.step));
  const at = steps.size === 1 ? [`at step ${formatInt(shown[0].stats.step)}`]
    : [`at step ${shown.map((r) => `${r.slot + 1}: ${formatInt(r.stats.step)}`).join(" · ")}`];
  return [...at, ...behind].join(" · ");
}

/** {run id: the step of the statistics drawn} as JSON: what a reader (or a test) checks the panel against. */
export const drawnSteps = (view) => JSON.stringify(Object.fromEntries(view.runs.filter((r) => r.stats).map((r) => [r.id, r.stats.step])));

/** A legend cell of a run with nothing to draw at the shown step. */
export const missingCell = (run) => (run.behind ? "not yet at this step" : run.stats ? "–" : "no statistics yet");

/** Each column's histogram spread over one value axis [lo, hi] of `rows` bins (a source bin's count
 * split by overlap), as log10 of the density; empty cells are null (not drawn). */
export function rebin(layer, rows = HEATMAP_ROWS) {
  const lo = Math.min(...layer.ranges.map((r) => r[0]));
  const hi = Math.max(...layer.ranges.map((r) => r[1]));
  const height = (hi - lo) / rows || 1;
  const z = Array.from({ length: rows }, () => new Array(layer.counts.length).fill(0));
  layer.counts.forEach((counts, column) => {
    const [a, b] = layer.ranges[column];
    const width = (b - a) / counts.length;
    const total = counts.reduce((s, c) => s + c, 0) || 1;
    counts.forEach((count, bin) => {
      if (!count) return;
      const from = a + bin * width;
      const to = from + width;
      for (let row = Math.max(0, Math.floor((from - lo) / height)); row < rows && lo + row * height < to; row += 1) {
        const overlap = width > 0 ? (Math.min(to, lo + (row + 1) * height) - Math.max(from, lo + row * height)) / width : 1;
        if (overlap > 0) z[row][column] += (count * overlap) / total;
      }
    });
  });
  const logDensity = z.map((row) => row.map((mass) => (mass > 0 ? Math.log10(mass / height) : null)));
  return { y: Array.from({ length: rows }, (_, i) => lo + (i + 0.5) * height), z: logDensity };
}

/** The heatmap beside a histogram: one run's one layer over all statistics steps in the view's range. */
class Heatmap {
  constructor(box, kind, redraw) {
    this.kind = kind;
    this.redraw = redraw;
    this.runSelect = el("select", { "aria-label": "heatmap: run" });
    this.layerSelect = el("select", { "aria-label": "heatmap: layer" });
    this.runSelect.addEventListener("change", redraw);
    this.layerSelect.addEventListener("change", redraw);
    const chartDiv = el("div", { className: "chart" });
    box.append(el("div", { className: "heatmap-tools" }, el("span", { textContent: "over time:" }), this.runSelect, this.layerSelect), chartDiv);
    this.chart = new Chart(chartDiv);
    this.answer = null; // {runId, key, at, data, binned}
    this.fetching = false;
  }

  fill(select, options) {
    const wanted = select.value;
    const signature = JSON.stringify(options);
    if (select.dataset.options !== signature) {
      select.dataset.options = signature;
      select.replaceChildren(...options.map(([value, label]) => el("option", { value, textContent: label })));
    }
    if (options.some(([value]) => value === wanted)) select.value = wanted;
    return select.value;
  }

  draw(view, layers) {
    const runId = Number(this.fill(this.runSelect, view.runs.map((r) => [String(r.id), `run ${r.slot + 1}`])));
    const layer = this.fill(this.layerSelect, layers.map((l) => [l, l]));
    const run = view.runs.find((r) => r.id === runId);
    if (!run || !layer) return;
    const key = `${run.id}|${view.range.start}|${view.range.end}`;
    const stale = !this.answer || this.answer.key !== key || (run.live.producing && Date.now() - this.answer.at > HEATMAP_REFRESH_MS);
    if (stale) this.fetch(run.id, key, view.range);
    // while a new range is read, the run's previous answer stays up (a blank chart would flicker)
    const data = this.answer?.runId === run.id ? this.answer.data.layers[layer] : null;
    const binned = data?.steps.length ? this.binned(layer, data) : null;
    this.chart.draw(`${key}|${layer}|${this.answer?.at}|${view.step}|${run.slot}`, () => ({
      traces: binned ? [{ type: "heatmap", x: data.steps, ...binned, colorscale: "Viridis", zsmooth: false,
        colorbar: { title: { text: "log10 density", side: "right" }, thickness: 10 },
        hovertemplate: `step %{x}<br>value %{y:.3g}<br>log10 density %{z:.2f}<extra></extra>` }] : [],
      layout: baseLayout({ margin: { l: 52, r: 8, t: 8, b: 36 }, xaxis: { title: { text: "step", standoff: 4 } },
        yaxis: { title: { text: "value" } }, shapes: view.step === null ? [] : [stepMarker(view.step)] }),
    }));
  }

  /** The rebinned layer, kept with the answer: a new shown step then only moves the marker (Plotly
   * redraws a trace whose arrays are the same objects without recomputing it). */
  binned(layer, data) {
    this.answer.binned ??= new Map();
    if (!this.answer.binned.has(layer)) this.answer.binned.set(layer, rebin(data));
    return this.answer.binned.get(layer);
  }

  async fetch(runId, key, range) {
    if (this.fetching) return;
    this.fetching = true;
    try {
      const data = await api.get(`/api/runs/${runId}/histograms?kind=${this.kind}&start=${range.start}&end=${range.end}&max_steps=200`);
      this.answer = { runId, key, at: Date.now(), data };
      this.redraw();
    } catch {
      this.answer = { runId, key, at: Date.now(), data: { layers: {} } }; // the run went away: the run list will notice
    } finally {
      this.fetching = false;
    }
  }
}

function histogramPanel(section, kind, context) {
  const spec = KINDS[kind];
  const chart = new Chart(section.querySelector(".chart"));
  const atStep = section.querySelector(".at-step");
  const legend = new LegendTable(section.querySelector(".legend"), context.redraw);
  const heatmap = new Heatmap(section.querySelector(".heatmap-box"), kind, context.redraw);
  function draw(view) {
    const entriesOf = (run) => (run.stats ? spec.entries(run.stats) : []);
    const perRun = view.runs.map((run) => entriesOf(run).map((e) => e.name));
    const layers = unionOf(perRun);
    setText(atStep, stepLabel(view));
    atStep.dataset.steps = drawnSteps(view);
    const statsKey = view.runs.map((r) => `${r.slot}:${r.id}:${r.stats?.step}:${r.behind}`).join(",");
    const first = view.runs.find((r) => r.stats);
    chart.draw(`${statsKey}|${legend.key}`, () => ({
      traces: view.runs.flatMap((run, r) => entriesOf(run).map((entry, i) => ({
        ...density(entry[spec.hist], entry[spec.range]), type: "scatter", mode: "lines",
        name: `run ${run.slot + 1} ${entry.name}`,
        line: { color: layerColor(run.slot, i, perRun[r].length), width: 1.6, dash: runDash(run.slot) },
        hovertemplate: `run ${run.slot + 1} ${entry.name}<br>%{x:.3g}: %{y:.3g}<extra></extra>`,
        visible: legend.shows(entry.name),
      }))),
      layout: baseLayout({
        xaxis: { title: { text: spec.xTitle(first && entriesOf(first)[0]), standoff: 4 }, exponentformat: "e" },
        yaxis: { title: { text: "density" } },
      }),
    }));
    legend.render(view.runs, layers, (r, layer) => {
      const entry = entriesOf(view.runs[r]).find((e) => e.name === layer);
      return entry ? spec.cell(entry) : missingCell(view.runs[r]);
    }, spec.heading);
    heatmap.draw(view, layers);
  }
  return { section, draw };
}

export const HISTOGRAMS = {
  "panel-activations": (s, c) => histogramPanel(s, "activations", c),
  "panel-act-grads": (s, c) => histogramPanel(s, "activation_grads", c),
  "panel-weight-grads": (s, c) => histogramPanel(s, "weight_grads", c),
};
