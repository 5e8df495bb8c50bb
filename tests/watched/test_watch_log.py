"""run.log's losses land on the step they belong to, whatever the loop logs in between (recorded into a
real data directory, no server)."""

import torch
import torch.nn as nn

import bnscope
from tests.watched.test_watch import recorded, series


def test_a_loss_logged_twice_for_a_step_is_its_last_and_the_next_steps_keep_their_place(tmp_path):
    model = nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02)
    with bnscope.watch(model, optimizer, every=10**6, data_dir=tmp_path) as run:
        for step in range(50):
            optimizer.step()
            run.log(loss=-1.0)  # a first value, say a running mean, then the step's own
            run.log(loss=step / 100)
    store, row = recorded(tmp_path)
    steps, values = series(store, row["id"], "loss")
    assert steps == list(range(50)), f"{len(steps)} loss points for 50 steps"
    assert values == [step / 100 for step in range(50)]
