"""Which Ray an agent uses (sweeper.engine.ray_start's rule), and that the local executor never needs Ray."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from sweeper.engine import ray_start
from sweeper.engine.ray_start import RayConnection, RayStart
from sweeper.engine.trainer_check import _may_bind

SPEC = """\
method: random
metric: {name: value}
parameters:
  x: {min: 0.0, max: 1.0}
sweeper: {trainer: "noop_trainer:train"}
"""


def _project(root: Path) -> Path:
    (root / "noop_trainer.py").write_text("def train(config, trial):\n    return {'value': config['x']}\n")
    (root / "spec.yaml").write_text(SPEC)
    return root


def _run_and_list_ray(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``sweeper run`` in a fresh interpreter, which then says whether Ray was ever imported."""
    script = textwrap.dedent(
        f"""
        import sys
        from sweeper.cli import main
        try:
            main.main({["run", "spec.yaml", "--storage", f"journal://{project / 'j.log'}", *args]!r})
        except SystemExit as exc:
            print("exit", exc.code)
        print("ray imported:", "ray" in sys.modules)
        """
    )
    return subprocess.run(
        [sys.executable, "-c", script], cwd=project, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_local_executor_never_imports_ray(project: Path) -> None:
    done = _run_and_list_ray(_project(project), "--executor", "local", "--count", "3")
    assert "exit 0" in done.stdout, done.stderr[-2000:]
    assert "3 trials (3 complete" in done.stdout + done.stderr
    assert done.stdout.strip().splitlines()[-1] == "ray imported: False"


BEGIN_SCRIPT = """
import sys
from sweeper.engine import ray_start

class Began(Exception):
    pass

def begin(cls, address, ship_dir):
    heavy = {"optuna", "numpy", "sqlalchemy", "ray"}
    print("imported when Ray's start began:", sorted(set(sys.modules) & heavy))
    raise Began

ray_start.RayStart.begin = classmethod(begin)
from sweeper.cli import main
try:
    main.main(["run", "spec.yaml", "--storage", sys.argv[1], "--count", "1"], standalone_mode=False)
except Began:
    print("began")
"""


def test_sweeper_run_begins_ray_start_before_it_imports_optuna(project: Path) -> None:
    """Optuna and NumPy (a quarter of a second) are imported while Ray starts, not before."""
    _project(project)
    done = subprocess.run(
        [sys.executable, "-c", BEGIN_SCRIPT, f"journal://{project / 'j.log'}"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.stdout.strip().splitlines()[-2:] == ["imported when Ray's start began: []", "began"], (
        done.stdout + done.stderr[-2000:]
    )


@pytest.mark.parametrize(
    ("trainer", "error"),
    [
        ("noop_trainr:train", "cannot import trainer module 'noop_trainr'"),
        ("noop_trainer:trian", "trainer module 'noop_trainer' has no attribute 'trian'"),
        ("broken_trainer:train", "cannot import trainer module 'broken_trainer': SyntaxError"),
        ("noop_trainer", "trainer must be 'module:function'"),
    ],
)
def test_a_misspelt_trainer_fails_before_ray_starts(project: Path, trainer: str, error: str) -> None:
    """The trainer's source is read before Ray starts (its import runs while Ray starts)."""
    (_project(project) / "broken_trainer.py").write_text("def train(config, trial)\n    return 1\n")
    done = _run_and_list_ray(project, "--trainer", trainer)
    assert "exit 5" in done.stdout, done.stderr[-2000:]
    assert error in done.stderr
    assert done.stdout.strip().splitlines()[-1] == "ray imported: False"


def test_a_sweep_naming_no_trainer_fails_before_ray_starts(project: Path) -> None:
    _project(project)
    (project / "spec.yaml").write_text(SPEC.replace('sweeper: {trainer: "noop_trainer:train"}', ""))
    done = _run_and_list_ray(project)
    assert "exit 5" in done.stdout, done.stderr[-2000:]
    assert "names no trainer" in done.stderr
    assert done.stdout.strip().splitlines()[-1] == "ray imported: False"


@pytest.mark.parametrize(
    "source",
    [
        "def train(config, trial):\n    return 1\n",
        "import math\ntrain = math.sqrt\n",
        "from math import sqrt as train\n",
        "if True:\n    class train:\n        pass\n",
        "from math import *\n",
        "def __getattr__(name):\n    return len\n",
        "globals()['train'] = len\n",
    ],
)
def test_a_trainer_the_source_may_bind_is_left_to_the_import(tmp_path: Path, source: str) -> None:
    module = tmp_path / "maybe.py"
    module.write_text(source)
    assert _may_bind(str(module), "train")
    dynamic = any(mark in source for mark in ("*", "__getattr__", "globals"))
    assert _may_bind(str(module), "other") is dynamic  # a name it binds nowhere: no


@pytest.fixture
def ray_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Ray's temp directory for this test only, where `ray start` records its cluster's address."""
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    (tmp_path / "ray").mkdir()
    return tmp_path / "ray"


@pytest.fixture
def listening() -> Iterator[int]:
    """A port something listens on (as a running cluster's GCS does)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


def test_a_ray_start_cluster_is_found_by_the_address_it_left(ray_dir: Path, listening: int) -> None:
    assert ray_start.running_cluster() is None  # no `ray start` on this machine
    (ray_dir / "ray_current_cluster").write_text(f"127.0.0.1:{listening}\n")
    assert ray_start.running_cluster() == f"127.0.0.1:{listening}"


def test_a_stale_or_garbled_address_is_no_cluster(ray_dir: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on any more
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    for text in (f"127.0.0.1:{closed}", "", "no-port", "host:abc"):
        (ray_dir / "ray_current_cluster").write_text(text)
        assert ray_start.running_cluster() is None, text


@pytest.mark.ray
@pytest.mark.usefixtures("ray_session")
def test_a_ray_initialized_in_the_process_is_reused_as_it_is(tmp_path: Path) -> None:
    import ray

    start = RayStart.begin("10.0.0.1:6379", tmp_path)  # even with an address: ray.init is not called again
    with start:
        got = start.wait()
    assert got == RayConnection(owned=False, shipped=False, how="reused the Ray initialized in this process")
    assert ray.is_initialized()  # leaving the block after wait() leaves Ray to its owner


STOP_SCRIPT = """
import os, time
import ray
from sweeper.engine import ray_start

@ray.remote
def pid():
    return os.getpid()

def alive(pid):  # a zombie no one has reaped yet is gone too
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except FileNotFoundError:
        return False

ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
workers = set(ray.get([pid.remote() for _ in range(4)]))
node = ray._private.worker._global_node
started = {kind: [info.process for info in infos] for kind, infos in node.all_processes.items()}
assert ray_start._local_node() is node, "Ray's node no longer looks as ray_start expects"
assert "monitor" in started, sorted(started)  # the process killed without a grace
ray_start.shutdown()
assert not ray.is_initialized()
assert node.all_processes == {}
print("exit codes", {kind: [p.returncode for p in ps] for kind, ps in started.items()})
assert all(p.returncode is not None for ps in started.values() for p in ps)
deadline = time.monotonic() + 10  # the raylet ended its workers
while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
    time.sleep(0.1)
assert not any(alive(pid) for pid in workers), "a worker outlived its raylet"
ray_start.shutdown()  # no Ray: Ray's own shutdown, a no-op
print("stopped cleanly")
"""


@pytest.mark.ray
def test_a_local_ray_is_stopped_whole_with_its_processes_together() -> None:
    """Every process ``ray.init`` started has exited once ``shutdown`` returns, workers soon after."""
    done = subprocess.run(
        [sys.executable, "-c", STOP_SCRIPT], capture_output=True, text=True, timeout=240, check=False
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "stopped cleanly"
