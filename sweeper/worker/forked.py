"""One trial in a process forked from the agent, so nothing a trainer does can take the agent down.

The local executor (:mod:`sweeper.engine.local`) starts each trial with :meth:`ForkedTrial.start`::

    agent ── fork ──▶ supervisor (a subreaper) ── fork ──▶ trial process: execute_trial(task)

The *trial process* runs the trainer with a :class:`PipeReporter`: each value of the first
objective is one 17-byte frame on a pipe to the agent (never a storage call; a bounded pipe holds
back a trainer that logs faster than the agent takes its reports), and the pruner's "stop" comes
back as a flag in memory shared with the agent, read at no cost by the next report, which raises
``TrialPruned``; beside it the agent counts the reports it has decided on, which the report after
one of hyperband's bands waits for. Its :class:`~sweeper.worker.task.TrialOutcome` follows on the
same pipe; then it exits with ``os._exit``, so no exit handler or finalizer of the agent's state
runs twice.

The *supervisor* waits for it, whatever it does (``os._exit``, a segfault, a fatal signal), then
ends every process the trial left behind, ``setsid`` ones included, which the subreaper flag
brought back to it (Linux; :mod:`sweeper.worker.reaper`), and tells the agent how the trial
process ended. A SIGTERM to the supervisor (a timeout or a cancel) is passed on to the trial
process, which raises :class:`TrialTerminated` in the trainer; SIGKILL follows after
:data:`KILL_GRACE_S`. The supervisor gets SIGTERM when the agent dies, the trial process SIGKILL
when the supervisor does.

Forked from a process with threads (the agent's lease and watch threads), the children touch
nothing those threads may hold: not the storage, not the agent's stdout or stderr objects (fresh
ones are opened on the same file descriptors), not the agent's logging handlers' streams; Python
itself re-initialises its import and logging locks at fork.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import io
import logging
import mmap
import os
import pickle
import select
import signal
import struct
import sys
import tempfile
import time
import traceback
import warnings
from types import FrameType
from typing import NoReturn

from sweeper.errors import TrialPruned
from sweeper.heap import frozen_heap
from sweeper.worker import reaper, zygote
from sweeper.worker.task import Failure, TrialOutcome, TrialTask
from sweeper.worker.trial import describe_error, execute_trial

_logger = logging.getLogger(__name__)

# Seconds a stopped trial has between SIGTERM and SIGKILL (the same as a program trainer's).
KILL_GRACE_S = 10.0

_REPORT = struct.Struct("<cqd")  # b"R", step, value: one report of the first objective
_OUTCOME = struct.Struct("<cQ")  # b"O", length of the pickled TrialOutcome that follows
# b"M" and the same length field: the libraries the trial imported, for the zygote to preload.
_STEP = struct.Struct("<q")  # the step the pruner stopped the trial at, after its flag byte
_JUDGED = struct.Struct("<Q")  # how many of the trial's reports the agent has decided on
_JUDGED_AT = 16  # 8-aligned: the agent stores the count in one write, never seen torn
_STATUS = struct.Struct("<ii")  # the trial process's wait status, leftover processes ended
STOP_BYTES = _JUDGED_AT + _JUDGED.size  # the stop flag, its step, and the count decided on
_SETTLE_POLL_S = (0.0002, 0.005)  # how often a report waiting for its verdict looks: first, at most
_PIPE_BYTES = 1 << 20  # about 60,000 reports in flight before a trainer waits for the agent
_READ_BYTES = 1 << 20


class TrialTerminated(Exception):  # noqa: N818 - it says what happened, as TrialPruned does
    """Raised in a trainer whose trial process got SIGTERM (a timeout, a cancel, the agent stopping)."""


class PipeReporter:
    """The trial process's side of the report channel: a frame per report, the pruner's flag.

    Reports do not wait for their decision (only the report after one of hyperband's bands waits,
    see :meth:`settle`). A stop decided on an earlier report is raised at the first report after it
    arrived, as a synchronous channel raises it at the report after the decided one (W&B's rule: a
    run is stopped once it goes on after the decision).
    """

    def __init__(self, fd: int, stop: mmap.mmap) -> None:
        self._fd = fd
        self._stop = stop
        self._sent = 0

    def report(self, trial_id: int, step: int, value: float) -> bool:
        """Send the report; raises TrialPruned if the pruner stopped the trial on an earlier one."""
        if self._stop[0] == 1:
            decided = _STEP.unpack_from(self._stop, 1)[0]
            raise TrialPruned(f"the pruner stopped the trial at step {decided}")
        # One frame is far below PIPE_BUF: written whole or not at all, even if a signal lands.
        os.write(self._fd, _REPORT.pack(b"R", step, value))
        self._sent += 1
        return False

    def settle(self, trial_id: int, timeout: float) -> None:
        """Wait until the agent has decided on every report sent (its stop, if any, is then raised
        by the next report), or ``timeout`` seconds. It looks at the shared memory, ever less often."""
        deadline = time.monotonic() + timeout
        pause, longest = _SETTLE_POLL_S
        while self._stop[0] != 1 and _JUDGED.unpack_from(self._stop, _JUDGED_AT)[0] < self._sent:
            if time.monotonic() >= deadline:
                return
            time.sleep(pause)
            pause = min(2 * pause, longest)

    def started(self, trial_id: int) -> None:
        pass  # the agent counts the timeout from the fork


class ForkedTrial:
    """The agent's handle on one trial running in forked processes (see the module docstring)."""

    def __init__(self, pid: int, reports: int, status: int, stop: mmap.mmap) -> None:
        self.pid = pid
        self._reports = reports
        self._status_fd = status
        self._stop = stop
        self._buffer = bytearray()
        self._reports_open = True
        self._judged = 0  # the trial's reports decided on so far
        self._status = b""
        self._reaped: int | None = None
        self.outcome: TrialOutcome | None = None
        self.ended = False
        self.left_behind = 0  # processes the trial left that the supervisor ended
        # The zygote that forked the supervisor (it, not the agent, collects it), if one did.
        self._zygote: zygote.Zygote | None = None
        self.imported: list[str] = []  # installed libraries the trial imported (zygote trials only)

    @classmethod
    def start(cls, task: TrialTask) -> ForkedTrial:
        """Have the zygote fork the supervisor, which forks the trial process; return at once.

        A task that cannot be pickled (a trainer closing over a lock, a socket) is forked from the
        agent itself instead, with a warning: that is safe unless the agent ran a library with a
        thread pool (see :mod:`sweeper.worker.zygote`).
        """
        try:
            payload = zygote.dump_payload(task)
        except Exception as exc:  # pickling raises many kinds
            _warn_fork(f"its trainer cannot be pickled ({type(exc).__name__}: {exc})")
            return cls._fork(task)
        report_r, report_w, status_r, status_w = cls._pipes()
        with tempfile.TemporaryFile() as shared:  # the stop flag, in memory both sides map
            shared.truncate(STOP_BYTES)
            stop = mmap.mmap(shared.fileno(), STOP_BYTES)
            try:
                forker = zygote.zygote()
                pid = forker.fork(payload, (report_w, status_w, shared.fileno()))
            except zygote.ZygoteError as exc:
                for fd in (report_r, report_w, status_r, status_w):
                    os.close(fd)
                stop.close()
                _warn_fork(str(exc))
                return cls._fork(task)
        os.close(report_w)
        os.close(status_w)
        os.set_blocking(report_r, False)
        trial = cls(pid, report_r, status_r, stop)
        trial._zygote = forker
        return trial

    @classmethod
    def _fork(cls, task: TrialTask) -> ForkedTrial:
        """Fork the supervisor from the agent itself."""
        report_r, report_w, status_r, status_w = cls._pipes()
        stop = mmap.mmap(-1, STOP_BYTES)  # shared with the children: the pruner's decision
        for stream in (sys.stdout, sys.stderr):  # else the children would print it again
            with contextlib.suppress(Exception):
                stream.flush()
        agent = os.getpid()
        # The children never collect (and finalize) the agent's garbage; they never leave the block.
        with frozen_heap():
            with warnings.catch_warnings():
                # Python 3.12+ warns on fork with threads; the children touch nothing they hold.
                warnings.simplefilter("ignore", DeprecationWarning)
                pid = os.fork()
            if pid == 0:
                os.close(report_r)
                os.close(status_r)
                supervise(task, report_w, status_w, stop, agent)
        os.close(report_w)
        os.close(status_w)
        os.set_blocking(report_r, False)
        return cls(pid, report_r, status_r, stop)

    @staticmethod
    def _pipes() -> tuple[int, int, int, int]:
        report_r, report_w = os.pipe()
        status_r, status_w = os.pipe()
        # A larger pipe (Linux) lets a fast logger run further ahead; a smaller one only slows it.
        with contextlib.suppress(OSError, AttributeError, ImportError):
            import fcntl

            fcntl.fcntl(report_w, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
        return report_r, report_w, status_r, status_w

    def prune(self, step: int) -> None:
        """The pruner stopped the trial at ``step``: its next report raises TrialPruned in the trainer."""
        if not self._stop.closed:
            _STEP.pack_into(self._stop, 1, step)
            self._stop[0] = 1

    def judged(self, count: int) -> None:
        """The agent decided on ``count`` more of the trial's reports (after :meth:`prune`, if it stops
        the trial: a report waiting for its verdict sees the stop with the count)."""
        self._judged += count
        if not self._stop.closed:
            _JUDGED.pack_into(self._stop, _JUDGED_AT, self._judged)

    def terminate(self) -> None:
        """Stop the trial: SIGTERM now, SIGKILL after the grace period (the supervisor sees to it)."""
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL the supervisor (it did not answer); the trial process dies with it."""
        self._signal(signal.SIGKILL)

    def _signal(self, sig: int) -> None:
        if self._reaped is None:  # never signal a pid that may have been reused
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def pump(self, timeout: float) -> list[tuple[int, float]]:
        """The reports that arrived, waiting up to ``timeout`` seconds for something to happen."""
        if self.ended:
            return []
        watched = [self._status_fd] + ([self._reports] if self._reports_open else [])
        ready, _, _ = select.select(watched, [], [], max(0.0, timeout))
        if self._status_fd in ready:
            chunk = os.read(self._status_fd, _STATUS.size)
            self._status += chunk
            if not chunk or len(self._status) >= _STATUS.size:
                self.ended = True  # the trial process is gone: take what it wrote, then finish
        reports = self._read()
        if self.ended:
            self._finish()
        return reports

    def _read(self) -> list[tuple[int, float]]:
        while True:
            try:
                chunk = os.read(self._reports, _READ_BYTES)
            except BlockingIOError:
                break
            if not chunk:
                self._reports_open = False  # the trial process is gone; its supervisor speaks next
                break
            self._buffer += chunk
            if len(chunk) < _READ_BYTES:
                break
        return self._frames()

    def _frames(self) -> list[tuple[int, float]]:
        reports: list[tuple[int, float]] = []
        buffer, at = self._buffer, 0
        while at < len(buffer):
            kind = buffer[at : at + 1]
            if kind == b"R" and len(buffer) - at >= _REPORT.size:
                _, step, value = _REPORT.unpack_from(buffer, at)
                reports.append((step, value))
                at += _REPORT.size
            elif kind == b"O" and len(buffer) - at >= _OUTCOME.size:
                _, length = _OUTCOME.unpack_from(buffer, at)
                start = at + _OUTCOME.size
                if len(buffer) - start < length:
                    break
                self.outcome = pickle.loads(buffer[start : start + length])
                at = start + length
            elif kind == b"M" and len(buffer) - at >= _OUTCOME.size:
                _, length = _OUTCOME.unpack_from(buffer, at)
                start = at + _OUTCOME.size
                if len(buffer) - start < length:
                    break
                self.imported = bytes(buffer[start : start + length]).decode().split()
                at = start + length
            else:
                break  # a frame not whole yet (or, at the end, one cut short by a kill)
        del buffer[:at]
        return reports

    def _finish(self) -> None:
        self.close()
        if self._zygote is not None and self.imported:
            self._zygote.preload(self.imported)
        if len(self._status) >= _STATUS.size:
            self.left_behind = _STATUS.unpack_from(self._status)[1]

    def death(self) -> str:
        """Why the trial process ended without an outcome, in words."""
        if len(self._status) >= _STATUS.size:
            return describe_exit(_STATUS.unpack_from(self._status)[0], "the trial's process")
        if self._zygote is not None:
            return f"{Failure.WORKER_DIED.value}: the trial's supervisor process ended without a word"
        return describe_exit(self._reaped or 0, "the trial's supervisor process")

    def close(self) -> None:
        """Release the pipes and collect the supervisor (it ends right after its last word)."""
        if self._reaped is None:
            if self._zygote is not None:
                self._zygote.release(self.pid)
            else:
                with contextlib.suppress(ChildProcessError):
                    self._reaped = os.waitpid(self.pid, 0)[1]
            self._reaped = self._reaped or 0
            for fd in (self._reports, self._status_fd):
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._stop.close()


_warned_fork = False


def _warn_fork(why: str) -> None:
    global _warned_fork
    if not _warned_fork:
        _warned_fork = True
        torch = sys.modules.get("torch")
        cuda = getattr(torch, "cuda", None)
        cuda_note = (
            "; this process has initialized CUDA, which a forked trial cannot use"
            if cuda is not None and cuda.is_initialized()
            else ""
        )
        _logger.warning(
            "trials are forked from the agent's process, as %s; a trainer that uses a thread pool the "
            "agent already started (PyTorch's or scikit-learn's OpenMP) may hang there%s",
            why,
            cuda_note,
        )


def describe_exit(status: int, who: str) -> str:
    """A wait status as a fail reason.

    Example:
        >>> describe_exit(11, "the trial's process")
        "worker died: the trial's process was killed by SIGSEGV (Segmentation fault)"
    """
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        what = f"was killed by {name} ({signal.strsignal(number) or 'unknown signal'})"
        if number == signal.SIGKILL:
            what += ": out of memory, or killed from outside"
    else:
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else status
        what = f"exited with code {code} before the trial ended (os._exit() or exit in native code)"
    return f"{Failure.WORKER_DIED.value}: {who} {what}"


# -- the children --------------------------------------------------------------------------------


def supervise(task: TrialTask | bytes, report_w: int, status_w: int, stop: mmap.mmap, agent: int) -> NoReturn:
    """The supervisor: fork the trial process, wait for it, end what it left, say how it ended.

    ``task`` may be the zygote's payload, unpickled in the trial process.
    """
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the agent's to handle
        # Held until there is a trial process to pass it on to (it inherits the mask, then lifts it).
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        reaper.become_subreaper()
        reaper.die_with_parent(signal.SIGTERM, agent)
        me = os.getpid()
        trial = os.fork()
        if trial == 0:
            os.close(status_w)
            _run_trial(task, report_w, stop, me)
        os.close(report_w)
        alive = [True]

        def pass_on(signum: int, frame: FrameType | None) -> None:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once is enough
            if alive[0]:
                os.kill(trial, signal.SIGTERM)
                signal.setitimer(signal.ITIMER_REAL, KILL_GRACE_S)

        def kill(signum: int, frame: FrameType | None) -> None:
            if alive[0]:
                os.kill(trial, signal.SIGKILL)

        signal.signal(signal.SIGALRM, kill)
        signal.signal(signal.SIGTERM, pass_on)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        while True:  # collects the orphans that exit meanwhile too
            # Seen before it is collected: no signal handler can reach a reused pid.
            exited = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOWAIT)
            if exited is not None and exited.si_pid == trial:
                alive[0] = False
                status = os.waitpid(trial, 0)[1]
                break
            if exited is not None:
                os.waitpid(exited.si_pid, 0)
        signal.setitimer(signal.ITIMER_REAL, 0)
        left = reaper.end_children(reap=reaper.reap_any)
        with contextlib.suppress(OSError):
            os.write(status_w, _STATUS.pack(status, left))
    except BaseException:
        with contextlib.suppress(Exception):
            os.write(2, traceback.format_exc().encode())
    os._exit(0)


def _run_trial(task: TrialTask | bytes, report_w: int, stop: mmap.mmap, supervisor: int) -> NoReturn:
    """The trial process: run the trial, send its outcome, exit without the agent's exit handlers."""
    me = os.getpid()
    try:
        reaper.die_with_parent(signal.SIGKILL, supervisor)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, functools.partial(_terminated, me))
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        atexit._clear()  # the agent's; this process runs only those its trial registers
        _fresh_stdio()
        before = set(sys.modules)
        try:
            loaded = task if isinstance(task, TrialTask) else zygote.load_payload(task)
        except Exception as exc:  # the trainer's module, moved or broken since the agent pickled it
            outcome = TrialOutcome.failed(Failure.TRAINER, f"cannot load the trial: {describe_error(exc)}")
        else:
            try:
                outcome = execute_trial(loaded, PipeReporter(report_w, stop))
            except BaseException as exc:  # KeyboardInterrupt, a SIGTERM outside the trainer
                outcome = TrialOutcome.failed(Failure.TRAINER, describe_error(exc))
        if os.getpid() != me:  # a child the trainer forked came back out of it: it has no say
            os._exit(1)
        # Whole, or the agent would read a cut frame: a SIGTERM now waits (SIGKILL does not).
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        try:
            data = pickle.dumps(outcome)
        except Exception as exc:  # an unpicklable value in the outcome
            data = pickle.dumps(TrialOutcome.failed(Failure.TRAINER, f"cannot send the outcome: {exc}"))
        os.set_blocking(report_w, True)
        with contextlib.suppress(BrokenPipeError):  # the agent is gone: no one to tell
            _write_all(report_w, _OUTCOME.pack(b"O", len(data)) + data)
            if not isinstance(task, TrialTask):
                learned = " ".join(zygote.installed_libraries(set(sys.modules) - before)).encode()
                _write_all(report_w, _OUTCOME.pack(b"M", len(learned)) + learned)
        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
    except BaseException:  # nothing may escape a forked child
        if os.getpid() == me:
            with contextlib.suppress(Exception):
                os.write(2, traceback.format_exc().encode())
    os._exit(0 if os.getpid() == me else 1)


def _terminated(trial_process: int, signum: int, frame: FrameType | None) -> None:
    if os.getpid() != trial_process:  # a child the trainer forked: SIGTERM ends it, as by default
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        return
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # raised once: the trainer unwinds in peace
    raise TrialTerminated("the trial's process got SIGTERM")


def _fresh_stdio() -> None:
    """Print through new objects on fds 1 and 2: the agent's may be locked by a thread that no
    longer exists here (a live progress view), or forward somewhere only the agent can reach."""
    for name, fd in (("stdout", 1), ("stderr", 2)):
        old = getattr(sys, name)
        try:
            tty = os.isatty(fd)
            stream = io.TextIOWrapper(
                io.FileIO(fd, "w", closefd=False),
                encoding=getattr(old, "encoding", None) or "utf-8",
                errors="backslashreplace",
                line_buffering=tty or name == "stderr",
                write_through=name == "stderr",
            )
        except (OSError, ValueError):
            continue  # no such fd: keep what there is
        setattr(sys, name, stream)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
