"""Training inside a worker: the stacked trainer of a sweep's members (bnscope.train.stack)."""
