"""The sweep's record in an Optuna storage: URLs, retries, the sweep and its state, attribute keys,
the queue of waiting trials, and fast reads. The only package that touches Optuna's internals.

``queue``, ``fast_read`` and ``journal_replay`` (Optuna's internals) and ``retry`` are internal to the
package.
"""

# The public modules; the others are the package's own.
__all__ = ["attrs", "sweeps", "urls"]
