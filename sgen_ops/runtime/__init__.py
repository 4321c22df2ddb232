"""The runtime: the worker processes (simple and forking), one attempt (claim, run, record), the
heartbeat that keeps an attempt's lease, the scheduler that emits schedule ticks, and what workers and
queues look like at a glance."""
