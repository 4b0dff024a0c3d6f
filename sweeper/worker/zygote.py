"""A clean process that the local executor's trials are forked from.

Forking the agent itself is unsafe once the agent has run a library with a thread pool: PyTorch's
and scikit-learn's OpenMP runtime (GNU libgomp) keeps a pool that does not survive ``fork``, so
the child's first parallel operation waits forever for threads that exist only in the parent. A
notebook that trained one model, a test process, any agent that ran a trainer in-process is such
a parent. The *zygote* is a fresh interpreter, started once per agent process, that imports only
:mod:`sweeper.worker.forked` and never runs trainer code; each trial is forked from it::

    agent ──(socket: task + pipe fds)──▶ zygote ── fork ──▶ supervisor ── fork ──▶ trial process

The task travels pickled with ``cloudpickle`` (a trainer defined in ``__main__`` or a notebook
goes by value, one in a module by reference), with the agent's environment, working directory
and ``sys.path`` at that moment, so a trial sees what a fork of the agent would have seen; it is
unpickled in the trial process, never in the zygote. The pipes and the stop flag's shared memory
go as file descriptors (``SCM_RIGHTS``).

After each trial the zygote imports the installed libraries that trial imported (never the
project's own modules): a trainer that imports PyTorch lazily pays its seconds of imports once,
not per trial, as on a reused Ray worker.

The zygote dies with the agent (``PR_SET_PDEATHSIG`` on Linux, and when its socket closes), and
its supervisors die with it. It collects a supervisor only once the agent has released it (seen
its status pipe close), so the agent never signals a pid that may have been reused.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import mmap
import os
import pickle
import platform
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from sweeper.worker.task import TrialTask

# b"T" + payload length (6 fds ride along), b"R" + a pid to release, b"P" + length of module names
_REQUEST = struct.Struct("<cQ")
_PID = struct.Struct("<q")  # the supervisor's pid, the zygote's answer to b"T"
_REAP_S = 0.5

# Popen runs on this thread, which lives as long as the process: on Linux PR_SET_PDEATHSIG fires
# when the *thread* that started the zygote ends, not the process.
_spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sweeper-zygote")


class ZygoteError(RuntimeError):
    """The zygote could not be started or did not answer."""


class Zygote:
    """The agent's handle on its zygote process; :func:`zygote` gives the process's one."""

    def __init__(self) -> None:
        self._sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        code = (
            "import sys; sys.path[:0] = sys.argv[3:]; "
            "from sweeper.worker.zygote import serve; serve(int(sys.argv[1]), int(sys.argv[2]))"
        )
        command = [sys.executable, "-c", code, str(theirs.fileno()), str(os.getpid()), *_import_path()]
        try:
            self._process = _spawner.submit(
                subprocess.Popen, command, pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL
            ).result()
        except OSError as exc:
            self._sock.close()
            raise ZygoteError(f"cannot start the process trials are forked from: {exc}") from exc
        finally:
            theirs.close()
        self._lock = threading.Lock()

    def alive(self) -> bool:
        return self._process.poll() is None

    def fork(self, payload: bytes, fds: tuple[int, int, int]) -> int:
        """Fork a supervisor for the pickled trial ``payload`` with its (report, status, stop) fds.

        The agent's stdin, stdout and stderr as they are now go along (a test's capture, a redirect
        made since the zygote started, the terminal a ``breakpoint()`` reads), so the trial sees
        what a fork of the agent would.
        """
        with self._lock, _standard_streams() as streams:
            try:
                socket.send_fds(self._sock, [_REQUEST.pack(b"T", len(payload))], [*fds, *streams])
                self._sock.sendall(payload)
                answer = _recv_exactly(self._sock, _PID.size)
            except OSError as exc:
                raise ZygoteError(f"the process trials are forked from is gone: {exc}") from exc
        if answer is None:
            raise ZygoteError("the process trials are forked from is gone")
        pid: int = _PID.unpack(answer)[0]
        if pid < 0:
            raise ZygoteError(f"the process trials are forked from could not fork: {os.strerror(-pid)}")
        return pid

    def release(self, pid: int) -> None:
        """The supervisor ``pid`` has ended (its status pipe closed): the zygote may collect it."""
        with self._lock, contextlib.suppress(OSError):
            self._sock.sendall(_REQUEST.pack(b"R", pid))

    def preload(self, modules: list[str]) -> None:
        """Have the zygote import these libraries, so the next trials start with them loaded."""
        names = " ".join(modules).encode()
        with self._lock, contextlib.suppress(OSError):
            self._sock.sendall(_REQUEST.pack(b"P", len(names)) + names)

    def close(self) -> None:
        """Close the socket; the zygote exits when it sees that (its trials run on to their end)."""
        self._sock.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(timeout=5)


_current: Zygote | None = None
_current_lock = threading.Lock()


def zygote() -> Zygote:
    """This process's zygote, started on first use and again if it died."""
    global _current
    with _current_lock:
        if _current is None or not _current.alive():
            if _current is not None:
                _current.close()
            _current = Zygote()
            atexit.register(_current.close)
        return _current


