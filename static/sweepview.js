// The sweep view (/?sweep=ID): for one measure, every group of the sweep (members that differ only by
// seed) over time as its mean with a min-max band, or each member; and the effect chart: the swept setting
// on x, the measure at the shown step on y, a line per value of the second setting, the seeds' spread as
// error bars. The values are the server's (GET /api/sweeps/{id}/summary, /history); the address keeps
// the sweep, the measure and the mode.

import { api } from "./api.js";
import { Chart, baseLayout, stepMarker } from "./charts.js";
import { PRODUCING } from "./live.js";
import { runColor, runDash, translucent } from "./palette.js";
import { buildOnce, describeSettings, el, formatInt, formatSetting, setText } from "./util.js";

const POINTS = 400; // points a member's series: every member read over one range at one resolution
const REFRESH_MS = 5000; // the bands of a sweep that trains are read again at most this often
const LOG_AXIS = new Set(["gain", "lr", "last_layer_scale", "bn_eps", "bn_momentum"]);

const groupName = (settings) => describeSettings(settings) || "all";

/** Mean, min and max over the members' values at each step all of them have. */
export function band(series) {
  const length = Math.min(...series.map((s) => s.steps.length));
  const steps = series[0].steps.slice(0, length);
  const at = (i) => series.map((s) => s.values[i]);
  return {
    steps,
    mean: steps.map((_, i) => at(i).reduce((a, b) => a + b, 0) / series.length),
    min: steps.map((_, i) => Math.min(...at(i))),
    max: steps.map((_, i) => Math.max(...at(i))),
  };
}

export class SweepView {
  constructor(section, context) {
    this.section = section;
    this.context = context; // {redraw}
    const params = new URLSearchParams(location.search);
    this.id = Number(params.get("sweep")) || null;
    this.measure = params.get("measure") ?? "loss";
    this.mode = params.get("mode") ?? "bands";
    this.summary = null; // the latest answer of /summary
    this.wantedStep = undefined;
    this.fetching = false;
    this.bands = null; // {key, at, members: {runId: {steps, values}}}
    this.bandsFetching = false;
    this.bandsChart = new Chart(section.querySelector(".sweep-bands"));
    this.effectChart = new Chart(section.querySelector(".sweep-effect"));
    this.measureSelect = section.querySelector("select[name=measure]");
    this.modeSelect = section.querySelector("select[name=mode]");
    this.modeSelect.value = this.mode;
    this.measureSelect.addEventListener("change", () => this.choose({ measure: this.measureSelect.value }));
    this.modeSelect.addEventListener("change", () => this.choose({ mode: this.modeSelect.value }));
    section.hidden = this.id === null;
  }

  choose(change) {
    Object.assign(this, change);
    const params = new URLSearchParams(location.search);
    params.set("measure", this.measure);
    params.set("mode", this.mode);
    history.replaceState(null, "", `?${params}`);
    this.context.redraw();
  }

  /** view: the dashboard's (its shown step); sweeps: GET /api/sweeps. */
  draw(view, sweeps, runs) {
    const sweep = sweeps.find((s) => s.id === this.id);
    if (!sweep) return;
    const step = view.step ?? undefined;
    if (step !== this.summary?.asked) this.fetchSummary(step);
    const summary = this.summary;
    setText(this.section.querySelector(".sweep-title"),
      `Sweep #${sweep.id}: ${Object.entries(sweep.vary).map(([k, v]) => `${k} ∈ {${v.map(formatSetting).join(", ")}}`).join(" × ")}` +
      ` · ${sweep.runs.length} members`);
    if (!summary) return;
    const measures = summary.measures.includes(this.measure) ? summary.measures : [this.measure, ...summary.measures];
    buildOnce(this.measureSelect, JSON.stringify(measures), () => measures.map((m) => el("option", { value: m, textContent: m })));
    this.measureSelect.value = this.measure;
    this.section.querySelector("a.sweep-csv").href = `/api/sweeps/${sweep.id}/summary?format=csv&step=${summary.step}`;
    const producing = sweep.runs.some((id) => PRODUCING.includes(runs.find((r) => r.id === id)?.status));
    const key = `${sweep.id}|${this.measure}|${Math.max(...sweep.runs.map((id) => runs.find((r) => r.id === id)?.step ?? 0))}`;
    if (!this.bands || this.bands.measure !== this.measure || (producing && Date.now() - this.bands.at > REFRESH_MS)) this.fetchBands(sweep, runs, key);
    this.drawBands(summary, view);
    this.drawEffect(summary);
  }

  /** One request in flight, always for the step wanted most recently. */
  async fetchSummary(step) {
    this.wantedStep = step;
    if (this.fetching) return;
    this.fetching = true;
    try {
      while (this.wantedStep !== null) {
        const asked = this.wantedStep;
        this.wantedStep = null;
        const query = asked === undefined ? "" : `?step=${asked}`;
        this.summary = { ...(await api.get(`/api/sweeps/${this.id}/summary${query}`)), asked };
        this.context.redraw();
      }
    } catch (err) {
      this.wantedStep = null;
      setText(this.section.querySelector(".sweep-note"), err.message);
    } finally {
      this.fetching = false;
    }
  }

