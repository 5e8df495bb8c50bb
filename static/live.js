// One run followed live: its history first, then its event stream from exactly where the history
// ends. Events are applied to the RunData as they arrive (cheap), and `onChange` asks the dashboard
// for a redraw, which it coalesces.

import { api } from "./api.js";
import { RunData } from "./rundata.js";

const EVENT_TYPES = ["scalars", "stats", "eval", "status", "control"];
const HISTORY_QUERY = "max_points=2000&max_histograms=500";
const STATS_CACHE_SIZE = 40; // recent statistics events kept for matched-step lookups (~30 kB each)
const RETRY_MS = 5000; // after a failed history or a refused stream (the browser retries dropped streams itself)

export class LiveRun {
  constructor(runId, onChange) {
    this.id = runId;
    this.onChange = onChange;
    this.data = null;
    this.connected = false;
    this.closed = false;
    this.source = null;
    this.retryTimer = null;
    this.statsCache = new Map(); // requested step -> statistics event, oldest first
    this.wantedStep = null;
    this.fetching = false;
  }

  /** Load the history, then follow the events from where it ends; on failure, try again shortly. */
  async start() {
    try {
      const history = await api.get(`/api/runs/${this.id}/history?${HISTORY_QUERY}`);
      if (this.closed) return;
      this.replaceWith(history);
      this.connect();
    } catch {
      this.setConnected(false);
      if (!this.closed) this.retryTimer = setTimeout(() => this.start(), RETRY_MS);
    }
  }

  close() {
    this.closed = true;
    this.source?.close();
    clearTimeout(this.retryTimer);
  }

  replaceWith(history) {
    this.data = RunData.fromHistory(history);
    if (history.latest_stats) this.remember(history.latest_stats.step, history.latest_stats);
    this.onChange();
  }

  connect() {
    const source = new EventSource(`/api/runs/${this.id}/events?after=${this.data.lastEventId}`);
    for (const type of EVENT_TYPES) {
      source.addEventListener(type, (message) => this.receive(type, message));
    }
    // the client's gap was too old to replay: the server sends the whole history instead
    source.addEventListener("snapshot", (message) => this.replaceWith(JSON.parse(message.data)));
    source.onopen = () => this.setConnected(true);
    source.onerror = () => {
      this.setConnected(false);
      if (source.readyState === EventSource.CLOSED && !this.closed) this.retryTimer = setTimeout(() => this.start(), RETRY_MS);
    };
    this.source = source;
  }

  receive(type, message) {
    const event = JSON.parse(message.data);
    this.data.apply(type, event);
    if (type === "stats") this.remember(event.step, event);
    this.onChange();
  }

  setConnected(connected) {
    this.connected = connected;
    this.onChange();
  }

  remember(step, stats) {
    this.statsCache.delete(step);
    this.statsCache.set(step, stats);
    if (this.statsCache.size > STATS_CACHE_SIZE) this.statsCache.delete(this.statsCache.keys().next().value);
  }

  /** The statistics at `step` (or the nearest recorded before it) when at hand; else null, and they
   * are fetched (onChange fires when they arrive). */
  statsAt(step) {
    const latest = this.data.latestStats;
    if (!latest) return null; // nothing recorded yet: the server has none to give either
    const stats = this.statsCache.get(step) ?? (latest.step <= step ? latest : null);
    if (!stats) this.fetchStats(step);
    return stats;
  }

  /** The statistics at hand, whatever step they were asked for. */
  cachedStats() {
    return [...this.statsCache.values()];
  }

  /** Fetch statistics one request at a time, always for the step wanted most recently. */
  async fetchStats(step) {
    this.wantedStep = step;
    if (this.fetching) return;
    this.fetching = true;
    try {
      while (this.wantedStep !== null && !this.closed) {
        const wanted = this.wantedStep;
        this.wantedStep = null;
        if (this.statsCache.has(wanted)) continue;
        this.remember(wanted, await api.get(`/api/runs/${this.id}/stats?step=${wanted}`));
        this.onChange();
      }
    } catch {
      this.wantedStep = null; // the run went away; the run list will notice
    } finally {
      this.fetching = false;
    }
  }
}
