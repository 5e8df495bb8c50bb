"""What runs inside a worker (or the CLI's own process) and imports torch: the names and their windows
(data), the trainer of one run (trainer) and of a stack of sweep members (stack), the statistics engine
(diagnostics), sampling names from a network (sampling). Nothing here knows HTTP, SSE, SQLite or the
server's processes: a trainer hands its events to whoever listens."""
