"""Names and values with control characters never reach a terminal raw; JSON keeps them exact."""

from __future__ import annotations

import io
import json
from pathlib import Path

import yaml
from click.testing import CliRunner
from rich.console import Console

from sweeper.cli import main
from sweeper.engine.progress import QuietProgress, RichProgress, Tally

# Every C0 control, DEL, every C1 control, the bidi controls, and rich markup that would crash it.
CONTROLS = [chr(c) for c in range(0x20)] + [chr(c) for c in range(0x7F, 0xA0)]
BIDI = [
    "\u061c",
    "\u200e",
    "\u200f",
    "\u2028",
    "\u2029",
    *map(chr, range(0x202A, 0x202F)),
    "\u2066",
    "\u2069",
]
NAME = "evil" + "".join(CONTROLS) + "".join(BIDI) + "[/][bold]name"
RAW = [c for c in CONTROLS + BIDI if c != "\n"]

TRAINER = """
def train(config, trial):
    return {"loss": config["x"], "acc\\x1b[2J": 1.0}
"""


def _assert_printable(text: str, command: str) -> None:
    found = sorted({f"U+{ord(c):04X}" for c in text if c in RAW})
    assert not found, f"{command} printed raw {', '.join(found)}"


def test_no_command_prints_a_raw_control_character(project: Path) -> None:
    (project / "evil_trainer.py").write_text(TRAINER)
    spec = {
        "method": "grid",
        "metric": {"name": "loss"},
        "parameters": {"x": {"values": [1, 2]}, "tag": {"value": "\x1b[31mred\u202eflip\r\nforged"}},
    }
    (project / "spec.yaml").write_text(yaml.safe_dump(spec))
    url = f"sqlite:///{project / 's.db'}"
    runner = CliRunner()

    ran = runner.invoke(
        main,
        [
            "run",
            "spec.yaml",
            "--name",
            NAME,
            "--storage",
            url,
            "--executor",
            "local",
            "--trainer",
            "evil_trainer:train",
        ],
    )
    assert ran.exit_code == 0, ran.output
    _assert_printable(ran.output + ran.stderr, "run")
    assert "evil\\x00\\x01" in ran.stderr  # the name, escaped, in "created sweep ..."
    assert "2 trials (2 complete" in ran.stdout  # the summary line

    listed = runner.invoke(main, ["ls", "--storage", url, "--json"])
    (sweep,) = json.loads(listed.stdout)
    assert sweep["name"] == NAME  # JSON output stays exact
    sweep_id = sweep["id"]

    for command in (
        ["ls"],
        ["status", sweep_id],
        ["trials", sweep_id],
        ["best", sweep_id],
        ["compare", sweep_id, "0", "1"],
    ):
        result = runner.invoke(main, [*command, "--storage", url])
        assert result.exit_code == 0, (command, result.output)
        _assert_printable(result.output + result.stderr, command[0])
        assert "evil\\x00" in result.output or command[0] in ("best", "compare"), command
    trials = runner.invoke(main, ["trials", sweep_id, "--storage", url, "--json"])
    assert {t["config"]["tag"] for t in json.loads(trials.stdout)} == {spec["parameters"]["tag"]["value"]}


def test_the_live_progress_escapes_names_and_fail_reasons() -> None:
    progress = RichProgress()
    sink = io.StringIO()
    progress._console = Console(file=sink, force_terminal=False, width=400)
    tally = Tally(total=1)
    progress.start("abcd1234", NAME, "lo\x1bss", tally)
    progress.trial_ended(0, "failed", None, "ValueError: \x1b]0;pwned\x07 [/] oops\nline two", tally)
    progress.finish("sweep abcd1234: done \x1b[2J", {})
    shown = sink.getvalue()
    _assert_printable(shown, "the live progress")
    assert "\\x1b]0;pwned\\x07 [/] oops" in shown
    assert "evil\\x00" in shown

    quiet = io.StringIO()
    QuietProgress(quiet).finish("summary \x1b[2J\u202e", {})
    assert quiet.getvalue() == "summary \\x1b[2J\\u202e\n"
