// bnscope's dashboard: up to 8 runs overlaid in every panel, each from its own data over one shared
// step range at one resolution (equal footing). The selection lives in the address (/?runs=1,2,3).
// Events are applied as they arrive; drawing is coalesced (a few frames a second, fewer when drawing
// is slow), one chart per task, and skips charts off screen and hidden tabs.

import { api } from "./api.js";
import { deadPanel } from "./deadunits.js";
import { Health } from "./health.js";
import { HISTOGRAMS } from "./histograms.js";
import { LiveRun, PRODUCING } from "./live.js";
import { MAX_RUNS } from "./palette.js";
import { TIME_SERIES } from "./panels.js";
import { RunTable } from "./runtable.js";
import { SamplesBox } from "./samples.js";
import { SettingsForm } from "./settings.js";
import { Sweeps } from "./sweeps.js";
import { SweepView } from "./sweepview.js";
import { showPresets } from "./presets.js";
import { labelOf, renderChips, renderConnection, renderScrubber } from "./topbar.js";
import { $, describeSettings, formatInt } from "./util.js";

const FRAME_MS = 400; // at most 2.5 redraws a second...
const DRAW_BUDGET = 8; // ...and a wait of 8x the typical draw's cost: drawing takes <= ~12% of a core...
const MAX_FRAME_MS = 1500; // ...but at least one redraw every 1.5 s
const RUNS_POLL_MS = 3000; // the run list: new runs, other tabs' changes, runs not streamed
const OFFLINE_POLL_MS = 1000; // while the server is unreachable: notice its return at once
const MAX_STREAMS = 4; // event streams at once (HTTP/1.1: 6 connections a host, and the page needs some)
const MAX_POINTS = 1000; // points a series at most over the shown range: the same for every run
const NOTICE_MS = 8000;
const NICE = [1, 1.5, 2, 3, 5, 7.5]; // the step axis grows through these x 10^k while a run trains

const state = {
  runs: [], // as GET /api/runs gives them
  sweeps: [],
  loaded: false,
  reachable: true,
  selection: [], // run ids overlaid, in slot order
  lives: new Map(), // run id -> LiveRun
  hidden: new Set(), // run ids whose lines are hidden (their chips are pressed off)
  zoom: null, // [start, end] a user zoomed to, or null: the whole run, following it
  matched: true,
  follow: true, // the shown step is the newest statistics (matched across runs)
  scrubStep: 0,
};

const visible = new Set();
let drawTimer = null;
let drawing = false;
let drawAgain = false; // something changed while a frame was being drawn
let drawMs = 0;
let pollTimer = null;
let noticeTimer = null;

const context = { redraw: scheduleDraw, onRelayout };
const panels = [
  ...Object.entries(TIME_SERIES).map(([id, make]) => make($(id), context)),
  ...Object.entries(HISTOGRAMS).map(([id, make]) => make($(id), context)),
  deadPanel($("panel-dead"), context),
];
const health = new Health($("panel-health"), scheduleDraw);
panels.push({ section: $("panel-health"), draw: (view) => health.draw(view) });
const table = new RunTable($("run-table"), {
  toggle, control, rename, remove, setLr, redraw: scheduleDraw,
});
const settings = new SettingsForm(startPairedRun);
const sweeps = new Sweeps($("sweep-explorer"), $("sweep-form"), {
  replace, select: (ids) => select(ids), notify, refresh: refreshRuns,
});
new SamplesBox(() => currentView().runs, notify);
const sweepView = new SweepView($("panel-sweep"), { redraw: scheduleDraw });
panels.push({ section: $("panel-sweep"), draw: (view) => sweepView.draw(view, state.sweeps, state.runs) });
showPresets($("presets"), notify);

// ---- the runs, the selection and the address ---------------------------------------------------------

