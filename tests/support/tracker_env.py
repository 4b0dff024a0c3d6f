"""Environment isolation shared by the tracker tests (a module, so test files can import it by name)."""

from __future__ import annotations

from pathlib import Path

import pytest


def isolate_tracker_env(mp: pytest.MonkeyPatch, root: Path) -> None:
    """Point every tracker library's files at ``root`` and turn off anything that phones home."""
    for name, value in {
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_DIR": str(root / "wandb-dir"),
        "WANDB_CONFIG_DIR": str(root / "wandb-config"),
        "WANDB_CACHE_DIR": str(root / "wandb-cache"),
        "WANDB_DATA_DIR": str(root / "wandb-data"),
        "WANDB_ARTIFACT_DIR": str(root / "wandb-artifacts"),
        "WANDB_DISABLE_CODE": "true",
        "WANDB_ERROR_REPORTING": "false",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
        "MPLBACKEND": "Agg",
    }.items():
        mp.setenv(name, value)
    for name in (
        "MLFLOW_TRACKING_URI",
        "WANDB_PROJECT",
        "WANDB_ENTITY",
        "WANDB_API_KEY",
        "CUDA_VISIBLE_DEVICES",
    ):
        mp.delenv(name, raising=False)
    mp.chdir(root)
