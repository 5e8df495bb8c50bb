// bnscope's dashboard: run A (the picked run) and run B (its newest paired run, or a chosen one),
// both followed live and drawn together in every panel. Events are applied as they arrive; drawing
// is coalesced to at most ~10 frames a second, fewer when drawing is slow, and skips charts off screen.

import { api } from "./api.js";
import { healthChecks, renderHealth } from "./health.js";
import { LiveRun } from "./live.js";
import { createPanels } from "./panels.js";
import { SamplesBox } from "./samples.js";
import { SettingsForm } from "./settings.js";
import { $, buildOnce, describeSettings, el, formatDuration, formatInt, formatNum, setText } from "./util.js";

const FRAME_MS = 100; // at most ~10 redraws a second...
const DRAW_BUDGET = 4; // ...and a wait of 4x the typical draw's cost: drawing takes <= ~20% of a core...
const MAX_FRAME_MS = 1000; // ...but never less than one redraw a second
const RUNS_POLL_MS = 3000; // the run list (new pairs, other tabs' runs, speeds)
const NOTICE_MS = 8000;
const ACTIVE = ["created", "running", "paused"];

const state = {
  runs: [], // as GET /api/runs gives them
  primary: null, // LiveRun of A
  secondary: null, // LiveRun of B, or null
  compareChoice: "auto", // "auto": A's newest pair; "none"; or a run id
  matchSteps: true, // time series over the steps both runs reached (B usually starts later)
  follow: true, // statistics panels show the newest step both runs have
  scrubStep: 0, // the step picked on the scrubber when not following
  shownPair: null, // "A-B" ids the settings form was last filled for
};

const panels = createPanels();
const visiblePanels = new Set();
const settings = new SettingsForm(startPairedRun);
new SamplesBox(comparedRuns, notify);
let drawTimer = null;
let drawMs = 0; // typical cost of a redraw (an EMA: one slow full redraw must not stall the page)
let noticeTimer = null;

// ---- runs: which are A and B ----------------------------------------------------------------------

async function refreshRuns() {
  try {
    state.runs = await api.get("/api/runs");
  } catch (err) {
    notify(`Cannot reach the server: ${err.message}`, "error");
    return;
  }
  const primaryId = state.primary?.id;
  if (!state.runs.some((r) => r.id === primaryId)) {
    const wanted = Number(new URLSearchParams(location.search).get("run"));
    const initial = state.runs.find((r) => r.id === wanted) ?? newestRoot();
    if (initial) selectPrimary(initial.id);
  } else {
    followSecondary();
  }
  renderPickers();
  scheduleDraw();
}

/** The newest run that is not a pair of another: what a user most likely came to look at. */
const newestRoot = () => [...state.runs].reverse().find((r) => r.paired_with === null) ?? state.runs.at(-1);

function runById(id) {
  return state.runs.find((r) => r.id === id) ?? null;
}

/** B: the chosen comparison, else the newest run paired with A, else the run A is paired with. */
function secondaryId() {
  const a = state.primary?.id;
  if (state.compareChoice === "none" || a === undefined) return null;
  if (state.compareChoice !== "auto") return runById(state.compareChoice) ? state.compareChoice : null;
  const pairs = state.runs.filter((r) => r.paired_with === a);
  if (pairs.length) return pairs.at(-1).id;
  return runById(state.primary.data?.run.paired_with ?? runById(a)?.paired_with)?.id ?? null;
}

function selectPrimary(id) {
  state.primary?.close();
  state.primary = startLive(id);
  state.follow = true;
  state.secondary?.close();
  state.secondary = null;
  followSecondary();
  remember();
}

function followSecondary() {
  const id = secondaryId();
  if ((state.secondary?.id ?? null) === id) return;
  state.secondary?.close();
  state.secondary = id === null ? null : startLive(id);
  remember();
}

function startLive(id) {
  const live = new LiveRun(id, scheduleDraw);
  live.start();
  return live;
}

/** Keep A and B in the address, so a reload or a shared link shows the same comparison. */
function remember() {
  const params = new URLSearchParams();
  if (state.primary) params.set("run", state.primary.id);
  if (state.compareChoice !== "auto") params.set("compare", state.compareChoice);
  history.replaceState(null, "", `?${params}`);
}

/** The runs the page compares, loaded: [{tag, live, data}] (A first). */
function comparedLive() {
  return [["A", state.primary], ["B", state.secondary]]
    .filter(([, live]) => live?.data)
    .map(([tag, live]) => ({ tag, live, data: live.data }));
}

