"""A trial's processes end with it: the subreaper, and ending what a trial left behind.

A process that calls ``setsid`` (or double-forks) leaves its process group and, once its parent
exits, would be re-parented to init, out of reach. On Linux a *child subreaper*
(``prctl(PR_SET_CHILD_SUBREAPER)``) receives such orphans instead, so every process a trial started
is still below the process that ran it: :func:`end_children` ends them all, top down (only direct
children are signalled, so no pid can have been reused; their children become ours as they go).

Elsewhere (no ``prctl``, no ``/proc``) these functions do nothing and say so by their return value.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import time
from collections.abc import Callable, Collection, Iterable, Iterator

# Seconds leftover processes have between SIGTERM and SIGKILL.
LEFTOVER_GRACE_S = 3.0

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_POLL_S = 0.02
_KILL_ROUNDS_S = 10.0  # SIGKILL rounds stop after this long (a process stuck in the kernel)


def _prctl(option: int, value: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(option, value, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def become_subreaper() -> bool:
    """Make this process the subreaper of its descendants (Linux); False where it cannot be."""
    return _prctl(_PR_SET_CHILD_SUBREAPER, 1)


def die_with_parent(sig: int, parent: int) -> bool:
    """Have the kernel send ``sig`` to this process when its parent thread exits (Linux).

    Exits at once if ``parent`` is already gone (it died before the request took effect).
    """
    armed = _prctl(_PR_SET_PDEATHSIG, sig)
    if armed and os.getppid() != parent:
        os._exit(1)
    return armed


def children(pid: int, *, zombies: bool = False) -> list[int]:
    """The live children of ``pid`` (and the exited, unreaped ones with ``zombies``); empty where
    ``/proc`` does not say."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as listing:
                found.extend(int(child) for child in listing.read().split())
        except OSError:
            continue
    return found if zombies else [child for child in found if not _zombie(child)]


def has_children() -> bool:
    """Whether this process has any child, live or exited (one system call, which reaps nothing).

    Reading ``/proc`` costs a file per thread of the process (a Ray worker has dozens): a trial that
    started no process skips it. True where the kernel cannot say.
    """
    waitid = getattr(os, "waitid", None)
    if waitid is None:  # pragma: no cover - not on this platform: look in /proc
        return True
    try:
        waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    except OSError:  # pragma: no cover - as above
        return True
    return True


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            # "pid (comm) S ...": the state follows the last ')' (comm may hold any character).
            return stat.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X")
    except (OSError, IndexError):
        return True  # gone already


def end_children(
    keep: Collection[int] = (), *, grace: float = LEFTOVER_GRACE_S, reap: Callable[[], None] | None = None
) -> int:
    """End every descendant of this process except the children in ``keep``; how many there were.

    Each child gets SIGTERM (and SIGCONT, should it be stopped), then SIGKILL once ``grace`` has
    passed; children re-parented to this subreaper meanwhile (the grandchildren of those that
    exit) get the same. ``reap`` collects exited children (default: every child not kept, by pid).
    """
    me = os.getpid()
    if reap is None:
        reap = lambda: _reap(c for c in children(me, zombies=True) if c not in keep)  # noqa: E731
    signalled: set[int] = set()
    termed_until = time.monotonic() + grace
    killing_until = termed_until + _KILL_ROUNDS_S
    while True:
        alive = [pid for pid in children(me) if pid not in keep]
        now = time.monotonic()
        if not alive or now >= killing_until:
            break
        for pid in alive:
            if now >= termed_until:
                _signal(pid, signal.SIGKILL)
            elif pid not in signalled:
                _signal(pid, signal.SIGTERM)
                _signal(pid, signal.SIGCONT)
            signalled.add(pid)
        time.sleep(_POLL_S)
        reap()
    reap()
    return len(signalled)


def reap_any() -> None:
    """Collect every exited child of this process (for a process whose children are all its trial's)."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass


def _reap(pids: Iterable[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def end_services() -> None:
    """Stop the per-process services a trial's libraries started, the way they stop themselves.

    W&B keeps one service process per Python process and reuses it for every later run: ended
    from outside, it breaks the next trial's ``wandb.init()`` in the same worker; ``teardown``
    stops it cleanly, and the next run starts its own.
    """
    wandb = sys.modules.get("wandb")
    teardown = getattr(wandb, "teardown", None)
    if teardown is not None:
        with contextlib.suppress(Exception):
            teardown()


@contextlib.contextmanager
def trial_processes() -> Iterator[None]:
    """Run a trial in this (long-lived) process, then end the processes it left behind.

    For a Ray worker, which runs many trials: it becomes a subreaper once, so orphans of the
    trial's processes come back to it, and after the trial every child it did not have before,
    with all below it, is ended. A child started by another thread meanwhile would be taken for
    the trial's: Ray runs one task at a time in a worker.
    """
    become_subreaper()
    before = set(children(os.getpid())) if has_children() else set()
    try:
        yield
    finally:
        end_services()
        if before or has_children():
            end_children(keep=before)
