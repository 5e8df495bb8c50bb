// One run as the page shows it: its series over the view's range (see series.js), its statistics,
// timeline and state, kept current by its event stream while it trains.
//
// Loading a range is two reads when the run is still producing: /history over the range (the one every
// shown run is asked for, so all get the same bucket width), keeping its complete buckets; then a raw
// /history of the newest steps, whose points are folded in. The stream then continues exactly after
// that answer's last event. The run's state is the server's (`run` in each event), never rebuilt here.

import { api } from "./api.js";
import { META } from "./meta.js";
import { RunSeries } from "./series.js";

export const PRODUCING = META.producing; // events may still come
const EVENT_TYPES = META.event_types;
const RAW_POINTS = META.history_max_points; // a raw read of up to this many steps
const TAIL_MARGIN = 256; // steps before the run's step read raw: events in flight during the read
const STATS_CACHE_SIZE = 40; // statistics events kept for scrubbing (~30 kB each)
const STATS_FETCH_MS = 250; // statistics of a run at another step are asked for at most this often
const MAX_STATS_STEPS = 2000;
const MAX_TIMELINE = 1000;
const RETRY_MS = 3000;
const STATE_FIELDS = ["status", "message", "step", "lr", "steps_per_s"]; // RunState: what events carry as `run`

export class LiveRun {
  /** onChange(live): something shown changed; onStream(live): its stream opened or dropped. */
  constructor(run, onChange, onStream) {
    this.run = { ...run }; // RunOut, kept current by the run list and by events' `run`
    this.onChange = onChange;
    this.onStream = onStream;
    this.range = null; // {start, end, maxPoints} wanted
    this.series = null; // RunSeries of the loaded range
    this.loadedKey = null;
    this.loadingKey = null; // the range being read now
    this.statsSteps = [];
    this.latestStats = null;
    this.timeline = [];
    this.seenEventId = 0; // the newest event id applied (from an answer or the stream)
    this.version = 0; // bumped by every change (series, stats, state, timeline)
    this.statsCache = new Map(); // statistics step -> statistics event, oldest first: the stream's
    this.fetchedStats = new Map(); // the same, read with GET /stats: a run far ahead of the shown step streams
    // newer statistics faster than they are read, and must not push out the stand-ins it is drawn with
    this.resolved = new Map(); // a step asked of GET /stats -> the recorded step it answered with
    this.source = null;
    this.wantStream = false;
    this.connected = false;
    this.generation = 0; // the newest load: older ones' answers are dropped
    this.loading = false;
    this.closed = false;
    this.retryTimer = null;
    this.wantedStep = null;
    this.fetchingStats = false;
    this.lastFetch = -Infinity;
  }

  get producing() {
    return PRODUCING.includes(this.run.status);
  }

  /** Show `range` ({start, end, maxPoints}); reloads when it differs from the loaded one. */
  setRange(range) {
    this.range = range;
    const key = `${range.start}:${range.end}:${range.maxPoints}`;
    // a read of this very range under way is not started again: every event asks for the range, and
    // restarting it each time would keep the run from ever loading (and its stream closed)
    if (key !== this.loadedKey && !(this.loading && key === this.loadingKey)) this.load();
  }

  /** Follow the events (or stop) — the dashboard streams only a few runs at once (HTTP/1.1 allows 6
   * connections a host). A run not streamed is reloaded when the run list says it moved. */
  setStreaming(wanted) {
    if (wanted === this.wantStream) return;
    this.wantStream = wanted;
    if (!wanted) this.closeStream();
    else if (!this.loading && this.series) this.load(); // continue from a fresh answer, without a gap
  }

  /** The run list's newest description of the run (status, step, name...). A description read before
   * the newest event this page applied is older than what it shows: its state fields are left out.
   * A run not streamed is read again when it moved. */
  update(run) {
    const wasProducing = this.producing;
    const newer = run.last_event_id >= this.seenEventId;
    const taken = newer ? run : Object.fromEntries(Object.entries(run).filter(([key]) => !STATE_FIELDS.includes(key)));
    const moved = newer && (run.step !== this.run.step || run.status !== this.run.status);
    Object.assign(this.run, taken);
    if (!this.producing) this.closeStream(); // e.g. interrupted by a server restart: no event says so
    if (moved && !this.wantStream && this.series && !this.loading && (wasProducing || this.producing)) this.load();
    this.changed();
  }

  close() {
    this.closed = true;
    this.closeStream();
    clearTimeout(this.retryTimer);
  }

  changed() {
    this.version += 1;
    this.onChange(this);
  }

  async load() {
    if (!this.range || this.closed) return;
    const generation = ++this.generation;
    const { start, end, maxPoints } = this.range;
    this.loadingKey = `${start}:${end}:${maxPoints}`;
    this.closeStream(); // its events would overlap the answers; the new stream continues after them
    this.loading = true;
    clearTimeout(this.retryTimer);
    try {
      const head = await this.history(start, end, maxPoints);
      if (generation !== this.generation) return;
      const bucket = head.bucket;
      let tailStart = end;
      let tail = null;
      if (PRODUCING.includes(head.run.status)) {
        tailStart = Math.min(end, Math.max(head.start, Math.floor((head.run.step - TAIL_MARGIN) / bucket) * bucket));
        const tailEnd = Math.min(end, tailStart + RAW_POINTS);
        if (tailStart < end) tail = await this.history(tailStart, tailEnd, RAW_POINTS);
        if (generation !== this.generation) return;
        if (tail && tailEnd < end && tail.run.step >= tailEnd) return this.load(); // it ran past the raw read: again
      }
      const series = new RunSeries({ start: head.start, end, bucket });
      series.loadBuckets(head.series, tailStart);
      if (tail) series.fold(tail.series);
      const last = tail ?? head;
      this.series = series;
      this.loadedKey = `${start}:${end}:${maxPoints}`;
      Object.assign(this.run, last.run);
      this.seenEventId = last.last_event_id;
      this.statsSteps = last === head ? head.stats_steps : [...new Set([...head.stats_steps, ...tail.stats_steps])];
      this.latestStats = last.latest_stats ?? head.latest_stats;
      if (this.latestStats) this.remember(this.latestStats);
      this.timeline = last.timeline.slice(-MAX_TIMELINE);
      this.loading = false;
      if (this.wantStream && this.producing) this.openStream(last.last_event_id);
      this.changed();
    } catch {
      if (generation !== this.generation) return;
      this.loading = false;
      this.connected = false;
      this.changed();
      if (!this.closed) this.retryTimer = setTimeout(() => this.load(), RETRY_MS);
    }
  }