function comparedRuns() {
  return comparedLive().map(({ tag, data }) => ({ tag, run: data.run }));
}

async function startPairedRun(changes) {
  const a = state.primary?.data?.run;
  if (!a) return;
  try {
    const run = await api.post("/api/runs", { config: changes, paired_with: a.id });
    state.compareChoice = "auto";
    notify(`Started run #${run.id} beside #${a.id}: ${describeSettings(changes)}.`, "ok");
    await refreshRuns();
  } catch (err) {
    notify(err.message, "error");
  }
}

/** Pause, resume or stop A. The status shown comes from the run's events: the response describes the
 * run before its training thread has acted, and would show the old status over the new one. */
async function control(action) {
  const run = state.primary?.data?.run;
  if (!run) return;
  try {
    await api.post(`/api/runs/${run.id}/${action}`);
  } catch (err) {
    notify(err.message, "error");
  }
}

async function setLearningRate(event) {
  event.preventDefault();
  const run = state.primary?.data?.run;
  const input = $("lr-input");
  if (!run || !input.reportValidity()) return;
  try {
    const changed = await api.patch(`/api/runs/${run.id}`, { lr: Number(input.value) });
    notify(`Learning rate of A set to ${formatNum(changed.lr)} from step ${formatInt(changed.step)} on.`, "ok");
    input.blur();
  } catch (err) {
    notify(err.message, "error");
  }
}

// ---- drawing ----------------------------------------------------------------------------------------

function scheduleDraw() {
  if (drawTimer !== null) return;
  // a hidden tab gets no animation frames: events still apply (bounded), drawing waits until it shows
  const wait = Math.min(MAX_FRAME_MS, Math.max(FRAME_MS, DRAW_BUDGET * drawMs));
  drawTimer = setTimeout(() => requestAnimationFrame(draw), wait);
}

function draw() {
  drawTimer = null;
  const started = performance.now();
  renderRunBar();
  renderRunLegend();
  renderSettings();
  const view = currentView();
  renderScrubber(view);
  if (view) {
    for (const panel of panels) panel.draw(view, visiblePanels.has(panel.section));
    showHealth(view);
  }
  drawMs = 0.8 * drawMs + 0.2 * (performance.now() - started);
}

/** The statistics step the histogram panels show: the scrubber's, or when following, the newest
 * step both runs have reached (B usually trails A), so the two are compared at the same step. */
function statsStep(runs) {
  if (!state.follow) return state.scrubStep;
  const newest = (data) => data.latestStats?.step ?? 0;
  const [a, b] = runs;
  return b && ACTIVE.includes(b.data.run.status) ? Math.min(newest(a.data), newest(b.data)) : newest(a.data);
}

function currentView() {
  const runs = comparedLive();
  if (!runs.length || runs[0].tag !== "A") return null;
  const stats = statsOf(runs, statsStep(runs));
  const matched = state.matchSteps && runs.length > 1;
  return {
    runs: runs.map(({ tag, data }, i) => ({ tag, data, stats: stats[i] })),
    stepRange: matched ? matchedRange(runs) : null,
    uirevision: `${runs.map((r) => r.data.run.id).join("-")}|${matched ? "matched" : "all"}`,
  };
}

/** The steps every compared run has reached, with room to grow while one still trains (the axis
 * then moves in a few jumps rather than at every event, each jump a whole redraw). */
function matchedRange(runs) {
  const reached = Math.max(10, Math.min(...runs.map((r) => r.data.run.step)));
  const training = runs.some((r) => ACTIVE.includes(r.data.run.status));
  return [0, training ? roundUp(1.1 * reached) : reached];
}

/** Each run's statistics at `step`. While some are still being fetched: the newest earlier step every
 * run has at hand, so the runs are still compared at one step; failing that, the nearest there is. */
function statsOf(runs, step) {
  const exact = runs.map(({ live }) => live.statsAt(step));
  if (exact.every(Boolean)) return exact;
  const atHand = runs.map(({ live }) => live.cachedStats().filter((s) => s.step <= step));
  const shared = atHand[0].map((s) => s.step).filter((s) => atHand.every((list) => list.some((t) => t.step === s)));
  if (shared.length) {
    const common = Math.max(...shared);
    return atHand.map((list) => list.find((s) => s.step === common));
  }
  return runs.map(({ data }, i) => exact[i] ?? newestOf(atHand[i]) ?? data.latestStats);
}