async function refreshRuns() {
  clearTimeout(pollTimer);
  try {
    [state.runs, state.sweeps] = await Promise.all([api.get("/api/runs"), api.get("/api/sweeps")]);
    state.reachable = true;
  } catch {
    state.reachable = false;
  }
  pollTimer = setTimeout(refreshRuns, state.reachable ? RUNS_POLL_MS : OFFLINE_POLL_MS);
  if (!state.reachable) return scheduleDraw();
  if (!state.loaded) {
    state.loaded = true;
    const asked = (new URLSearchParams(location.search).get("runs") ?? "").split(",").map(Number).filter(Boolean);
    const sweep = state.sweeps.find((s) => s.id === sweepView.id);
    state.selection = asked.length ? asked : sweep ? sweep.runs.slice(0, MAX_RUNS) : defaultSelection();
  }
  const known = new Set(state.runs.map((r) => r.id));
  if (state.selection.some((id) => !known.has(id))) state.selection = state.selection.filter((id) => known.has(id));
  if (!state.selection.length && state.runs.length) state.selection = defaultSelection();
  for (const run of state.runs) state.lives.get(run.id)?.update(run);
  syncLives();
  scheduleDraw();
}

/** The newest run that is no other's pair, with its pairs (or its sweep): what a visitor most likely wants. */
function defaultSelection() {
  const root = state.runs.findLast((r) => r.paired_with === null) ?? state.runs.at(-1);
  if (!root) return [];
  const family = state.runs.filter((r) => r.id === root.id || r.paired_with === root.id);
  return family.slice(0, MAX_RUNS).map((r) => r.id);
}

function select(ids) {
  state.selection = [...new Set(ids)].slice(0, MAX_RUNS);
  syncLives();
  scheduleDraw();
}

function toggle(id) {
  select(state.selection.includes(id) ? state.selection.filter((x) => x !== id) : [...state.selection, id]);
}

/** Put other runs in some runs' places (a sweep's gain or BatchNorm), keeping their slots and colours. */
function replace(moves) {
  if (moves.size) select(state.selection.map((id) => moves.get(id) ?? id));
}

/** One LiveRun per selected run; streams for the first few producing ones; the address follows. */
function syncLives() {
  for (const [id, live] of state.lives) {
    if (!state.selection.includes(id)) {
      live.close();
      state.lives.delete(id);
    }
  }
  for (const id of state.selection) {
    const run = state.runs.find((r) => r.id === id);
    if (run && !state.lives.has(id)) state.lives.set(id, new LiveRun(run, onLiveChange, onStream));
  }
  let streams = 0;
  for (const id of state.selection) {
    const live = state.lives.get(id);
    if (!live) continue;
    const stream = live.producing && streams < MAX_STREAMS;
    streams += stream;
    live.setStreaming(stream);
  }
  applyRange();
  const params = new URLSearchParams(location.search); // the sweep view's own (sweep, measure, mode) stay
  if (state.selection.length) params.set("runs", state.selection.join(","));
  else params.delete("runs");
  const search = params.toString().replaceAll("%2C", ",");
  if (location.search !== (search ? `?${search}` : "")) history.replaceState(null, "", search ? `?${search}` : location.pathname);
}

let reconcileTimer = null;

/** A stream opened or dropped: read the run list at once, so every shown run's status is the server's
 * (a restarted server interrupted them, and no event says so). */
function onStream() {
  clearTimeout(reconcileTimer);
  reconcileTimer = setTimeout(refreshRuns, 100);
}

function onLiveChange(live) {
  if (!live.producing && live.wantStream) syncLives(); // its stream is free for another run
  else if (!state.zoom && live.range && live.run.step >= live.range.end) applyRange(); // the axis grows now, not at the next poll
  scheduleDraw();
}

// ---- the shown range and step ------------------------------------------------------------------------

const shownLives = () => state.selection.map((id) => state.lives.get(id)).filter(Boolean);

function niceCeil(x) {
  const decade = 10 ** Math.floor(Math.log10(x));
  return Math.ceil(NICE.map((m) => m * decade).find((nice) => nice >= x) ?? 10 * decade);
}

/** [start, end) of every time-series chart: a zoom, else up to the step the runs reached (the least
 * of them with matched steps), with room to grow while one trains (the axis moves in a few jumps, each
 * a fresh read of every run at one resolution). */
