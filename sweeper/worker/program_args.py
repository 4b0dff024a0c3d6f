"""A program trainer's command line and parameter files, by W&B's rules (macros, ``params.yaml``).

Only a token that is exactly a macro is replaced (``${envvar:NAME}`` anywhere in a token); the argv
never goes through a shell. See W&B's agent (``wandb_agent.py``) for the reference behaviour.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

DEFAULT_COMMAND = ("${env}", "${interpreter}", "${program}", "${args}")


_ENVVAR_MACRO = re.compile(r"\$\{envvar\:([A-Z0-9_]*)\}")  # W&B's pattern, upper case only


def macro_values(
    config: Mapping[str, Any], *, program: str | None, args_json_file: str
) -> dict[str, list[str]]:
    """Every W&B command macro (without ``${}``) and the argv items it expands to.

    Top-level config keys in alphabetical order become arguments (a nested parameter is one
    argument holding its dict, as W&B renders it); values are rendered with ``str()``.

    Example:
        >>> macro_values({"lr": 1e-05, "a": True}, program="t.py", args_json_file="p.json")["args"]
        ['--a=True', '--lr=1e-05']
    """
    args: list[str] = []
    no_equals: list[str] = []
    no_hyphens: list[str] = []
    no_boolean_flags: list[str] = []
    append_hydra: list[str] = []
    override_hydra: list[str] = []
    ordered = {name: config[name] for name in sorted(config)}
    for name, value in ordered.items():
        flag = f"{name}={value}"
        args.append(f"--{flag}")
        no_equals += [f"--{name}", str(value)]
        no_hyphens.append(flag)
        append_hydra.append(f"+{flag}")
        override_hydra.append(f"++{flag}")
        if isinstance(value, bool):
            if value:
                no_boolean_flags.append(f"--{name}")
        else:
            no_boolean_flags.append(f"--{flag}")
    return {
        "env": ["/usr/bin/env"],
        "interpreter": [sys.executable],
        "program": [program] if program is not None else [],
        "args": args,
        "args_no_equals": no_equals,
        "args_no_hyphens": no_hyphens,
        "args_no_boolean_flags": no_boolean_flags,
        "args_json": [json.dumps(ordered)],
        "args_json_file": [args_json_file],
        "args_append_hydra": append_hydra,
        "args_override_hydra": override_hydra,
    }


def build_argv(
    command: Sequence[str],
    config: Mapping[str, Any],
    *,
    program: str | None,
    args_json_file: str,
    environ: Mapping[str, str] | None = None,
) -> list[str]:
    """Expand a W&B ``command`` into the program's argv, exactly as W&B's agent does.

    ``${envvar:NAME}`` is replaced inside any token (by NAME itself when unset, as W&B does); then
    a token that is exactly ``${macro}`` becomes the macro's items (nothing for an unknown macro);
    every other token passes through literally.

    Example:
        >>> build_argv(["run", "${args_no_hyphens}", "${nope}", "x${args}"], {"c": 1},
        ...            program=None, args_json_file="p.json")
        ['run', 'c=1', 'x${args}']
    """
    env = os.environ if environ is None else environ
    values = macro_values(config, program=program, args_json_file=args_json_file)
    argv: list[str] = []
    for raw in command:
        token = _ENVVAR_MACRO.sub(lambda m: env.get(m.group(1), m.group(1)), str(raw))
        if token.startswith("${") and token.endswith("}"):
            argv += values.get(token[2:-1], [])
        else:
            argv.append(token)
    return argv


def write_param_file(path: Path, config: Mapping[str, Any]) -> None:
    """Write W&B's sweep parameter file (``wandb_version: 1`` then ``key: {value: v}``)."""
    text = "wandb_version: 1"
    if config:
        body = {name: {"value": value} for name, value in config.items()}
        text += "\n\n" + yaml.safe_dump(body, default_flow_style=False, allow_unicode=True, sort_keys=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
