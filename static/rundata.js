// One run's data in the browser: its time series built from /history and then from live events
// (the same names as app/history.py), its statistics steps, latest statistics and timeline.
// Everything is bounded so a tab left open on a long run does not grow.

export const MAX_POINTS = 4000; // per series; above it the series keeps every other sample
const MAX_STATS_STEPS = 2000; // scrubber positions
const MAX_TIMELINE = 1000;
const MAX_LEVEL = 40;

/** The decimation level of the k-th sample of a series (app/history.py's level_of): its number of
 * trailing zero bits. Keeping levels >= L keeps every 2**L-th sample, the same ones the server keeps. */
function levelOf(ordinal) {
  if (ordinal === 0) return MAX_LEVEL;
  return Math.min(31 - Math.clz32(ordinal & -ordinal), MAX_LEVEL);
}

let nextSeriesId = 1;

/** (step, value) pairs at a fixed cadence, decimated like the server's history: when it holds more
 * than MAX_POINTS it raises its level and keeps only samples of that level, as do later pushes.
 * `key` changes whenever points are dropped, so a chart knows to redraw it whole rather than append. */
export class Series {
  constructor(cadence) {
    this.cadence = cadence;
    this.steps = [];
    this.values = [];
    this.level = 0;
    this.id = nextSeriesId++;
    this.key = `${this.id}.0`;
  }

  /** Take a series from /history as the server decimated it, and go on decimating at its level. */
  load(steps, values) {
    this.steps = steps.slice();
    this.values = values.slice();
    this.level = steps.length > 2 ? Math.max(0, Math.round(Math.log2((steps[1] - steps[0]) / this.cadence))) : 0;
    this.key = `${this.id}.${this.level}`;
  }

  push(step, value) {
    if (value == null || levelOf(Math.floor(step / this.cadence)) < this.level) return;
    const count = this.steps.length;
    if (count && step <= this.steps[count - 1]) return; // already held (e.g. a replayed event)
    this.steps.push(step);
    this.values.push(value);
    while (this.steps.length > MAX_POINTS) this.coarsen();
  }

  /** Mean of the last `count` values at or before `step`; null when there are none. */
  recentMean(step, count) {
    let end = this.steps.length;
    while (end > 0 && this.steps[end - 1] > step) end -= 1;
    const values = this.values.slice(Math.max(0, end - count), end);
    return values.length ? values.reduce((a, b) => a + b, 0) / values.length : null;
  }

  coarsen() {
    this.level += 1;
    const kept = this.steps.map((step) => levelOf(Math.floor(step / this.cadence)) >= this.level);
    this.steps = this.steps.filter((_, i) => kept[i]);
    this.values = this.values.filter((_, i) => kept[i]);
    this.key = `${this.id}.${this.level}`;
  }
}

/** Steps between samples of a series (app/history.py's cadence_of). */
function cadenceOf(name, config) {
  const kind = name.split("/", 1)[0];
  if (kind === "loss" || kind === "lr" || kind === "loss_smooth") return 1;
  if (kind === "update_to_data") return config.update_every;
  if (kind === "dev_loss") return config.dev_every;
  return config.stats_every;
}

const MIN_SMOOTHING_STEPS = 50; // the smoothed loss averages over at least this many steps...
const SMOOTHING_POINTS = 8; // ...and over at least this many kept points of a decimated series

export class RunData {
  constructor(run) {
    this.run = run; // the run as /api/runs describes it, kept current by status/scalars/control events
    this.series = new Map();
    this.statsSteps = [];
    this.latestStats = null;
    this.timeline = [];
    this.timelineVersion = 0;
    this.lastEventId = run.last_event_id; // where the live stream picks up
    this.smoothed = null; // {step, value}: the running EMA of the loss
  }

  static fromHistory(history) {
    const data = new RunData(history.run);
    for (const [name, { steps, values }] of Object.entries(history.series)) data.get(name).load(steps, values);
    data.loadSmoothedLoss();
    history.stats_steps.forEach((step) => data.addStatsStep(step));
    data.latestStats = history.latest_stats;
    history.timeline.forEach((event) => data.addToTimeline(event));
    data.lastEventId = history.last_event_id;
    return data;
  }

