"""A watched run records from a child process: what a killed or Ctrl-C'd training script leaves in
the store, and a run recorded all the same where no child can be started."""

import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from contextlib import closing
from pathlib import Path

import pytest
import torch
import torch.nn as nn

import bnscope
from bnscope.storage.store import Store
from bnscope.watched.process import ProcessSink
from bnscope.watched.sender import Sender, StoreSink
from tests.servers import ctrl_c_as_in_a_terminal, wait_for

SCRIPT = """
import sys, time, torch, torch.nn as nn, bnscope
model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
with bnscope.watch(model, optimizer, every=10, data_dir=sys.argv[1], name="script") as run:
    step = 0
    while True:  # until the test kills or interrupts it
        loss = model(torch.randn(16, 4)).pow(2).mean()
        optimizer.zero_grad(); loss.backward(); optimizer.step()
        run.log(loss=loss.item())
        step += 1
        if step == 200:
            print("trained", flush=True)
        time.sleep(0.001)
"""


def start_script(tmp_path) -> subprocess.Popen:
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(SCRIPT))
    # a session of its own: a signal to its process group reaches it and the child it starts, as a
    # terminal's Ctrl-C reaches every process of the job
    process = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "data")],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=ctrl_c_as_in_a_terminal,
    )
    try:
        assert process.stdout.readline().strip() == "trained"
        wait_for(lambda: losses(tmp_path) >= 200)  # what it logged reached the recording process, and its store
    except BaseException:  # a failed wait leaves no script training forever
        os.killpg(process.pid, signal.SIGKILL)
        raise
    return process


def losses(tmp_path) -> int:
    """How many losses the recording process has stored so far (read-only: it may still be creating the store)."""
    try:
        with closing(sqlite3.connect(f"file:{tmp_path / 'data' / 'bnscope.sqlite3'}?mode=ro", uri=True)) as db:
            return db.execute("SELECT COUNT(*) FROM series WHERE name='loss'").fetchone()[0]
    except sqlite3.OperationalError:  # not there yet, or no tables yet
        return 0


def the_run(tmp_path, status: str) -> tuple[Store, dict]:
    """The one recorded run, once it has `status` (the recording process may still be writing)."""
    store = Store(tmp_path / "data" / "bnscope.sqlite3")
    wait_for(lambda: store.runs()[0]["status"] == status, every=0.2)
    (run,) = store.runs()
    return store, run


def test_a_killed_training_script_keeps_what_it_sent_and_its_run_says_it_ended_unclosed(tmp_path):
    process = start_script(tmp_path)
    process.kill()  # SIGKILL: no close(), no atexit
    process.communicate(timeout=10)
    store, run = the_run(tmp_path, "failed")
    assert run["status"] == "failed" and "without close()" in run["message"]
    steps, _ = store.series(run["id"], "loss", 0, 10**9, 1)
    assert len(steps) >= 200 and steps == list(range(len(steps)))  # every loss it sent, in order
    assert store.stats_steps(run["id"])[:20] == list(range(0, 200, 10))


@pytest.mark.slow
def test_ctrl_c_stops_the_run_and_its_stopped_status_is_recorded(tmp_path):
    process = start_script(tmp_path)
    os.killpg(process.pid, signal.SIGINT)  # the whole job, the recording process too
    process.communicate(timeout=30)
    assert process.returncode != 0  # the KeyboardInterrupt went on after the with block
    store, run = the_run(tmp_path, "stopped")
    assert (run["status"], run["message"]) == ("stopped", "interrupted (Ctrl-C)")
    assert len(store.series(run["id"], "loss", 0, 10**9, 1)[0]) >= 200


def test_where_no_child_python_starts_the_run_is_recorded_from_the_process_itself(tmp_path, caplog):
    sink = ProcessSink(StoreSink(tmp_path, "here", {}), python=str(tmp_path / "no-such-python"))
    sender = Sender(sink)
    with caplog.at_level(logging.WARNING, logger="bnscope.watch"):
        sender.put(
            {
                "type": "scalars",
                "step": 0,
                "loss": [1.0, 0.5],
                "lr": 0.1,
                "steps_per_s": 0.0,
                "ud_names": [],
                "ud_steps": [],
                "ud": [],
            }
        )
        assert sender.close(timeout=30) == {"sent": 1, "dropped": 0, "dropped_why": {}}
    assert "recording from this one" in caplog.text
    store = Store(tmp_path / "bnscope.sqlite3")
    (run,) = store.runs()
    assert store.series(run["id"], "loss", 0, 10**9, 1) == ([0, 1], [1.0, 0.5])


def test_the_recording_process_never_loads_torch(tmp_path):
    """It starts in a fraction of a second and holds little memory: no torch in it (events are plain
    Python; a torch object in one, say torch.__version__, would pull torch in to unpickle it)."""
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with bnscope.watch(model, optimizer, every=1, data_dir=tmp_path) as run:
        model(torch.randn(4, 4)).sum().backward()
        optimizer.step()
        assert run.flush(timeout=30)
        maps = Path(f"/proc/{run._sender.sink._child.pid}/maps")
        if not maps.exists():
            pytest.skip("no /proc here to see what a process loaded")
        assert "libtorch" not in maps.read_text()
    assert run.summary["dropped"] == 0


def test_a_recording_process_that_dies_refuses_what_follows_and_close_counts_it(tmp_path):
    sink = ProcessSink(StoreSink(tmp_path, "orphan", {}))
    sender = Sender(sink)
    sender.put({"type": "status", "step": 0, "status": "running", "message": ""})
    assert sender.flush(timeout=30)
    sink._child.kill()
    sink._child.wait()
    sender.put({"type": "status", "step": 1, "status": "finished", "message": ""})
    summary = sender.close(timeout=5)
    assert (summary["sent"], summary["dropped"]) == (1, 1)  # never raised into the caller
