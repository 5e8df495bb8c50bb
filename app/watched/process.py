"""A watched run's sink in a child process: the JSON, SQLite and HTTP work off the training process.

The sender thread of bnscope.watched.sender does little, but it is Python: each millisecond it spends
turning events into JSON and rows is a millisecond the user's loop waits for the GIL, and more, for
the loop hands the GIL back and forth with it at every torch op. So the sink (a StoreSink or an
HttpSink, not yet opened) is pickled to a child Python (`python -m bnscope.watched.process`, which
never imports torch) and each call goes over its stdin and stdout as a pickled request and reply;
the sender thread only pickles batches and then waits on the pipe, the GIL released.

The child ignores Ctrl-C (the parent's `with watch(...)` still has to send its `stopped` status).
When the parent is gone without close() (its end of the pipe closed, even by SIGKILL), the child
marks the run failed, saying so, and closes the sink: what it was sent is written. Where no child
can be started, the sink runs in the sender thread.
"""

import logging
import os
import pickle
import signal
import subprocess
import sys
import threading

from bnscope.watched.sender import Invalid, Refused, Unreachable

log = logging.getLogger("bnscope.watch")
RAISED = {cls.__name__: cls for cls in (Unreachable, Refused, Invalid)}  # what a reply may say the sink raised


class ProcessSink:
    """The sink's calls (open, send, discard, reconnecting, flush, close) made in a child process."""

    def __init__(self, sink, python: str = sys.executable):
        self.sink, self.python = sink, python
        self._child: subprocess.Popen | None = None
        self._local = False  # no child could be started: the sink runs here
        self._lock = threading.Lock()  # flush() comes from the user's thread, the rest from the sender's

    def __str__(self) -> str:
        return str(self.sink)

    def open(self) -> None:
        """Start the child (once: an open the sink refused for now, say a server not up yet, is tried
        again in the same child) and open the sink there."""
        if self._local:
            return self.sink.open()
        try:
            if self._child is None:
                # the same Python finds the same bnscope: it is only ever imported installed
                self._child = subprocess.Popen(
                    [self.python, "-m", "bnscope.watched.process"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
                )
            self._call("open", self.sink)
        except (OSError, EOFError) as err:
            log.warning("bnscope.watch: no process for %s (%s); recording from this one", self.sink, err)
            self._stop_child()
            self._local = True
            self.sink.open()

    def send(self, batch: list[dict]) -> None:
        """As the sink's send: what was delivered leaves the batch, then any error the sink raised."""
        self._call("send", batch)

    def discard(self, batch: list[dict]) -> int:
        return self._call("discard", batch)

    def reconnecting(self) -> None:
        self._call("reconnecting")

    def flush(self, timeout: float) -> bool:
        return self._call("flush", timeout)

    def close(self) -> None:
        if self._child is None and not self._local:
            return  # never opened (or the child is already stopped)
        try:
            self._call("close")
        except BaseException:
            self._stop_child()
            raise
        # everything is recorded: the child only has to exit, and its interpreter's teardown (~70 ms) is
        # not the loop's to wait for; a daemon thread reaps it
        child, self._child = self._child, None
        for pipe in (child.stdin, child.stdout):
            pipe.close()
        threading.Thread(target=child.wait, name="bnscope-watch-reaper", daemon=True).start()

    def _call(self, method: str, *args):
        """One call of the sink's, in the child (or here, where no child could start). A batch (send's,
        discard's) loses what the child's copy of it lost: the events the sink delivered or discarded;
        then the sink's own exception is raised again here."""
        if self._local:
            return getattr(self.sink, method)(*args)
        with self._lock:
            try:
                pickle.dump((method, args), self._child.stdin)
                self._child.stdin.flush()
                value, remaining, raised, message = pickle.load(self._child.stdout)
            except (OSError, EOFError, pickle.UnpicklingError) as err:
                if method == "open":
                    raise EOFError(f"it ended as it started: {err!r}") from None
                raise Refused(f"its recording process ended (exit code {self._child.poll()})") from None
        if remaining is not None:
            del args[0][: len(args[0]) - remaining]
        if raised is not None:
            raise RAISED.get(raised, RuntimeError)(message)
        return value

    def _stop_child(self) -> None:
        if self._child is None:
            return
        for pipe in (self._child.stdin, self._child.stdout):
            try:
                pipe.close()
            except OSError:
                pass
        try:
            self._child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._child.kill()
            self._child.wait()
        self._child = None


def serve() -> None:
    """The child: requests from stdin, replies to stdout, until `close` or the parent is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    requests, replies = sys.stdin.buffer, os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # a stray print must not break the replies
    sink, last_step = None, 0
    while True:
        try:
            method, args = pickle.load(requests)
        except EOFError:  # the parent is gone without close() (killed, crashed): say so, keep what is held
            if sink is not None:
                _ended_unclosed(sink, last_step)
            return
        value, raised, message = None, None, ""
        batch = args[0] if method in ("send", "discard") else None  # the sink takes from it what it is done with
        try:
            if method == "open":
                (sink,) = args
                sink.open()
            else:
                if method == "send":
                    last_step = max(last_step, *(event["step"] for event in batch))
                value = getattr(sink, method)(*args)
        except Exception as err:  # noqa: BLE001 - every error goes back to the parent's sender
            raised, message = (
                type(err).__name__,
                str(err) if type(err).__name__ in RAISED else f"{type(err).__name__}: {err}",
            )
        try:
            pickle.dump((value, None if batch is None else len(batch), raised, message), replies)
            replies.flush()
        except OSError:  # the parent went while the sink worked: as at the end of its requests
            _ended_unclosed(sink, last_step)
            return
        if method == "close":
            return


def _ended_unclosed(sink, step: int) -> None:
    message = "the watching process ended without close() (killed or crashed); what it sent is kept"
    try:
        sink.send([{"type": "status", "step": step, "status": "failed", "message": message}])
    except Exception as err:  # noqa: BLE001 - nothing is left to tell but the log
        log.warning("bnscope.watch: %s: %s", sink, err)
    sink.close()


if __name__ == "__main__":
    serve()
