"""A run's records read back (a part of bnscope.runs.service.RunService): its history at one resolution,
statistics at a step, histograms over time, a whole export. The reads themselves are
bnscope.storage.queries. A read of a producing run never waits for the writer: it answers what the store
holds (at most a second behind), and the run's stream covers the rest (a history says where it picks
up). A run that has ended is read whole: its last batch, if still in flight, is waited for once."""

import io
import json

from bnscope.events import ENDED
from bnscope.runs.errors import NotFound
from bnscope.runs.run import Run
from bnscope.storage.queries import HEATMAP_STEPS, HISTORY_HISTOGRAMS, HISTORY_POINTS, evenly, export_csv, export_json
from bnscope.storage.queries import histograms as histograms_of
from bnscope.storage.queries import series as series_of
from bnscope.storage.store import STATE_COLUMNS
from bnscope.storage.writer import FLUSH_SECONDS


class Reads:
    """RunService's reads (self is the service: its runs, store and writer)."""

    def written(self, *runs: Run) -> None:
        """Runs that will send nothing more are read whole: when the event that ended one is not written
        yet (the last event a run sends), wait for the writer's batch in flight, about a second at most."""
        ended = [run for run in runs if run.state.status in (*ENDED, "interrupted")]
        if any(self.store.run(run.id)["status"] != run.state.status for run in ended):
            self.writer.flush(timeout=2 * FLUSH_SECONDS)

    def history(
        self,
        run_id: int,
        start: int = 0,
        end: int | None = None,
        max_points: int = HISTORY_POINTS,
        max_histograms: int = HISTORY_HISTOGRAMS,
        names: list[str] | None = None,
    ) -> dict:
        """Every series over [start, end) (default: the whole run) at one resolution, the statistics steps,
        the latest statistics and the timeline, as the store holds them; `run` is the run's state as of
        the same event, `last_event_id`, where its live stream picks up."""
        run = self.get(run_id)
        self.written(run)
        with self.store.reading():
            stored = self.store.run(run_id)
            end = end if end is not None else max(stored["step"], start + 1)
            answer = series_of(self.store, run_id, start, end, max_points, names)
            stats_steps = [s for s in self.store.stats_steps(run_id) if start <= s < end]
            latest = self.store.stats_at(run_id, stats_steps[-1]) if stats_steps else None
            timeline = self.store.timeline(run_id)
        # the state the stored events give, not the newer one in memory: the stream brings the events between
        described = self.describe(run) | {key: stored[key] for key in STATE_COLUMNS}
        return {
            "run": described | {"last_event_id": stored["last_event_id"]},
            "last_event_id": stored["last_event_id"],
            **answer,
            "stats_steps": evenly(stats_steps, max_histograms),
            "latest_stats": latest,
            "timeline": timeline,
        }

    def stats_at(self, run_id: int, step: int) -> dict:
        """The statistics at `step`, or the nearest recorded before it (after it, when none is before): from
        the store, or from the run's stream when the newest sent are not written yet."""
        run = self.get(run_id)
        stats = self.store.stats_at(run_id, step)
        if stats is None or stats["step"] >= self.store.last_stats_step(run_id):
            # the newest stored may not be the newest sent: the stream holds those not written yet. Older
            # steps are final (statistics are written in step order): comparing with a run far ahead reads no stream.
            streamed = _held_stats_at(run.channel.held(), step)
            if streamed is not None and (stats is None or stats["step"] > step or stats["step"] < streamed["step"]):
                stats = streamed
        if stats is None:
            raise NotFound(f"run {run_id} has no statistics recorded yet")
        return stats

    def histograms(
        self, run_id: int, kind: str, start: int = 0, end: int | None = None, max_steps: int = HEATMAP_STEPS
    ) -> dict:
        run = self.get(run_id)
        self.written(run)
        return histograms_of(self.store, run_id, kind, start, end if end is not None else run.state.step + 1, max_steps)

    def export(self, run_id: int, fmt: str) -> io.TextIOBase:
        """Every series of the run, raw, as CSV or JSON, in a spooled temporary file (read from the start)."""
        import tempfile

        run = self.get(run_id)
        self.written(run)
        out = tempfile.SpooledTemporaryFile(max_size=8 * 2**20, mode="w+", newline="")
        with self.store.reading():
            export_csv(self.store, run_id, out) if fmt == "csv" else export_json(
                self.store, run_id, self.describe(run), out
            )
        out.seek(0)
        return out


def _held_stats_at(held: list, step: int) -> dict | None:
    """The newest statistics event at or before `step` among a channel's held messages (newest first: the
    first found is the one; the stream sends the same JSON the store keeps)."""
    for message in reversed(held):
        if message.type == "stats":
            stats = json.loads(message.data)
            if stats["step"] <= step:
                return stats
    return None
