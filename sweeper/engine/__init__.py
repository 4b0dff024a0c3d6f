"""The agent and its parts: setting a sweep up, keeping the executor's slots full, recording how each
trial ended, watching the sweep's state; executors (Ray, in-process), the pruning broker, leases,
the flapping guard and live progress."""