function viewRange() {
  if (state.zoom) return { start: state.zoom[0], end: state.zoom[1] };
  const lives = shownLives().filter((l) => l.run.step > 0);
  if (!lives.length) return { start: 0, end: 100 };
  const steps = lives.map((l) => l.run.step);
  const reached = state.matched ? Math.min(...steps) : Math.max(...steps);
  const training = lives.some((l) => l.producing);
  return { start: 0, end: training ? niceCeil(Math.max(100, 1.2 * reached)) : Math.max(2, reached) };
}

function applyRange() {
  const range = viewRange();
  for (const live of shownLives()) live.setRange({ ...range, maxPoints: MAX_POINTS });
}

/** The statistics step the panels show: the scrubber's, or the newest every run has (matched). */
function shownStep(lives) {
  if (!state.follow) return state.scrubStep;
  const newest = lives.map((l) => l.latestStats?.step).filter((s) => s !== undefined);
  if (!newest.length) return null;
  return state.matched ? Math.min(...newest) : Math.max(...newest);
}

/** What a run shows at the shown step: `stats` (null: none to draw), `exact` (they are what GET /stats
 * gives at that step; else the nearest at hand stand in while those are read) and `behind` (the run has
 * not reached the step: it is marked "not yet at this step", nothing drawn). */
function atStep(live, step) {
  if (step === null) return { stats: null, exact: true, behind: false };
  const behind = live.run.step <= step;
  const { stats, exact } = live.statsAt(step);
  return { stats: behind ? null : stats, exact, behind };
}

function currentView() {
  const lives = shownLives();
  const slots = new Map(state.selection.map((id, slot) => [id, slot]));
  const loaded = lives.filter((l) => l.series && !state.hidden.has(l.run.id));
  const range = viewRange();
  const step = shownStep(loaded);
  const runs = loaded.map((live) => ({
    slot: slots.get(live.run.id), id: live.run.id, live, label: labelOf(live, lives[0]), ...atStep(live, step),
  }));
  const key = `${range.start}:${range.end}|${step}|${runs.map((r) => `${r.slot}:${r.id}:${r.live.series.version}:${r.live.timeline.length}`)}`;
  return { runs, range, step, key, slots, lives };
}

// ---- actions ---------------------------------------------------------------------------------------------

async function startPairedRun(baseId, changes) {
  try {
    const run = await api.post("/api/runs", { config: changes, paired_with: baseId });
    notify(`Started run #${run.id} beside #${baseId}: ${describeSettings(changes)}.`, "ok");
    await refreshRuns();
    if (state.selection.length < MAX_RUNS) select([...state.selection, run.id]);
  } catch (err) {
    notify(err.message, "error");
  }
}

/** Pause, resume or stop a run; what is shown then comes from its events and the run list. */
async function control(id, action) {
  try {
    await api.post(`/api/runs/${id}/${action}`);
  } catch (err) {
    notify(err.message, "error");
  }
  refreshRuns();
}

async function rename(id, name) {
  try {
    await api.patch(`/api/runs/${id}`, { name });
  } catch (err) {
    notify(err.message, "error");
  }
  refreshRuns();
}

async function setLr(id, lr) {
  try {
    const run = await api.patch(`/api/runs/${id}`, { lr });
    notify(`Learning rate of #${id} set to ${lr} from step ${formatInt(run.step)} on.`, "ok");
  } catch (err) {
    notify(err.message, "error");
  }
}

async function remove(run) {
  if (!confirm(`Delete run #${run.id} "${run.name}" and everything it recorded? This cannot be undone.`)) return;
  try {
    await api.delete(`/api/runs/${run.id}`);
    notify(`Deleted run #${run.id}.`, "ok");
  } catch (err) {
    notify(err.message, "error");
  }
  refreshRuns();
}

async function trainDefault() {
  try {
    const run = await api.post("/api/runs", {});
    await refreshRuns();
    select([run.id]);
  } catch (err) {
    notify(err.message, "error");
  }
}

