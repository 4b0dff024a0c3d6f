"""The agent and its parts: setting a sweep up, keeping the executor's slots full, recording how each
trial ended, watching the sweep's state; executors (Ray, and ``local``: forked processes), the
pruning judge and its report channel, leases, the flapping guard and live progress.

The agent's parts (``setup``, ``loop``, ``tasks``, ``outcomes``, ``watch``) are internal to it.
"""

# The public modules; the others are the package's own.
__all__ = ["agent", "executor", "flapping", "judge", "leases", "local", "progress"]
