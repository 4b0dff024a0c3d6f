"""The agent's process heap, frozen while the agent runs, so that no garbage collection stalls it.

A full collection walks every object the process tracks, holding the GIL: no report is decided and
no trial started meanwhile. The process that runs an agent already holds Optuna, SQLAlchemy and the
rest it imports (about 100,000 tracked objects: 57-71 ms a full collection here), and a notebook or a
test session that calls :func:`sweeper.agent` holds its own data besides (at a million objects, one
took 0.16-0.27 s on a quiet machine and 0.5-1.4 s in a loaded test run). What existed before
the agent started is not the agent's garbage; :func:`frozen_heap` leaves it out of every collection
(Python's ``gc.freeze``) until the agent's run ends, so a collection walks only what the run made.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """Freeze the objects alive now for the block, and unfreeze them after it.

    What became garbage among them meanwhile is collected after the block, as it would have been
    before. A process that froze objects itself (``gc.get_freeze_count()`` not 0) is left as it is:
    unfreezing at the end would undo its own freeze.

    Example:
        >>> import gc
        >>> with frozen_heap():
        ...     gc.get_freeze_count() > 0
        True
        >>> gc.get_freeze_count()
        0
    """
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
