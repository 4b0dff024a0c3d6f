"""Which Ray an agent uses, and starting it in the background while the agent sets up.

Starting a local Ray takes seconds; creating the sweep, reading the study and importing the trainer
need no Ray. :meth:`RayStart.begin` therefore runs ``ray.init`` in a thread, and the
:class:`~sweeper.engine.executor.RayExecutor` waits for it only when it needs Ray.

The rule, first match wins:

1. **Ray is already initialized in this process** (a notebook, a test): it is reused as it is,
   and the project is not shipped (the trial puts it on the workers' ``sys.path``).
2. **An address is given** (``--ray-address``, ``ray_address=``): ``local`` starts a fresh instance
   (rule 4); anything else (``auto``, ``host:port``, ``ray://...``) is connected to, and the project
   directory is shipped to the workers (Ray's ``working_dir``), since the cluster may span machines.
3. **A Ray that ``ray start`` left running** on this machine: Ray records its address in
   ``ray_current_cluster`` under its temp directory (``$RAY_TMPDIR/ray``, else ``$TMPDIR/ray``,
   else ``/tmp/ray``) and ``ray stop`` clears it. When that address answers a TCP connection within
   :data:`PROBE_TIMEOUT_S`, the agent connects to it and ships the project, as in rule 2 (a
   worker node's file names the head, so the cluster may span machines). A stale file (the port
   closed) costs one failed connection; a cluster that refuses us (another user's token, another
   Ray version) is skipped with a warning, and rule 4 applies.
4. **Otherwise a fresh local instance**, owned by the agent and shut down when it ends. Its workers
   run on this machine and see the project where it is, so nothing is shipped: Ray would otherwise
   zip the project, and every worker would wait for its runtime environment to be unpacked.

Ray ends, in every case, with the agent that called ``ray.init`` (:func:`shutdown`: a connected
cluster is only left, not stopped; a local instance's processes are stopped together).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

_logger = logging.getLogger(__name__)

#: How long the ``ray start`` cluster's address may take to accept a TCP connection (rule 3).
PROBE_TIMEOUT_S = 0.5

# What never travels to the workers with the project directory.
SHIP_EXCLUDES = (
    ".venv",
    "venv",
    ".git",
    ".sweeper",
    "mlruns",
    "wandb",
    "__pycache__",
    "*.pyc",
    ".mypy_cache",
)
SHIP_MAX_FILE_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class RayConnection:
    """The Ray an agent got.

    Attributes:
        owned: Whether the agent called ``ray.init`` (then it calls ``ray.shutdown`` at its end).
        shipped: Whether the project directory travels to the workers as their working directory.
        how: How the Ray was found, for the agent's debug line.
    """

    owned: bool
    shipped: bool
    how: str


class RayStart:
    """``ray.init`` by the rule of this module, in a background thread; :meth:`wait` for the result.

    Use it as a context manager around what runs meanwhile: leaving the block before an executor
    took the connection (an error while the sweep was created) waits for Ray and shuts it down,
    so no Ray outlives the command.

    Args:
        address: The ``--ray-address`` (None: rules 1, 3 and 4).
        ship_dir: The project directory to ship when connecting to a cluster.
    """

    def __init__(self, address: str | None, ship_dir: Path | None) -> None:
        self._address = address
        self._ship_dir = ship_dir
        self._result: RayConnection | None = None
        self._error: BaseException | None = None
        self._done = threading.Event()
        self._taken = False

    @classmethod
    def begin(cls, address: str | None, ship_dir: Path | None) -> RayStart:
        """Start connecting now, on the starter thread (at once when Ray is already initialized).

        Ray is imported here, before this returns: an import holds the interpreter lock, and the
        caller's own work meanwhile (importing the trainer, creating the sweep) would slow it, and
        with it ``ray.init``'s first step, starting Ray's processes, which then run on their own.
        """
        import ray  # noqa: F401

        start = cls(address, ship_dir)
        if _initialized():
            start._run()  # rule 1: nothing to wait for
            start._done.set()
        else:
            _starter().submit(start)
        return start

    def wait(self) -> RayConnection:
        """The connection, once made; the caller now owns it (and its ``ray.shutdown``).

        Raises:
            Exception: what ``ray.init`` raised.
        """
        if not self._done.is_set():
            _import_serializers()  # while ray.init waits for Ray's processes
        self._done.wait()
        self._taken = True
        if self._error is not None:
            raise self._error
        assert self._result is not None  # set by _run unless it raised
        return self._result

    def __enter__(self) -> RayStart:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._taken:
            return
        with contextlib.suppress(Exception):
            if self.wait().owned:
                shutdown()

    def _run(self) -> None:
        try:
            self._result = connect(self._address, self._ship_dir)
        except BaseException as exc:  # handed to the waiting thread
            self._error = exc


#: What Ray imports when a process first serializes something (its add-ons for pydantic and
#: Arrow): 0.3 s of the agent's first Ray call here (its first trial's submission) otherwise.
_SERIALIZER_MODULES = ("ray._common.pydantic_compat", "ray._private.arrow_serialization", "pyarrow")


def _import_serializers() -> None:
    for name in _SERIALIZER_MODULES:
        with contextlib.suppress(Exception):  # a Ray that moved them imports its own when it needs them
            importlib.import_module(name)


class _Starter:
    """The one thread that calls ``ray.init`` in this process, alive as long as the process.

    It must outlive Ray: on Linux the processes ``ray.init`` starts (GCS, raylet) are bound to the
    *thread* that started them (``PR_SET_PDEATHSIG``) and die with it.
    """

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[RayStart] = queue.SimpleQueue()
        threading.Thread(target=self._serve, name="sweeper-ray-start", daemon=True).start()

    def submit(self, start: RayStart) -> None:
        self._queue.put(start)

    def _serve(self) -> None:
        while True:
            start = self._queue.get()
            try:
                start._run()
            finally:
                start._done.set()


_starter_lock = threading.Lock()
_the_starter: _Starter | None = None


def _starter() -> _Starter:
    global _the_starter  # one per process, made on first use
    with _starter_lock:
        if _the_starter is None:
            _the_starter = _Starter()
        return _the_starter


def connect(address: str | None, ship_dir: Path | None) -> RayConnection:
    """Connect to Ray or start it, by the rule of this module (in the calling thread)."""
    import ray

    if ray.is_initialized():
        return RayConnection(owned=False, shipped=False, how="reused the Ray initialized in this process")
    if address is None:
        found = running_cluster()
        if found is not None:
            try:
                return _init(found, ship_dir, f"connected to the Ray `ray start` left running at {found}")
            except Exception as exc:  # not ours to use: start our own
                _logger.warning(
                    "the Ray at %s (from `ray start`) refused the connection (%s: %s); starting a local one",
                    found,
                    type(exc).__name__,
                    str(exc).strip().splitlines()[0] if str(exc).strip() else "",
                )
                with contextlib.suppress(Exception):
                    ray.shutdown()
        return _init(None, ship_dir, "started a local Ray")
    if address == "local":
        return _init(None, ship_dir, "started a local Ray")
    return _init(address, ship_dir, f"connected to the Ray at {address}")


#: How long the raylet and the GCS get to exit on SIGTERM before they are killed (as in Ray).
STOP_GRACE_S = 1.0
#: The same for Ray's Python helpers (dashboard, log monitor: they exit within 0.02 s).
HELPER_GRACE_S = 0.2
#: Ray's autoscaler monitor ends its sleep before it exits on SIGTERM (0.7 s here; Ray's own
#: shutdown waits a second, then kills it): a local instance's monitor holds nothing to save, so
#: it is killed at once.
MONITOR_GRACE_S = 0.0


def shutdown() -> None:
    """``ray.shutdown()``, with a local instance's processes stopped together rather than in turn.

    Ray stops the processes it started one after another, giving each up to a second (its
    ``Node.kill_all_processes`` says it is slower than necessary for that), and its autoscaler
    monitor uses all of it before it is killed: 1.2-1.5 s at the end of every ``sweeper run`` on a
    fresh local Ray. Here the raylet still goes first, so that it ends its workers itself; then the
    GCS and the helpers get SIGTERM at once, and SIGKILL after their grace (:data:`STOP_GRACE_S`,
    :data:`HELPER_GRACE_S`, :data:`MONITOR_GRACE_S`). This leans on Ray's private node object
    (tested on Ray 2.60): if it does not look as expected, Ray's own shutdown runs unchanged.
    """
    import ray

    node = _local_node()
    if node is not None:
        # An instance attribute shadows the method for the one call ray.shutdown makes, after it
        # disconnected this driver.
        node.kill_all_processes = functools.partial(_stop_processes, node)
    ray.shutdown()


def _local_node() -> Any:
    """Ray's node object for the instance this process started, if it has what we use; else None."""
    try:
        from ray._private import ray_constants
        from ray._private import worker as ray_worker
    except ImportError:  # pragma: no cover - Ray moved its internals: its own shutdown
        return None
    node = getattr(ray_worker, "_global_node", None)
    processes = getattr(node, "all_processes", None)
    if not isinstance(processes, dict) or not hasattr(node, "removal_lock"):
        return None
    if not all(hasattr(ray_constants, name) for name in ("PROCESS_TYPE_RAYLET", "PROCESS_TYPE_GCS_SERVER")):
        return None  # pragma: no cover - as above
    for infos in processes.values():
        for info in infos:
            if not isinstance(getattr(info, "process", None), subprocess.Popen):
                return None
    return node