  /** The series `name`, created empty when the run has not produced it yet. */
  get(name) {
    let series = this.series.get(name);
    if (!series) {
      series = new Series(cadenceOf(name, this.run.config));
      this.series.set(name, series);
    }
    return series;
  }

  add(name, step, value) {
    this.get(name).push(step, value);
  }

  /** A raw minibatch loss, and the smoothed loss (see smooth). */
  addLoss(step, value) {
    if (value == null) return;
    this.add("loss", step, value);
    this.add("loss_smooth", step, this.smooth(step, value));
  }

  /** The smoothed loss: an EMA over a number of steps rather than points, so it means the same whether
   * the points come every step (live) or decimated (history); longer once the series is decimated
   * (a long run, a wide step axis), where a short one would average too few kept points. */
  smooth(step, value) {
    const previous = this.smoothed;
    const span = Math.max(MIN_SMOOTHING_STEPS, SMOOTHING_POINTS * 2 ** this.get("loss").level);
    const weight = previous ? 1 - Math.exp(-(step - previous.step) / span) : 1;
    this.smoothed = { step, value: previous ? previous.value + weight * (value - previous.value) : value };
    return this.smoothed.value;
  }

  loadSmoothedLoss() {
    const loss = this.get("loss");
    const smoothed = this.get("loss_smooth");
    smoothed.load(loss.steps, loss.steps.map((step, i) => this.smooth(step, loss.values[i])));
  }

  addStatsStep(step) {
    const steps = this.statsSteps;
    if (steps.length && step <= steps[steps.length - 1]) return;
    steps.push(step);
    if (steps.length > MAX_STATS_STEPS) this.statsSteps = steps.filter((_, i) => i % 2 === 0 || i === steps.length - 1);
  }

  addToTimeline(event) {
    this.timeline.push(event);
    if (this.timeline.length > MAX_TIMELINE) this.timeline.splice(0, this.timeline.length - MAX_TIMELINE);
    this.timelineVersion += 1;
  }

  /** One live event, turned into the same series the server records. */
  apply(type, event) {
    const handler = {
      scalars: () => this.applyScalars(event),
      stats: () => this.applyStats(event),
      eval: () => this.applyEval(event),
      status: () => this.applyStatus(event),
      control: () => this.applyControl(event),
    }[type];
    handler?.();
  }

  applyScalars(event) {
    event.loss.forEach((loss, offset) => this.addLoss(event.step + offset, loss));
    if (event.loss.length) this.add("lr", event.step, event.lr);
    const weights = this.run.layers.weights;
    event.ud_steps.forEach((step, i) =>
      event.ud[i].forEach((value, w) => this.add(`update_to_data/${weights[w]}`, step, value)),
    );
    Object.assign(this.run, { step: event.step + event.loss.length, lr: event.lr, steps_per_s: event.steps_per_s });
  }

  applyStats(event) {
    const { step } = event;
    for (const layer of event.layers) {
      for (const key of ["saturation", "dead", "grad_std"]) this.add(`${key}/${layer.name}`, step, layer[key]);
      this.add(`act_mean/${layer.name}`, step, layer.mean);
      this.add(`act_std/${layer.name}`, step, layer.std);
    }
    for (const weight of event.weights) this.add(`grad_to_data/${weight.name}`, step, weight.grad_to_data);
    for (const bn of event.batchnorm) {
      this.add(`running_mean/${bn.name}`, step, bn.mean_of_running_mean);
      this.add(`running_var/${bn.name}`, step, bn.mean_of_running_var);
    }
    this.addStatsStep(step);
    this.latestStats = event;
  }

  applyEval(event) {
    if (event.split === "dev") this.add("dev_loss", event.step, event.loss);
    this.addToTimeline(event);
  }

  applyStatus(event) {
    Object.assign(this.run, { status: event.status, message: event.message, step: event.step });
    if (event.status !== "running") this.run.steps_per_s = 0;
    this.addToTimeline(event);
  }

  applyControl(event) {
    if (event.action === "lr") this.run.lr = event.lr;
    this.addToTimeline(event);
  }
}