const newestOf = (statsList) => statsList.reduce((best, s) => (!best || s.step > best.step ? s : best), null);

/** The next round number (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8 x 10^k) at or above x. */
function roundUp(x) {
  const decade = 10 ** Math.floor(Math.log10(x));
  return [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10].map((m) => m * decade).find((nice) => nice >= x);
}

function renderRunBar() {
  const run = state.primary?.data?.run;
  const status = $("run-status");
  for (const id of ["btn-pause", "btn-resume", "btn-stop"]) $(id).disabled = !run;
  $("connection").hidden = !run;
  if (!run) {
    setText(status, state.runs.length ? "loading" : "no runs");
    return;
  }
  status.textContent = run.status;
  status.className = `status status-${run.status}`;
  status.title = run.message || `run #${run.id} is ${run.status}`;
  $("progress-fill").style.width = `${(100 * run.step) / run.steps}%`;
  $("progress-text").textContent = progressText(run);
  $("btn-pause").disabled = !["running", "created"].includes(run.status);
  $("btn-resume").disabled = !["paused", "interrupted"].includes(run.status);
  $("btn-stop").disabled = ![...ACTIVE, "interrupted"].includes(run.status);
  const lr = $("lr-input");
  if (document.activeElement !== lr) lr.value = Number(run.lr.toPrecision(6));
  lr.disabled = !ACTIVE.includes(run.status);
  const connected = [state.primary, state.secondary].every((live) => !live || live.connected);
  $("connection").textContent = connected ? "live" : "reconnecting…";
  $("connection").classList.toggle("offline", !connected);
}

function progressText(run) {
  const done = `${formatInt(run.step)} / ${formatInt(run.steps)}`;
  if (run.status !== "running" || !run.steps_per_s) return done;
  const eta = (run.steps - run.step) / run.steps_per_s;
  return `${done} · ${formatInt(run.steps_per_s)} steps/s · ETA ${formatDuration(eta)}`;
}

/** Which run is which: tag, colour, name, what B changes, and each one's status and progress. */
function renderRunLegend() {
  const legend = $("run-legend");
  if (!state.runs.length) {
    buildOnce(legend, "no runs", () => {
      const start = el("button", { type: "button", className: "primary", textContent: "Train the default network" });
      start.addEventListener("click", () => api.post("/api/runs", {}).then(refreshRuns, (err) => notify(err.message, "error")));
      return [el("span", { className: "muted", textContent: "No runs yet." }), start];
    });
    return;
  }
  const runs = comparedLive().map(({ tag, data }, i, all) => ({
    tag, run: data.run, differs: tag === "B" ? differences(data.run, all[0].data.run) : null,
  }));
  const structure = JSON.stringify(runs.map(({ tag, run, differs }) => [tag, run.id, run.name, differs]));
  buildOnce(legend, structure, () => {
    const cards = runs.map(runCard);
    const hint = "No comparison yet: change a setting (left) to start a paired run.";
    if (runs.length === 1) cards.push(el("span", { className: "muted", textContent: hint }));
    return cards;
  });
  legend.querySelectorAll(".run-card").forEach((card, i) => {
    const { run } = runs[i];
    const status = card.querySelector(".status");
    status.className = `status status-${run.status}`;
    status.title = run.message || run.status;
    setText(status, run.status);
    setText(card.querySelector(".run-progress"), `${formatInt(run.step)} / ${formatInt(run.steps)}`);
  });
}

/** What B changes relative to A: the server's `differs` when B is A's pair, else compared here. */
function differences(b, a) {
  if (b.paired_with === a.id) return b.differs;
  return Object.fromEntries(Object.entries(b.config).filter(([key, value]) => a.config[key] !== value));
}

function runCard({ tag, run, differs }) {
  const what = differs && (Object.keys(differs).length ? describeSettings(differs) : "same settings");
  const changes = differs === null ? null : el("span", { className: "differs", textContent: what });
  return el(
    "div",
    { className: `run-card run-${tag}` },
    el("span", { className: `run-chip run-${tag}`, textContent: tag }),
    el("span", { className: "run-name", textContent: `#${run.id} ${run.name}`, title: run.name }),
    changes,
    el("span", { className: "status" }),
    el("span", { className: "run-progress" }),
  );
}