def reset() -> None:
    """Close this process's zygote; the next trial starts a fresh one (what it preloaded is gone:
    call it after installing or changing a library in a long-lived process, such as a notebook)."""
    global _current
    with _current_lock:
        if _current is not None:
            _current.close()
        _current = None


def prestart() -> None:
    """Start the zygote now (its imports then overlap whatever the agent does before a trial)."""
    with contextlib.suppress(ZygoteError):
        zygote()


@contextlib.contextmanager
def _standard_streams() -> Iterator[list[int]]:
    """The agent's fds 0, 1 and 2, with /dev/null standing in for any that is closed."""
    opened: list[int] = []
    streams = []
    for standard in (0, 1, 2):
        try:
            os.fstat(standard)
            streams.append(standard)
        except OSError:
            opened.append(os.open(os.devnull, os.O_RDWR))
            streams.append(opened[-1])
    try:
        yield streams
    finally:
        for fd in opened:
            os.close(fd)


def _import_path() -> list[str]:
    """The agent's ``sys.path`` entries that exist, with ``''`` made absolute."""
    return [os.path.abspath(entry or os.curdir) for entry in sys.path if os.path.isdir(entry or os.curdir)]


def _recv_exactly(sock: socket.socket, size: int) -> bytes | None:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return bytes(data)


# -- the zygote ----------------------------------------------------------------------------------


def serve(fd: int, agent: int) -> NoReturn:
    """The zygote's loop: fork a supervisor per request until the agent's socket closes."""
    from sweeper.worker import forked, reaper

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the agent's to handle
    reaper.die_with_parent(signal.SIGTERM, agent)
    sock = socket.socket(fileno=fd)
    released: set[int] = set()
    while True:
        ready, _, _ = select.select([sock], [], [], _REAP_S)
        for pid in list(released):
            with contextlib.suppress(ChildProcessError):
                if os.waitpid(pid, os.WNOHANG)[0] == 0:
                    continue
            released.discard(pid)
        if not ready:
            continue
        try:
            header, fds, _, _ = socket.recv_fds(sock, _REQUEST.size, 6)
        except OSError:
            break
        if 0 < len(header) < _REQUEST.size:  # a stream may split even 9 bytes
            header += _recv_exactly(sock, _REQUEST.size - len(header)) or b""
        if len(header) < _REQUEST.size:
            break  # the agent is gone
        kind, value = _REQUEST.unpack(header)
        if kind == b"R":
            released.add(value)
            continue
        if kind == b"P":
            names = _recv_exactly(sock, value)
            if names is None:
                break
            _preload(names.decode().split())
            continue
        payload = _recv_exactly(sock, value)
        if payload is None or len(fds) != 6:
            break
        _warm(payload)
        try:
            pid = os.fork()
        except OSError as exc:
            pid = -(exc.errno or 1)
        if pid == 0:
            sock.close()
            report_w, status_w, stop_fd, *streams = fds
            stop = mmap.mmap(stop_fd, forked.STOP_BYTES)
            for standard, received in enumerate(streams):
                os.dup2(received, standard)
            for each in (stop_fd, *streams):
                os.close(each)
            forked.supervise(payload, report_w, status_w, stop, os.getppid())
        for each in fds:
            os.close(each)
        sock.sendall(_PID.pack(pid))
    os._exit(0)