def _stop_processes(node: Any, *_: Any, **__: Any) -> None:
    """Stop the node's processes: the raylet, then the rest together (its reaper, if any, last)."""
    from ray._private import ray_constants

    with node.removal_lock:
        processes: dict[str, list[Any]] = node.all_processes
        raylet = processes.pop(ray_constants.PROCESS_TYPE_RAYLET, [])
        gcs = processes.pop(ray_constants.PROCESS_TYPE_GCS_SERVER, [])
        reaper = processes.pop(getattr(ray_constants, "PROCESS_TYPE_REAPER", "reaper"), [])
        monitor = processes.pop(getattr(ray_constants, "PROCESS_TYPE_MONITOR", "monitor"), [])
        helpers = [info for infos in processes.values() for info in infos]
        processes.clear()
        _stop_together([(info.process, STOP_GRACE_S) for info in raylet])
        rest = [(info.process, STOP_GRACE_S) for info in gcs]
        rest += [(info.process, MONITOR_GRACE_S) for info in monitor]
        _stop_together(rest + [(info.process, HELPER_GRACE_S) for info in helpers])
        _stop_together([(info.process, STOP_GRACE_S) for info in reaper])


def _stop_together(processes: list[tuple[subprocess.Popen[Any], float]]) -> None:
    """SIGTERM to every process still running, then wait for each up to its grace, SIGKILL after it."""
    running = [(process, grace) for process, grace in processes if process.poll() is None]
    for process, _ in running:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
    began = time.monotonic()
    for process, grace in sorted(running, key=lambda each: each[1]):
        try:
            process.wait(timeout=max(0.0, began + grace - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):  # a process stuck in the kernel is left
                process.wait(timeout=STOP_GRACE_S)


def running_cluster() -> str | None:
    """The address of a Ray that ``ray start`` left running on this machine, if it answers (rule 3)."""
    try:
        from ray._common.utils import get_ray_address_file
    except ImportError:  # pragma: no cover - Ray moved it: no detection, a fresh instance
        return None
    try:
        address = Path(get_ray_address_file(None)).read_text().strip()
    except OSError:
        return None
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        return None
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_TIMEOUT_S):
            return address
    except OSError:
        return None


