"""What every benchmark shares: its result records, the machine it ran on, and the JSON hand-off.

Each ``bench_*.py`` is a plain script that runs in its own process (each starts the Ray it needs)
and, with ``--json PATH``, writes its :class:`Figure` list there for ``run_all.py`` to tabulate.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parents[1]


@dataclass
class Figure:
    """One measured figure, next to its target.

    ``met`` is None when the figure has no target (documented only).
    """

    section: str
    name: str
    value: str
    target: str = ""
    met: bool | None = None
    note: str = ""


def parse_args(description: str, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The flags every benchmark script takes: ``--quick`` and ``--json PATH``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny sizes")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here as JSON")
    return parser.parse_args(argv)


def emit(figures: Sequence[Figure], path: Path | None) -> None:
    """Print the figures, and write them as JSON to ``path`` if given."""
    for fig in figures:
        mark = {True: "ok", False: "MISSED", None: "-"}[fig.met]
        print(f"[{fig.section}] {fig.name}: {fig.value}  (target {fig.target or '-'}: {mark}) {fig.note}")
    if path is not None:
        path.write_text(json.dumps([asdict(f) for f in figures], indent=1))


def load_figures(path: Path) -> list[Figure]:
    """The figures a benchmark wrote with :func:`emit`."""
    return [Figure(**item) for item in json.loads(path.read_text())]


def worker_pythonpath() -> str:
    """The ``PYTHONPATH`` Ray workers get: this directory (the trainers), then the caller's own
    (a worktree's checkout must win over the installed package on the workers too)."""
    return os.pathsep.join(filter(None, [str(BENCH_DIR), os.environ.get("PYTHONPATH")]))


def scratch_dir(prefix: str) -> Path:
    """A fresh temporary directory, removed when the process exits (kept with ``BENCH_KEEP=1``)."""
    import atexit
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix=prefix))
    if not os.environ.get("BENCH_KEEP"):
        atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


@contextmanager
def stopwatch() -> Iterator[list[float]]:
    """``with stopwatch() as t: ...`` leaves the elapsed seconds in ``t[0]``."""
    box = [0.0]
    start = time.perf_counter()
    try:
        yield box
    finally:
        box[0] = time.perf_counter() - start


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of ``values``, linearly interpolated; NaN when empty."""
    import numpy as np

    return float(np.percentile(np.asarray(values, dtype=float), q)) if len(values) else float("nan")


def rss_mib(pid: int | None = None) -> float:
    """Resident set size of a process (default: this one) in MiB, from /proc."""
    status = Path(f"/proc/{pid or os.getpid()}/status").read_text()
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def machine() -> dict[str, Any]:
    """nproc, memory, CPU model and load average of this machine, for the report."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = float("nan")
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "memory_gib": round(mem_gib, 1),
        "cpu": cpu,
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }


def library_versions() -> dict[str, str]:
    """Versions of the engines compared, for the report."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("sweeper", "optuna", "ray", "sweeps", "torch"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def fmt(value: float, digits: int = 3) -> str:
    """A number with ``digits`` significant digits."""
    return f"{value:.{digits}g}"


def _ray_group(pid: int, name: str, cmdline: bytes) -> str | None:
    """Which part of a sweeper run a process is, from its name and command line; None: not ours."""
    if pid == os.getpid():
        return "agent"
    program = cmdline.split(b"\0", 1)[0]  # the raylet's arguments name the workers' command too
    if name == "raylet" or program.endswith(b"/raylet"):
        return "raylet"
    if name.startswith("gcs_server") or program.endswith(b"/gcs_server"):
        return "GCS"
    if name.startswith("ray::") or b"default_worker.py" in cmdline:
        return "workers"
    return None


def cpu_by_process() -> dict[int, tuple[str, float]]:
    """Every process of this Ray run with its CPU seconds so far (user + system, from ``/proc``)."""
    tick = os.sysconf("SC_CLK_TCK")
    found: dict[int, tuple[str, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:  # gone meanwhile
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        group = _ray_group(int(entry.name), name, cmdline)
        if group is not None:
            fields = stat[stat.rindex(")") + 2 :].split()
            found[int(entry.name)] = (group, (int(fields[11]) + int(fields[12])) / tick)
    return found


def cpu_spent(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU seconds each group spent between two :func:`cpu_by_process` readings."""
    spent: dict[str, float] = {}
    for pid, (group, seconds) in after.items():
        spent[group] = spent.get(group, 0.0) + seconds - before.get(pid, (group, 0.0))[1]
    return spent


def live_workers(outdir: Path) -> set[int]:
    """The live processes that ran a trial writing its record in ``outdir`` (``NUMBER-ATTEMPT-PID.json``)."""
    pids = {int(path.stem.rsplit("-", 1)[1]) for path in outdir.glob("*.json")}
    return {pid for pid in pids if Path(f"/proc/{pid}").exists()}


def init_local_ray(num_cpus: int, **options: Any) -> None:
    """A local Ray of ``num_cpus`` logical CPUs, quiet, whose workers import the benchmarks' trainers."""
    import ray

    ray.init(
        address="local",
        num_cpus=num_cpus,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": worker_pythonpath()}},
        **options,
    )
