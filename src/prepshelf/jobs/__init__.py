"""The prep shelf: procrastinate queue, job state, the ingest task, the stall sweeper."""
