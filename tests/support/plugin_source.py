"""A third-party tracker, installed for the tests as its own distribution with an entry point."""

from __future__ import annotations

PLUGIN_MODULE = "sweeper_notebook_plugin"
PLUGIN_NAME = "notebook"

SOURCE = '''
"""A tiny third-party tracker: one JSON document per trial."""

import json
import pathlib

from sweeper.trackers import Tracker


class NotebookTracker(Tracker):
    name = "notebook"
    options = frozenset({"folder"})

    def start(self, run, environment):
        folder = pathlib.Path(self.config.get("folder") or run.sweep_dir) / "notebook"
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{run.run_name}.json"
        self.data = {
            "name": run.run_name,
            "config": dict(run.config),
            "environment": dict(environment),
            "history": [],
            "state": "running",
        }
        self._save()

    def _save(self):
        self.path.write_text(json.dumps(self.data, default=str))

    def log_metrics(self, metrics, step):
        self.data["history"].append([step, dict(metrics)])
        self._save()

    def finish(self, state, summary):
        self.data["state"] = state
        self.data["summary"] = dict(summary)
        self._save()

    def ref(self):
        return str(self.path)
'''


def install_plugin(root: object) -> str:
    """Write the plugin's module and its dist-info (with the entry point) under ``root``; return it."""
    from pathlib import Path

    base = Path(str(root))
    base.mkdir(parents=True, exist_ok=True)
    (base / f"{PLUGIN_MODULE}.py").write_text(SOURCE)
    info = base / f"{PLUGIN_MODULE}-0.1.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {PLUGIN_MODULE}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        f"[sweeper.trackers]\n{PLUGIN_NAME} = {PLUGIN_MODULE}:NotebookTracker\n"
    )
    return str(base)
