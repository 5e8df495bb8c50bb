"""A run's records read back (a part of bnscope.runs.service.RunService): its history at one resolution,
statistics at a step, histograms over time, a whole export. The reads themselves are
bnscope.storage.queries; here the writer is flushed first, so an answer holds what the workers sent."""

import io

from bnscope.runs.errors import NotFound
from bnscope.storage.queries import HEATMAP_STEPS, HISTORY_HISTOGRAMS, HISTORY_POINTS, evenly, export_csv, export_json
from bnscope.storage.queries import histograms as histograms_of
from bnscope.storage.queries import series as series_of


class Reads:
    """RunService's reads (self is the service: its runs, store and writer)."""

    def history(self, run_id: int, start: int = 0, end: int | None = None, max_points: int = HISTORY_POINTS,
                max_histograms: int = HISTORY_HISTOGRAMS, names: list[str] | None = None) -> dict:  # fmt: skip
        """Every series over [start, end) (default: the whole run) at one resolution, the statistics steps,
        the latest statistics and the timeline. `last_event_id`: where the live stream picks up."""
        run = self.get(run_id)
        self.writer.flush()  # what the workers sent so far is in the store, so the answer is current
        with self.store.reading():
            stored = self.store.run(run_id)
            end = end if end is not None else max(stored["step"], run.state.step, start + 1)
            answer = series_of(self.store, run_id, start, end, max_points, names)
            stats_steps = [s for s in self.store.stats_steps(run_id) if start <= s < end]
            latest = self.store.stats_at(run_id, stats_steps[-1]) if stats_steps else None
            timeline = self.store.timeline(run_id)
        return {"run": self.describe(run), "last_event_id": stored["last_event_id"], **answer,
                "stats_steps": evenly(stats_steps, max_histograms), "latest_stats": latest, "timeline": timeline}  # fmt: skip

    def stats_at(self, run_id: int, step: int) -> dict:
        self.get(run_id)
        stats = self.store.stats_at(run_id, step)
        if stats is None or stats["step"] >= self.store.last_stats_step(run_id):
            # the newest stored may not be the newest sent: wait for the writer. Older steps are final
            # (statistics are written in step order), so comparing a run with one far ahead never waits.
            self.writer.flush()
            stats = self.store.stats_at(run_id, step)
        if stats is None:
            raise NotFound(f"run {run_id} has no statistics recorded yet")
        return stats

    def histograms(self, run_id: int, kind: str, start: int = 0, end: int | None = None,
                   max_steps: int = HEATMAP_STEPS) -> dict:  # fmt: skip
        run = self.get(run_id)
        self.writer.flush()
        return histograms_of(self.store, run_id, kind, start, end if end is not None else run.state.step + 1, max_steps)

    def export(self, run_id: int, fmt: str) -> io.TextIOBase:
        """Every series of the run, raw, as CSV or JSON, in a spooled temporary file (read from the start)."""
        import tempfile

        run = self.get(run_id)
        self.writer.flush()
        out = tempfile.SpooledTemporaryFile(max_size=8 * 2**20, mode="w+", newline="")
        with self.store.reading():
            export_csv(self.store, run_id, out) if fmt == "csv" else export_json(self.store, run_id, self.describe(run), out)
        out.seek(0)
        return out