  async fetchBands(sweep, runs, key) {
    if (this.bandsFetching) return;
    this.bandsFetching = true;
    try {
      const end = Math.max(2, ...sweep.runs.map((id) => runs.find((r) => r.id === id)?.step ?? 0));
      const answers = await Promise.all(sweep.runs.map((id) =>
        api.get(`/api/runs/${id}/history?start=0&end=${end}&max_points=${POINTS}&max_histograms=1&series=${encodeURIComponent(this.measure)}`)));
      const members = {};
      sweep.runs.forEach((id, i) => (members[id] = answers[i].series[this.measure] ?? { steps: [], values: [] }));
      this.bands = { key, at: Date.now(), measure: this.measure, members };
      this.context.redraw();
    } catch (err) {
      setText(this.section.querySelector(".sweep-note"), err.message);
    } finally {
      this.bandsFetching = false;
    }
  }

  drawBands(summary, view) {
    const bands = this.bands;
    if (!bands || bands.measure !== this.measure) return;
    const traces = [];
    summary.groups.forEach((group, g) => {
      const color = runColor(g);
      const series = group.runs.map((id) => bands.members[id]).filter((s) => s?.steps.length);
      if (!series.length) return;
      const name = groupName(group.settings);
      if (this.mode === "members") {
        group.runs.forEach((id, i) => {
          const s = bands.members[id];
          if (s?.steps.length) traces.push({ x: s.steps, y: s.values, type: "scatter", mode: "lines", name: `${name} · #${id}`,
            legendgroup: name, showlegend: i === 0, line: { color, width: 1.2, dash: runDash(i) } });
        });
        return;
      }
      const { steps, mean, min, max } = band(series);
      traces.push(
        { x: steps, y: min, type: "scatter", mode: "lines", line: { width: 0 }, legendgroup: name, showlegend: false, hoverinfo: "skip", name: `${name} min` },
        { x: steps, y: max, type: "scatter", mode: "lines", line: { width: 0 }, fill: "tonexty", fillcolor: translucent(g, 0.2),
          legendgroup: name, showlegend: false, hoverinfo: "skip", name: `${name} max` },
        { x: steps, y: mean, type: "scatter", mode: "lines", line: { color, width: 2 }, legendgroup: name, name: `${name} mean`,
          hovertemplate: `${name}: %{y:.4g} at step %{x} (mean of ${series.length})<extra></extra>` },
      );
    });
    this.bandsChart.draw(`${bands.key}|${bands.at}|${this.mode}|${view.step}`, () => ({
      traces,
      layout: baseLayout({ showlegend: true, legend: { orientation: "h", y: -0.25 }, xaxis: { title: { text: "step" } },
        yaxis: { title: { text: this.measure } }, shapes: view.step === null ? [] : [stepMarker(view.step)] }),
    }));
  }

  drawEffect(summary) {
    const { axis, lines_by: linesBy } = summary;
    const lines = new Map();
    for (const group of summary.groups) {
      const line = linesBy ? group.settings[linesBy] : "all";
      if (!lines.has(line)) lines.set(line, []);
      lines.get(line).push(group);
    }
    const m = this.measure;
    const traces = [...lines.entries()].map(([value, groups], i) => {
      const points = groups.filter((g) => g.mean[m] !== null && g.mean[m] !== undefined)
        .sort((a, b) => (a.settings[axis] > b.settings[axis] ? 1 : -1));
      return {
        x: points.map((g) => g.settings[axis]), y: points.map((g) => g.mean[m]), type: "scatter", mode: "lines+markers",
        name: linesBy ? `${linesBy}=${formatSetting(value)}` : m, line: { color: runColor(i), width: 2 },
        error_y: { type: "data", symmetric: false, array: points.map((g) => g.max[m] - g.mean[m]),
          arrayminus: points.map((g) => g.mean[m] - g.min[m]), visible: true, color: runColor(i) },
        hovertemplate: `${axis}=%{x}: %{y:.4g}<extra></extra>`,
      };
    });
    this.effectChart.draw(`${summary.step}|${m}|${JSON.stringify(summary.groups.map((g) => g.mean[m]))}`, () => ({
      traces,
      layout: baseLayout({ showlegend: Boolean(linesBy), legend: { orientation: "h", y: -0.25 },
        xaxis: { title: { text: axis }, type: LOG_AXIS.has(axis) && traces.every((t) => t.x.every((x) => x > 0)) ? "log" : "linear" },
        yaxis: { title: { text: `${m} at step ${formatInt(summary.step)}` } } }),
    }));
    setText(this.section.querySelector(".sweep-note"),
      `At step ${formatInt(summary.step)}: ${summary.groups.length} groups of ${summary.members.length} members; ` +
      `error bars: the min and max over the seeds of a group.`);
  }
}