def _init(address: str | None, ship_dir: Path | None, how: str) -> RayConnection:
    import ray

    shipped = address is not None and ship_dir is not None
    runtime_env: dict[str, Any] | None = None
    if shipped:
        assert ship_dir is not None
        runtime_env = {"working_dir": str(ship_dir), "excludes": ship_excludes(ship_dir)}
    quiet_ray_notices()
    ray.init(
        # "local" starts a fresh instance, never a cluster some other process made "current".
        address=address or "local",
        runtime_env=runtime_env,
        include_dashboard=False,
        # Ray's INFO lines (packaging, start-up) drown the agent's own progress.
        logging_level=logging.WARNING,
    )
    forward_only_task_output()
    _logger.debug("%s%s", how, "; the project is shipped to the workers" if shipped else "")
    return RayConnection(owned=True, shipped=shipped, how=how)


def _initialized() -> bool:
    ray = sys.modules.get("ray")  # never initialized when never imported: no import for the question
    return ray is not None and bool(ray.is_initialized())


def ship_excludes(root: Path) -> list[str]:
    """Ray ``excludes`` for shipping ``root``: tool and tracker directories, and files too large."""
    excludes = list(SHIP_EXCLUDES)
    skip = {name for name in SHIP_EXCLUDES if "*" not in name}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in skip]
        for name in files:
            path = Path(folder) / name
            try:
                if path.stat().st_size > SHIP_MAX_FILE_BYTES:
                    excludes.append("/" + path.relative_to(root).as_posix())
            except OSError:
                continue
    return excludes