  history(start, end, maxPoints) {
    return api.get(`/api/runs/${this.run.id}/history?start=${start}&end=${end}&max_points=${maxPoints}&max_histograms=500`);
  }

  openStream(after) {
    const source = new EventSource(`/api/runs/${this.run.id}/events?after=${after}`);
    for (const type of EVENT_TYPES) {
      source.addEventListener(type, (message) => {
        this.seenEventId = Number(message.lastEventId);
        this.receive(type, JSON.parse(message.data));
      });
    }
    // the gap was too old to replay: what we hold is out of date; read our range afresh from /history
    source.addEventListener("reset", () => this.load());
    source.onopen = () => {
      this.connected = true;
      this.onStream(this);
      this.changed();
    };
    source.onerror = () => {
      this.connected = false; // the browser reconnects by itself (Last-Event-ID) unless it closed
      this.onStream(this);
      this.changed();
      if (source.readyState === EventSource.CLOSED && !this.closed) this.retryTimer = setTimeout(() => this.load(), RETRY_MS);
    };
    this.source = source;
  }

  closeStream() {
    this.source?.close();
    this.source = null;
    this.connected = false;
  }

  receive(type, event) {
    if (event.run) Object.assign(this.run, event.run);
    this.series?.fold(event.points);
    if (type === "model") {
      this.run.layers = Object.fromEntries(["activations", "weights", "norms"].map((g) => [g, event[g].map((l) => l.name)]));
    } else if (type === "stats") {
      this.latestStats = event;
      this.remember(event);
      if (!this.statsSteps.length || event.step > this.statsSteps.at(-1)) this.statsSteps.push(event.step);
      if (this.statsSteps.length > MAX_STATS_STEPS) this.statsSteps = this.statsSteps.filter((_, i) => i % 2 === 0);
    } else if (type === "status" || type === "control" || type === "eval") {
      this.timeline.push(event);
      if (this.timeline.length > MAX_TIMELINE) this.timeline.shift();
    }
    if (type === "status" && !this.producing) this.closeStream(); // nothing more will come
    this.changed();
  }

  /** Keep a statistics event under its own step (the newest STATS_CACHE_SIZE of the stream's, or of those read). */
  remember(stats, cache = this.statsCache) {
    cache.delete(stats.step);
    cache.set(stats.step, stats);
    if (cache.size > STATS_CACHE_SIZE) cache.delete(cache.keys().next().value);
  }

  /** The statistics to draw at `step`: {stats, exact}. `exact`: they are the run's nearest recorded
   * statistics at or before `step` (what GET /stats?step= answers). Otherwise the nearest at hand before
   * `step` stand in (their own step is shown with them) while the exact ones are fetched: a run far
   * ahead of the shown step is drawn at once, and never waits for an answer that the moving step would
   * make stale before it arrived. {stats: null} when none are at hand before `step`. */
  statsAt(step) {
    if (!this.latestStats) return { stats: null, exact: true }; // nothing recorded yet: the server has none either
    if (this.latestStats.step <= step) return { stats: this.latestStats, exact: true };
    const resolved = this.resolved.get(step);
    const known = this.statsCache.get(resolved) ?? this.fetchedStats.get(resolved);
    if (known) return { stats: known, exact: true };
    this.fetchStats(step);
    let best = null;
    for (const cache of [this.statsCache, this.fetchedStats]) {
      for (const stats of cache.values()) if (stats.step <= step && (!best || stats.step > best.step)) best = stats;
    }
    return { stats: best, exact: false };
  }

  /** Coalesced: at most one request in flight, at most one every STATS_FETCH_MS, and always for the step
   * wanted most recently (a live comparison moves it every statistics step; a dragged scrubber, faster). */
  async fetchStats(step) {
    this.wantedStep = step;
    if (this.fetchingStats) return;
    this.fetchingStats = true;
    try {
      while (this.wantedStep !== null && !this.closed) {
        const wait = this.lastFetch + STATS_FETCH_MS - performance.now();
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
        const wanted = this.wantedStep;
        this.wantedStep = null;
        if (this.resolved.has(wanted)) continue;
        this.lastFetch = performance.now();
        const stats = await api.get(`/api/runs/${this.run.id}/stats?step=${wanted}`);
        this.remember(stats, this.fetchedStats);
        this.resolved.set(wanted, stats.step);
        if (this.resolved.size > 4 * STATS_CACHE_SIZE) this.resolved.delete(this.resolved.keys().next().value);
        this.changed();
      }
    } catch {
      this.wantedStep = null; // the run went away: the run list will notice
    } finally {
      this.fetchingStats = false;
    }
  }
}
