"""Names sampled from a run's network (a part of bnscope.runs.service.RunService): live weights from its
worker, or its last checkpoint. torch and the sampler load with the first sample, not with the server."""

import time

from bnscope.runs.errors import Conflict
from bnscope.runs.run import SETTLE_SECONDS, Run
from bnscope.train.data import Splits, make_splits

WEIGHTS_FRESH_SECONDS = 0.2  # live samples come from weights at most this old...
WEIGHTS_STALE_SECONDS = 5.0  # ...or, while fresher ones are on their way, at most this old


class Samples:
    """RunService's samples (self is the service: its store, words, runs and splits by block size)."""

    def sampler(self, run: Run):
        """(step, the run's network in eval mode) to sample from: live from its worker (weights at most
        WEIGHTS_FRESH_SECONDS old, or older ones while new ones come), else its last checkpoint."""
        if run.source != "trainer":
            raise Conflict(f"run {run.id} is a watched run: its network lives in the process that watches it")
        if run.worker is not None and run.state.status in ("running", "paused"):
            step, state = self._live_weights(run)
        else:
            saved = run.last_checkpoint or self.store.checkpoint(run.id)
            if saved is None:
                raise Conflict(f"run {run.id} has no saved weights yet")
            step, state = saved
        if run.sampler is None or run.sampler[0] != step:
            import torch

            from bnscope.train.trainer import load_model  # torch loads with the first sample, not with the server

            torch.set_num_threads(1)  # small batches: one thread is fastest, and leaves the cores to the workers

            run.sampler = (step, load_model(run.run_config, state))
        return run.sampler

    def samples(
        self,
        run_id: int,
        n: int,
        temperature: float,
        seed: int | None,
        prefix: str,
        max_len: int,
        one_at_a_time: bool = False,
    ) -> dict:
        from bnscope.train.sampling import sample_names

        run = self.get(run_id)
        step, model = self.sampler(run)
        if not all(bool(p.isfinite().all()) for p in model.parameters()):
            raise Conflict(f"run {run_id}'s weights are not finite (it diverged at step {step:,}): nothing to sample")
        names = sample_names(
            model,
            n,
            block_size=run.run_config.block_size,
            temperature=temperature,
            prefix=prefix,
            seed=seed,
            max_len=max_len,
            train_words=self.splits(run.run_config.block_size).train_words,
            one_at_a_time=one_at_a_time,
        )
        return {"run_id": run.id, "step": step, "samples": names}

    def _live_weights(self, run: Run) -> tuple[int, bytes]:
        now = time.monotonic()
        held = run.weights
        if held is None or now - held[0] > WEIGHTS_FRESH_SECONDS:
            if now - run.weights_asked > WEIGHTS_FRESH_SECONDS:
                run.weights_asked = now
                run.worker.send({"op": "weights"})
            if held is None or now - held[0] > WEIGHTS_STALE_SECONDS:  # nothing usable: wait for the answer
                with run.settled:
                    run.settled.wait_for(lambda: run.weights is not held or run.worker is None, timeout=SETTLE_SECONDS)
                held = run.weights
        if held is None:
            if run.last_checkpoint is None:
                raise Conflict(f"run {run.id} has no weights yet")
            return run.last_checkpoint
        return held[1], held[2]

    def splits(self, block_size: int) -> Splits:
        if block_size not in self._splits:
            self._splits[block_size] = make_splits(self.words, block_size)
        return self._splits[block_size]
