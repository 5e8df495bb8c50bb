"""The server's runs: the service the routes call (create, sweep, queue, control, sample, read back),
the workers it trains them in (a process each, or a Ray actor), and how a sweep's members are planned
into stacks and kept in lockstep. Nothing here imports torch at module level: the server never runs a
training step."""
