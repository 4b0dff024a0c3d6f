"""A Ray worker whose CUDA started runs no trial on GPUs other than those it started on.

No GPU here: a trainer stands in for CUDA by holding open a file named like an NVIDIA device
(under a folder it points ``gpu_binding.DEVICE_PREFIX`` at), as a CUDA context holds
``/dev/nvidia-uvm`` open for its process's life. Each check runs in a fresh
interpreter of its own: a bound worker must not be left in the session's shared Ray.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sweeper.worker import gpu_binding

IN_A_WORKER = textwrap.dedent(
    """
    import json, os, pickle, sys
    from sweeper.engine.ray_task import run_trial
    from sweeper.engine.report_channel import ChannelAddress
    from sweeper.worker import gpu_binding

    gpu_binding.DEVICE_PREFIX = sys.argv[1]
    results = []
    for devices, task in pickle.loads(sys.stdin.buffer.read()):
        os.environ["CUDA_VISIBLE_DEVICES"] = devices  # as Ray sets it for each task
        outcome = run_trial(task, ChannelAddress("127.0.0.1", 1, b"-"), False)  # no agent: nothing reports
        results.append([devices, outcome.state, outcome.failure, outcome.fail_reason, outcome.gpu_bound])
    print(json.dumps(results))
    """
)

TRAINER = textwrap.dedent(
    """
    import os
    from pathlib import Path

    def train(config, trial):
        Path(config["ran"], str(trial.number)).write_text(os.environ["CUDA_VISIBLE_DEVICES"])
        if config["starts_cuda"]:  # what CUDA holds open for its process's life
            os.open(config["device"], os.O_RDONLY | os.O_CREAT)
        return 1.0
    """
)


def test_a_worker_bound_by_a_trials_cuda_refuses_a_trial_given_other_gpus(tmp_path: Path) -> None:
    from sweeper.worker.task import Objective, TrialTask

    (tmp_path / "cuda_trainer.py").write_text(TRAINER)
    (tmp_path / "ran").mkdir()
    device = tmp_path / "devices" / "nvidia0"
    device.parent.mkdir()
    device.write_text("")  # the machine has the device from the start, as /dev/nvidia0

    def task(number: int, starts_cuda: bool) -> TrialTask:
        config = {"ran": str(tmp_path / "ran"), "starts_cuda": starts_cuda, "device": str(device)}
        return TrialTask(
            sweep_id="abcdefgh",
            sweep_name="binding",
            trial_id=number,
            number=number,
            params={},
            config=config,
            objectives=(Objective("loss"),),
            checkpoint_dir=str(tmp_path / "checkpoint"),
            sweep_dir=str(tmp_path / "sweep"),
            trainer="cuda_trainer:train",
            workdir=str(tmp_path),
        )

    trials = [("1", task(0, False)), ("0", task(1, True)), ("1", task(2, False)), ("0", task(3, False))]
    ran = subprocess.run(
        [sys.executable, "-c", IN_A_WORKER, str(device.parent / "nvidia")],
        input=pickle.dumps(trials),
        capture_output=True,
        cwd=tmp_path,
        timeout=120,
        check=True,
    )
    results = json.loads(ran.stdout.decode().splitlines()[-1])

    # No CUDA: any GPUs. CUDA started on GPU 0: bound to it, so GPU 1's trial does not run here,
    # GPU 0's does.
    assert [r[:3] for r in results] == [
        ["1", "complete", None],
        ["0", "complete", None],
        ["1", "failed", "misplaced"],
        ["0", "complete", None],
    ]
    assert [r[4] for r in results] == [False, True, False, True]
    assert results[2][3].startswith("misplaced: this worker's CUDA runs on the GPUs 0")
    assert sorted(p.name for p in (tmp_path / "ran").iterdir()) == ["0", "1", "3"]  # trial 2 never ran


AGENT_ON_ITS_RAY = textwrap.dedent(
    """
    import json, os, sys, time
    from pathlib import Path
    import ray
    import sweeper

    root = Path(sys.argv[1])
    ray.init(address="local", num_cpus=4, num_gpus=2, include_dashboard=False, log_to_driver=False)

    def binds_cuda(config, trial):
        from sweeper.worker import gpu_binding

        gpu_binding.DEVICE_PREFIX = str(root / "devices" / "nvidia")  # this machine's stand-in
        record = {
            "pid": os.getpid(),
            "devices": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
            "bound": gpu_binding._bound,
        }
        (root / "runs" / f"{trial.number}.json").write_text(json.dumps(record))
        os.open(str(root / "devices" / "nvidia0"), os.O_RDONLY | os.O_CREAT)  # CUDA started
        time.sleep(0.3)
        return float(config["x"])

    url = f"sqlite:///{root / 's.db'}"
    spec = {
        "method": "grid",
        "metric": {"name": "loss"},
        "parameters": {"x": {"values": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]}},
        "sweeper": {"resources": {"gpus": 1}, "max_concurrent": 2},
    }
    sweep_id = sweeper.sweep(spec, storage=url)
    sweeper.agent(sweep_id, function=binds_cuda, storage=url, executor="ray")
    trials = sweeper.load(sweep_id, storage=url).trials
    print(json.dumps([[t.config["x"], t.state, t.fail_reason] for t in trials]))
    """
)


@pytest.mark.ray
def test_once_a_trial_started_cuda_in_its_worker_no_trial_runs_on_gpus_ray_did_not_give_it(
    tmp_path: Path,
) -> None:
    (tmp_path / "runs").mkdir()
    (tmp_path / "devices").mkdir()
    ran = subprocess.run(
        [sys.executable, "-c", AGENT_ON_ITS_RAY, str(tmp_path)],
        capture_output=True,
        cwd=tmp_path,
        timeout=300,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr.decode()[-3000:]
    trials = json.loads(ran.stdout.decode().splitlines()[-1])

    completed = sorted(x for x, state, _ in trials if state == "complete")
    assert completed == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]  # each point once; a refused trial re-queued
    refused = [reason for _, state, reason in trials if state == "failed"]
    assert all(reason.startswith("misplaced: ") for reason in refused), refused
    runs = [json.loads(p.read_text()) for p in (tmp_path / "runs").iterdir()]
    assert len(runs) == 6
    # No trial ran in a worker whose CUDA had started on other GPUs than Ray gave it.
    assert all(run["bound"] in (None, run["devices"]) for run in runs), runs
    # Each later trial ran in a fresh worker: a worker of the first wave ran at most one more.
    per_worker: dict[int, int] = {}
    for run in runs:
        per_worker[run["pid"]] = per_worker.get(run["pid"], 0) + 1
    assert max(per_worker.values()) <= 2 and len(per_worker) >= 4, per_worker


def test_a_process_holding_no_gpu_device_is_never_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gpu_binding, "DEVICE_PREFIX", str(tmp_path / "nvidia"))
    monkeypatch.setattr(gpu_binding, "_bound", None)
    (tmp_path / "nvidia0").write_text("")  # the device exists; this process does not hold it open

    assert not gpu_binding.holds_gpu()
    assert not gpu_binding.note_trial_end("0")
    assert gpu_binding.misplaced("1") is None and gpu_binding.misplaced("") is None


def test_a_bound_process_runs_trials_given_the_same_gpus_in_any_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(gpu_binding, "_bound", "0,1")

    assert gpu_binding.misplaced("0,1") is None and gpu_binding.misplaced("1,0") is None
    assert gpu_binding.misplaced("0") is not None and gpu_binding.misplaced("0,1,2") is not None
    assert gpu_binding.misplaced("") is not None
