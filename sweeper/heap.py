"""Keeping Python's garbage collector out of the agent's loop and out of bulk reads.

A full collection walks every object the process tracks, holding the GIL: no report is decided and
no trial started meanwhile. The process that runs an agent already holds Optuna, SQLAlchemy and the
rest it imports (about 100,000 tracked objects: 57-71 ms a full collection here), and a notebook or a
test session that calls :func:`sweeper.agent` holds its own data besides (at a million objects, one
took 0.16-0.27 s on a quiet machine and 0.5-1.4 s in a loaded test run). What existed before
the agent started is not the agent's garbage; :func:`frozen_heap` leaves it out of every collection
(Python's ``gc.freeze``) until the agent's run ends, so a collection walks only what the run made.

A bulk read (a journal's replay, 10,000 trials made into records) allocates hundreds of thousands
of objects that all stay alive: each allocation threshold crossed starts a collection that frees
nothing, and the older generations are walked again and again as the heap grows (a third to a half
of such a read's time, measured on a sweep of 10,000 trials). :func:`collection_paused` skips them
for the read; what the read left as garbage is collected after it, as usual.
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


@contextlib.contextmanager
def collection_paused() -> Iterator[None]:
    """No automatic garbage collection during the block (``gc.disable``); after it, as before.

    For a bounded read that keeps what it allocates. A collector disabled already (by the caller)
    stays disabled. Other threads run without collections meanwhile too: the block is short, and
    what they leave is collected after it.

    Example:
        >>> import gc
        >>> with collection_paused():
        ...     gc.isenabled()
        False
        >>> gc.isenabled()
        True
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
