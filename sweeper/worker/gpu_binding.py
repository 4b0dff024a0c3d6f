"""Which GPUs a long-lived worker process is bound to, once a trial in it started CUDA.

Ray hands a reused worker each task's GPUs in ``CUDA_VISIBLE_DEVICES``, but CUDA reads that
variable once, when a process first starts it (``torch.cuda.is_available()`` is enough): from then
on the process runs on the GPUs it had then, whatever Ray gives its next task. A function trainer
runs in the worker itself, so a later trial there runs on those GPUs, which Ray may have given to
another trial meanwhile, while the GPU Ray gave it idles. Ray avoids this by starting a fresh
worker for every GPU task; sweeper reuses its workers (a trial's start is then tens of
milliseconds, not seconds), so it watches instead:

- after each trial, :func:`note_trial_end` sees whether the process holds NVIDIA's unified-memory
  device open (a CUDA context does, whichever framework started it; NVML, which ``nvidia-smi`` and
  Ray's GPU detection use, does not) and, if so, binds it to the GPUs of that trial;
- before each trial, :func:`misplaced` says why a bound process must not run a trial given other
  GPUs; the trial is then re-queued (:attr:`~sweeper.worker.task.Failure.MISPLACED`) and the agent
  starts each later trial of the sweep in a fresh worker.
"""

from __future__ import annotations

import functools
import os

#: The device file every CUDA context holds open for its process's life (``/dev/nvidia-uvm``,
#: ``/dev/nvidia-uvm-tools``); ``/dev/nvidiactl`` and ``/dev/nvidia0`` would also match NVML's.
DEVICE_PREFIX = "/dev/nvidia-uvm"

_bound: str | None = None  # the CUDA_VISIBLE_DEVICES the process's CUDA started with ('': none)


def visible_devices() -> str:
    """The GPUs Ray gave the running task ('' when it gave none)."""
    return os.environ.get("CUDA_VISIBLE_DEVICES", "")


def holds_gpu() -> bool:
    """Whether this process holds a GPU device open (Linux; False where ``/proc`` cannot say).

    On a machine without such devices it costs one listing of their folder per process.
    """
    if not _devices_exist(DEVICE_PREFIX):
        return False
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith(DEVICE_PREFIX):
                return True
        except OSError:  # closed meanwhile (the listing's own descriptor)
            continue
    return False


@functools.lru_cache(maxsize=4)
def _devices_exist(prefix: str) -> bool:
    folder, _, stem = prefix.rpartition("/")
    try:
        return any(name.startswith(stem) for name in os.listdir(folder or "/"))
    except OSError:
        return False


def note_trial_end(devices: str) -> bool:
    """After a trial given ``devices``: bind the process if CUDA started in it. True once bound.

    A trial given no GPU binds it too: CUDA started then saw none (or every GPU, where Ray left
    the variable unset), and a later trial given GPUs would not get them here.
    """
    global _bound
    if _bound is None and holds_gpu():
        _bound = devices
    return _bound is not None


def misplaced(devices: str) -> str | None:
    """Why this process must not run a trial given ``devices``; None when it may (the same GPUs,
    in any order: each is then the trial's own)."""
    if _bound is None or sorted(_bound.split(",")) == sorted(devices.split(",")):
        return None
    return (
        f"misplaced: this worker's CUDA runs on the GPUs {_bound} (CUDA_VISIBLE_DEVICES when a "
        f"trial in it started CUDA), and Ray gave the trial {devices or 'none'}; re-queued"
    )