RAY_TOKEN_AUTH_NOTE = (
    "Ray turned on token authentication for the local cluster it started (its default for a new "
    "local cluster; RAY_AUTH_MODE=disabled turns it off)"
)


def quiet_ray_notices() -> None:
    """Keep Ray's start-up notices that do not concern a sweeper user off their terminal.

    - "Directory '.git' is now ignored by default": we exclude those directories ourselves.
    - "Token authentication is enabled for this Ray cluster": Ray's default for the local
      cluster it starts; it becomes one debug line of ours (``sweeper --verbose``).
    - "SIGTERM handler is not set because current thread is not the main thread": we start Ray in
      a thread on purpose, and the agent's own SIGTERM handler is the one that should stay.
    """
    logging.getLogger("ray._private.worker").addFilter(_drop_known_notices)
    logging.getLogger("ray._private.authentication.authentication_token_setup").addFilter(
        _token_auth_enabled_as_ours
    )


def forward_only_task_output() -> None:
    """Of what Ray's workers write, pass on what tasks and actors wrote (the trainers' output) and
    the raylet's notices; drop what a worker that ran nothing wrote, such as the crash dump of an
    idle worker killed as Ray shuts down (one debug line of ours says so, ``sweeper --verbose``).

    Ray forwards worker output through a handler it names ``ray_print_logs``; if a Ray version
    names it otherwise, its own handler stays as it is.
    """
    try:
        from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher
    except ImportError:  # pragma: no cover - Ray's internals moved; keep its default
        return
    found = [handler for name, handler in dispatcher.handlers if name == _RAY_PRINT_LOGS]
    if len(found) != 1 or getattr(found[0], "sweeper_filter", False):
        return
    original = found[0]

    def forward(data: dict[str, Any]) -> None:
        if data.get("task_name") or data.get("actor_name") or data.get("pid") in ("raylet", "autoscaler"):
            original(data)
            return
        lines = [line for line in data.get("lines", []) if line.strip()]
        if lines:
            _logger.debug(
                "a Ray worker that ran no trial (pid %s) wrote %d line(s), not shown; the first: %s",
                data.get("pid"),
                len(lines),
                lines[0].strip(),
            )

    forward.sweeper_filter = True  # type: ignore[attr-defined]
    dispatcher.remove_handler(_RAY_PRINT_LOGS)
    dispatcher.add_handler(_RAY_PRINT_LOGS, forward)


_RAY_PRINT_LOGS = "ray_print_logs"
_KNOWN_NOTICES = (
    "Directory %r is now ignored by default",
    "SIGTERM handler is not set because current thread is not the main thread",
)


def _drop_known_notices(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith(_KNOWN_NOTICES)


def _token_auth_enabled_as_ours(record: logging.LogRecord) -> bool:
    if str(record.msg).startswith("Token authentication is enabled for this Ray cluster"):
        _logger.debug(RAY_TOKEN_AUTH_NOTE)
        return False
    return True