function onRelayout(event) {
  const from = event["xaxis.range[0]"] ?? event["xaxis.range"]?.[0];
  const to = event["xaxis.range[1]"] ?? event["xaxis.range"]?.[1];
  if (from !== undefined && to !== undefined) state.zoom = [Math.max(0, Math.floor(from)), Math.max(Math.ceil(to), Math.floor(from) + 2)];
  else if (event["xaxis.autorange"]) state.zoom = null;
  else return;
  applyRange();
  scheduleDraw();
}

function notify(text, kind = "info") {
  const notice = $("notice");
  notice.textContent = text;
  notice.className = `notice ${kind}`;
  notice.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => (notice.hidden = true), NOTICE_MS);
}

// ---- drawing ----------------------------------------------------------------------------------------------

function scheduleDraw() {
  if (drawing) {
    drawAgain = true;
    return;
  }
  if (drawTimer !== null) return;
  const wait = Math.min(MAX_FRAME_MS, Math.max(FRAME_MS, DRAW_BUDGET * drawMs));
  drawTimer = setTimeout(() => requestAnimationFrame(draw), wait); // a hidden tab gets no frames: it waits
}

const nextTask = () => new Promise((resolve) => setTimeout(resolve, 0));

/** One frame: the page's text first, then each visible chart in its own task (no long task). */
async function draw() {
  drawTimer = null;
  drawing = true;
  let spent = 0;
  const timed = (work) => {
    const started = performance.now();
    work();
    spent += performance.now() - started;
  };
  try {
    const view = currentView();
    timed(() => renderPage(view));
    for (const panel of panels) {
      if (!visible.has(panel.section) || panel.section.hidden || !view.runs.length) continue;
      await nextTask();
      timed(() => panel.draw(currentView()));
    }
  } finally {
    drawing = false;
    drawMs = 0.8 * drawMs + 0.2 * spent;
    if (drawAgain) {
      drawAgain = false;
      scheduleDraw();
    }
  }
}

function renderPage(view) {
  const empty = state.loaded && !state.runs.length;
  $("empty").hidden = !empty;
  $("dashboard").hidden = empty || !state.loaded;
  renderConnection(view, state.reachable);
  if (empty) return;
  const at = (id) => {
    const run = view.runs.find((r) => r.id === id);
    if (!run || view.step === null) return null;
    return { train: run.live.series.get("loss").valueAt(view.step), dev: run.live.series.get("dev_loss").valueAt(view.step) };
  };
  const live = (id) => state.lives.get(id)?.connected ?? false;
  // a shown run's own state is the freshest (its events); the list's for the others
  table.render(state.runs.map((run) => state.lives.get(run.id)?.run ?? run), view.slots, at, live);
  renderChips(view, state.hidden, scheduleDraw);
  renderScrubber(view, state.follow);
  const shownRuns = view.lives.map((l) => l.run);
  sweeps.render(shownRuns, state.runs, state.sweeps);
  settings.follow(shownRuns.find((r) => r.config));
  $("btn-reset-zoom").hidden = !state.zoom;
}

// ---- wiring ----------------------------------------------------------------------------------------------

function wire() {
  $("step-scrubber").addEventListener("input", (event) => {
    state.follow = false;
    state.scrubStep = Number(event.target.value);
    scheduleDraw();
  });
  $("btn-live").addEventListener("click", () => {
    state.follow = true;
    scheduleDraw();
  });
  $("match-steps").addEventListener("change", (event) => {
    state.matched = event.target.checked;
    applyRange();
    scheduleDraw();
  });
  $("btn-reset-zoom").addEventListener("click", () => onRelayout({ "xaxis.autorange": true }));
  $("btn-train-default").addEventListener("click", trainDefault);
  // charts off screen are not drawn; one scrolled into view catches up at the next frame
  const observer = new IntersectionObserver((entries) => {
    for (const entry of entries) entry.isIntersecting ? visible.add(entry.target) : visible.delete(entry.target);
    scheduleDraw();
  });
  panels.forEach((panel) => observer.observe(panel.section));
  document.addEventListener("visibilitychange", scheduleDraw);
  // the comparison tools start folded on a narrow screen: the charts come first
  if (matchMedia("(max-width: 1100px)").matches) $("sidebar").open = false;
}

wire();
refreshRuns();