def _preload(modules: list[str]) -> None:
    """Import installed libraries a trial imported (PyTorch, scikit-learn, wandb: seconds each), so
    every later trial forks with them loaded. Importing starts no OpenMP pool (running does), and
    the agent had imported the trainer's own module before forking from it anyway."""
    for name in modules:
        if name not in sys.modules:
            with contextlib.suppress(BaseException):  # a library that fails here fails in its trial
                importlib.import_module(name)


def _warm(payload: bytes) -> None:
    """Fill the per-process caches every trial's start reads, here, once: the trackers' entry points
    for the trial's import path, and the package versions and platform a run records (100 ms a
    trial otherwise: each forked trial starts with the zygote's caches)."""
    with contextlib.suppress(Exception):  # only ever a head start: the trial reads them itself
        from sweeper.trackers import environment, registry

        _, _, path, _ = pickle.loads(payload)  # the agent's environment, not the task's code
        saved = sys.path[:]
        sys.path[:] = path  # what the trial's own scan will look through, and its cache key
        try:
            registry.scan_entry_points(tuple(path))
        finally:
            sys.path[:] = saved
        environment.package_versions()
        platform.platform()  # asks `uname -p` in a subprocess the first time


def installed_libraries(modules: set[str]) -> list[str]:
    """What of ``modules`` the zygote may import for later trials: the top-level packages installed
    in a site-packages directory, and sweeper's own modules (its trackers, say: 30 ms a trial), not
    the project's own code, which may do anything when imported."""
    tops = sorted({name.partition(".")[0] for name in modules})
    found = sorted(name for name in modules if name.startswith("sweeper."))
    for top in tops:
        path = getattr(sys.modules.get(top), "__file__", None) or ""
        if (
            top != "sweeper"
            and not top.startswith("_")
            and ("site-packages" in path or "dist-packages" in path)
        ):
            found.append(top)
    return found


def load_payload(payload: bytes) -> TrialTask:
    """In the trial process: the task, once the agent's environment, directory and import path are
    in place (unpickling it may import the trainer's module)."""
    environ, cwd, path, task = pickle.loads(payload)
    os.environ.clear()
    os.environ.update(environ)
    with contextlib.suppress(OSError):
        os.chdir(cwd)
    sys.path[:] = path
    loaded: TrialTask = pickle.loads(task)
    return loaded


def dump_payload(task: TrialTask) -> bytes:
    """In the agent: what :func:`load_payload` takes (raises if the task cannot be pickled)."""
    import cloudpickle

    # The trainer's module is found where the agent found it, even through a relative sys.path
    # entry the agent's directory no longer resolves.
    path = [os.path.abspath(entry or os.curdir) for entry in sys.path] + _module_root(task.trainer)
    return pickle.dumps((dict(os.environ), os.getcwd(), path, cloudpickle.dumps(task)))


def _module_root(trainer: object) -> list[str]:
    """The sys.path entry the module of a trainer function was imported from, if it was."""
    name = getattr(trainer, "__module__", None) or "__main__"
    file = getattr(sys.modules.get(name), "__file__", None)
    if not callable(trainer) or name == "__main__" or not file:
        return []
    root = os.path.dirname(os.path.abspath(file))
    for _ in range(name.count(".") + (os.path.basename(file) == "__init__.py")):
        root = os.path.dirname(root)
    return [root]
