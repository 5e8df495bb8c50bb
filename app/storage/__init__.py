"""The server's SQLite store: the schema and its writes (store), the thread that batches a run's events
into it (writer), the upgrade of an older database (migrate), and the reads that answer /history,
statistics, export, reports (queries) and a sweep's summary (sweep_summary)."""