function renderPickers() {
  const a = state.primary?.id;
  fillSelect($("run-picker"), state.runs.map((r) => [r.id, runLabel(r)]), a);
  const others = state.runs.filter((r) => r.id !== a).map((r) => [r.id, runLabel(r)]);
  fillSelect($("compare-picker"), [["auto", "newest paired run"], ["none", "nothing"], ...others], state.compareChoice);
}

const runLabel = (run) => `#${run.id} ${run.name} (${run.status})`;

function fillSelect(select, options, selected) {
  const built = buildOnce(select, JSON.stringify(options), () =>
    options.map(([value, label]) => el("option", { value: String(value), textContent: label })),
  );
  if (built || select.value !== String(selected)) select.value = String(selected);
}

/** Fill the form with B's settings (or A's) whenever the pair shown changes. */
function renderSettings() {
  const [a, b] = comparedLive();
  if (!a) return;
  const pair = `${a.data.run.id}-${b?.data.run.id ?? ""}`;
  if (pair === state.shownPair) return;
  state.shownPair = pair;
  settings.show((b ?? a).data.run.config, a.data.run.config);
}

function renderScrubber(view) {
  const steps = state.primary?.data?.statsSteps ?? [];
  const scrubber = $("step-scrubber");
  scrubber.max = Math.max(0, steps.length - 1);
  if (state.follow) scrubber.value = scrubber.max;
  const shown = view?.runs[0].stats?.step;
  $("step-label").textContent = shown === undefined ? "–" : `step ${formatInt(shown)}${state.follow ? " · live" : ""}`;
  $("btn-live").disabled = state.follow;
}

function onScrub() {
  const steps = state.primary?.data?.statsSteps ?? [];
  const index = Number($("step-scrubber").value);
  state.follow = index >= steps.length - 1;
  state.scrubStep = steps[index] ?? 0;
  scheduleDraw();
}

function showHealth(view) {
  const rows = view.runs.map(({ tag, data, stats }) => ({ tag, step: stats?.step ?? 0, checks: healthChecks(data, stats) }));
  renderHealth($("health-rows"), rows);
  const step = view.runs[0].stats?.step;
  setText($("health-step"), step === undefined ? "waiting for statistics" : `at step ${formatInt(step)}`);
}

function notify(text, kind = "info") {
  const notice = $("notice");
  notice.textContent = text;
  notice.className = `notice ${kind}`;
  notice.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => (notice.hidden = true), NOTICE_MS);
}

// ---- wiring -----------------------------------------------------------------------------------------

function wire() {
  $("run-picker").addEventListener("change", (e) => {
    state.compareChoice = "auto"; // a chosen comparison was relative to the previous run
    selectPrimary(Number(e.target.value));
    renderPickers();
  });
  $("compare-picker").addEventListener("change", (e) => {
    const value = e.target.value;
    state.compareChoice = value === "auto" || value === "none" ? value : Number(value);
    followSecondary();
    remember();
    scheduleDraw();
  });
  $("btn-pause").addEventListener("click", () => control("pause"));
  $("btn-resume").addEventListener("click", () => control("resume"));
  $("btn-stop").addEventListener("click", () => control("stop"));
  $("lr-form").addEventListener("submit", setLearningRate);
  $("step-scrubber").addEventListener("input", onScrub);
  $("match-steps").addEventListener("change", (e) => {
    state.matchSteps = e.target.checked;
    scheduleDraw();
  });
  $("btn-live").addEventListener("click", () => {
    state.follow = true;
    scheduleDraw();
  });
  // charts off screen are not drawn; one scrolled into view catches up at the next frame
  const observer = new IntersectionObserver((entries) => {
    for (const entry of entries) entry.isIntersecting ? visiblePanels.add(entry.target) : visiblePanels.delete(entry.target);
    scheduleDraw();
  });
  panels.forEach((panel) => observer.observe(panel.section));
  document.addEventListener("visibilitychange", scheduleDraw);
  // the sticky sidebar and the badges' jump targets sit below the top bar, whose height depends on wrapping
  const topbar = document.querySelector(".topbar");
  const publishHeight = () => document.documentElement.style.setProperty("--topbar-height", `${topbar.offsetHeight}px`);
  new ResizeObserver(publishHeight).observe(topbar);
}

/** A reload or a shared link keeps its comparison (the run itself is read in refreshRuns). */
function restoreComparison() {
  const compare = new URLSearchParams(location.search).get("compare");
  if (compare) state.compareChoice = compare === "none" ? "none" : Number(compare);
}

restoreComparison();
wire();
refreshRuns();
setInterval(refreshRuns, RUNS_POLL_MS);
