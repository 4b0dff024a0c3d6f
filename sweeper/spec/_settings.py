"""Reading our ``sweeper:`` block: trainer, resources, trackers and the engine's settings."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from sweeper.spec._checks import _is_int, _join, _show
from sweeper.spec._warm_start import WarmStartReader
from sweeper.spec.model import Resources, SweeperSettings, TrackerSpec

_TRAINER_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_MEMORY = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgtp]?i?b?)\s*$", re.IGNORECASE)
_MEMORY_UNITS: dict[str, int] = {"": 1, "b": 1}
for _power, _prefix in enumerate("kmgtp", start=1):
    _MEMORY_UNITS[_prefix] = _MEMORY_UNITS[f"{_prefix}b"] = 1000**_power
    _MEMORY_UNITS[f"{_prefix}i"] = _MEMORY_UNITS[f"{_prefix}ib"] = 1024**_power

SAMPLERS = ("auto", "tpe", "gp")
SWEEPER_KEYS = (
    "trainer",
    "resources",
    "max_concurrent",
    "trackers",
    "seed",
    "retries",
    "timeout",
    "sampler",
    "storage",
    "tags",
    "outputs",
    "distinct",
    "warm_start",
)
RESOURCE_KEYS = ("gpus", "cpus", "memory", "custom")


class SettingsReader(WarmStartReader):
    """Reads the ``sweeper:`` block into :class:`~sweeper.spec.model.SweeperSettings`."""

    # -- our `sweeper:` block ------------------------------------------------------------------

    def settings(self, value: Any, path: str) -> SweeperSettings | None:
        block = self.mapping(value, path, "a mapping of sweeper settings")
        if block is None:
            return None
        self.known_keys(block, path, SWEEPER_KEYS)
        got: dict[str, Any] = {}
        if block.get("trainer") is not None:
            trainer = block["trainer"]
            if isinstance(trainer, str) and _TRAINER_PATH.match(trainer):
                got["trainer"] = trainer
            else:
                self.error(
                    f"{path}.trainer", f"must be a 'package.module:function' path, got {_show(trainer)}"
                )
        if block.get("resources") is not None:
            resources = self.resources(block["resources"], f"{path}.resources")
            if resources is not None:
                got["resources"] = resources
        for key, least in (("max_concurrent", 1), ("retries", 0)):
            if (
                block.get(key) is not None
                and self.integer(block[key], f"{path}.{key}", at_least=least) is not None
            ):
                got[key] = block[key]
        if (
            block.get("seed") is not None
            and self.integer(block["seed"], f"{path}.seed", at_least=0) is not None
        ):
            got["seed"] = block["seed"]
        if block.get("timeout") is not None and self.number(block["timeout"], f"{path}.timeout", above=0):
            got["timeout"] = float(block["timeout"])
        if block.get("sampler") is not None and self.choice(block["sampler"], f"{path}.sampler", SAMPLERS):
            got["sampler"] = block["sampler"]
        if block.get("storage") is not None and self.string(block["storage"], f"{path}.storage"):
            got["storage"] = block["storage"]
        if block.get("outputs") is not None and self.string(block["outputs"], f"{path}.outputs"):
            got["outputs"] = block["outputs"]
        if block.get("trackers") is not None:
            got["trackers"] = self.trackers(block["trackers"], f"{path}.trackers")
        if (
            block.get("distinct") is not None
            and self.boolean(block["distinct"], f"{path}.distinct") is not None
        ):
            got["distinct"] = block["distinct"]
        if block.get("warm_start") is not None:
            got["warm_start"] = self.warm_start(block["warm_start"], f"{path}.warm_start")
        if block.get("tags") is not None:
            tags = block["tags"]
            tags = [tags] if isinstance(tags, str) else tags
            if not isinstance(tags, list):
                self.error(f"{path}.tags", f"must be a string or a list of strings, got {_show(tags)}")
            else:
                got["tags"] = tuple(t for i, t in enumerate(tags) if self.string(t, f"{path}.tags.{i}"))
        return SweeperSettings(**got)

    def resources(self, value: Any, path: str) -> Resources | None:
        block = self.mapping(value, path, "a mapping with gpus, cpus, memory, custom")
        if block is None:
            return None
        self.known_keys(block, path, RESOURCE_KEYS)
        got: dict[str, Any] = {}
        if (
            block.get("gpus") is not None
            and self.number(block["gpus"], f"{path}.gpus", at_least=0) is not None
        ):
            got["gpus"] = float(block["gpus"])
        if (
            block.get("cpus") is not None
            and self.number(block["cpus"], f"{path}.cpus", at_least=0) is not None
        ):
            got["cpus"] = float(block["cpus"])
        if block.get("memory") is not None:
            memory = self.memory(block["memory"], f"{path}.memory")
            if memory is not None:
                got["memory"] = memory
        if block.get("custom") is not None:
            custom = self.mapping(
                block["custom"], f"{path}.custom", "a mapping of Ray resource names to amounts"
            )
            if custom is not None:
                got["custom"] = {
                    str(k): float(v)
                    for k, v in custom.items()
                    if self.number(v, _join(f"{path}.custom", k), at_least=0) is not None
                }
        return Resources(**got)

    def memory(self, value: Any, path: str) -> int | None:
        if _is_int(value) and value > 0:
            return int(value)
        match = _MEMORY.match(value) if isinstance(value, str) else None
        if match is None or float(match.group(1)) <= 0:
            self.error(
                path,
                f"must be a positive number of bytes or a size such as '4GB' or '512MiB', got {_show(value)}",
            )
            return None
        return int(float(match.group(1)) * _MEMORY_UNITS[match.group(2).lower()])

    def trackers(self, value: Any, path: str) -> tuple[TrackerSpec, ...]:
        items = [value] if isinstance(value, str | Mapping) else value
        if not isinstance(items, list):
            self.error(
                path, f"must be a tracker name or a list of names or {{type: name, ...}}, got {_show(value)}"
            )
            return ()
        found = []
        for i, item in enumerate(items):
            where = path if items is not value else f"{path}.{i}"
            if isinstance(item, str) and item:
                found.append(TrackerSpec(type=item))
            elif isinstance(item, Mapping) and isinstance(item.get("type"), str) and item["type"]:
                options = {str(k): v for k, v in item.items() if k != "type"}
                found.append(TrackerSpec(type=item["type"], options=options))
            else:
                self.error(
                    where,
                    f"must be a tracker name or a mapping {{type: name, ...options}}, got {_show(item)}",
                )
        return tuple(found)
