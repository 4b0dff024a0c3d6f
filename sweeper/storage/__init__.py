"""The sweep's record in an Optuna storage: URLs, retries, the sweep and its state, attribute keys,
the queue of waiting trials, a new sweep's priors, fast reads, and the journal's snapshot kept fresh
while agents write (``snapshot_keeper``). The only package that touches Optuna's internals.

``queue``, ``work``, ``claims``, ``priors``, ``fast_read``, ``journal_read`` and ``journal_replay``
(Optuna's internals) and ``retry`` are internal to the package.
"""

# The public modules; the others are the package's own.
__all__ = ["attrs", "snapshot_keeper", "sweeps", "urls"]
