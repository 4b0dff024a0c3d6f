"""A warm start through the command line: submit says what each source gave, and every view marks
the priors, keeps them out of the sweep's own counts and lets `best` rank them or not."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import engine_trainers
import yaml
from click.testing import CliRunner, Result

import sweeper
from sweeper.cli import main

SPEC: dict[str, Any] = {
    "method": "random",
    "metric": {"name": "loss"},
    "run_cap": 2,
    "parameters": {"x": {"min": 0.0, "max": 1.5}},
    "sweeper": {"seed": 3},
}


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def source_sweep(url: str) -> str:
    """A finished grid whose x = 1.0 is the best there is ((x - 1)^2 + 1/3), and x = 2.0 outside SPEC."""
    spec = {"method": "grid", "metric": {"name": "loss"}, "parameters": {"x": {"values": [1.0, 2.0, 0.0]}}}
    sweep_id = sweeper.sweep(spec, storage=url, name="old")
    sweeper.agent(sweep_id, function=engine_trainers.quadratic, storage=url, executor="local")
    return sweep_id


def test_submit_reports_each_source_and_the_views_mark_the_priors(project: Path) -> None:
    url = f"sqlite:///{project / 's.db'}"
    old = source_sweep(url)
    assert invoke("export", old, "--storage", url, "--out", "old.csv").exit_code == 0
    Path("new.yaml").write_text(
        yaml.safe_dump({**SPEC, "sweeper": {**SPEC["sweeper"], "warm_start": [{"export": "old.csv"}]}})
    )

    submitted = invoke("submit", "new.yaml", "--storage", url, "--warm-start", f"sweep:{old}")
    assert submitted.exit_code == 0, submitted.output
    new = submitted.stdout.strip().splitlines()[-1]
    notes = [line for line in submitted.stderr.splitlines() if line.startswith("note:")]
    assert notes == [
        "note: 2 priors loaded from export old.csv (3 read); "
        "1 outside the space: trial 1: x=2.0 is outside [0, 1.5]",
        f"note: 0 priors loaded from sweep {old} (3 read); 2 duplicates: trial 0; trial 2; "
        "1 outside the space: trial 1: x=2.0 is outside [0, 1.5]",
    ]
    sweeper.agent(new, function=engine_trainers.quadratic, storage=url, executor="local")

    status = json.loads(invoke("status", new, "--storage", url, "--json").stdout)
    assert status["progress"] == {"finished": 2, "total": 2}  # the priors used none of the budget
    assert status["counts"]["complete"] == 2
    assert status["priors"]["count"] == 2
    assert [(s["source"], s["loaded"], s["read"]) for s in status["priors"]["sources"]] == [
        ("export old.csv", 2, 3),
        (f"sweep {old}", 0, 3),
    ]
    assert status["best"][0]["prior"] == {"source": "export old.csv", "ref": "trial 0"}  # x = 1.0
    table = invoke("status", new, "--storage", url).stdout
    assert "priors: 2" in table and "2 from export old.csv (3 read); skipped: 1 outside the space" in table

    best = json.loads(invoke("best", new, "--storage", url, "--json").stdout)
    assert best[0]["prior"] is not None and best[0]["config"] == {"x": 1.0}
    own = json.loads(invoke("best", new, "--storage", url, "--json", "--no-priors").stdout)
    assert own[0]["prior"] is None and own[0]["number"] >= 2
    assert "complete (prior)" in invoke("best", new, "--storage", url).stdout

    trials = json.loads(invoke("trials", new, "--storage", url, "--json").stdout)
    assert [t["prior"] is not None for t in trials] == [True, True, False, False]
    assert invoke("trials", new, "--storage", url).stdout.count("(prior)") == 2

    listed = {s["id"]: s for s in json.loads(invoke("ls", "--storage", url, "--json").stdout)}
    assert (listed[new]["n_trials"], listed[new]["priors"]) == (2, 2)

    rows = list(csv.DictReader(io.StringIO(invoke("export", new, "--storage", url).stdout)))
    assert [r["prior"] for r in rows[:2]] == ["export old.csv: trial 0", "export old.csv: trial 2"]
    assert rows[2]["prior"] == rows[3]["prior"] == ""

    report = invoke("report", new, "--storage", url, "--out", "report", "--no-png")
    assert report.exit_code == 0, report.output
    page = Path("report/index.html").read_text()
    assert "2 priors (trials 0..1, earlier results)" in page and "<td>0 (prior)</td>" in page


def test_a_source_that_cannot_be_read_creates_no_sweep(project: Path) -> None:
    url = f"sqlite:///{project / 's.db'}"
    Path("new.yaml").write_text(yaml.safe_dump(SPEC))
    missing = invoke("submit", "new.yaml", "--storage", url, "--warm-start", "export:gone.csv")
    assert missing.exit_code == 2
    assert "error: warm start export gone.csv: no such file or folder" in missing.stderr
    malformed = invoke("run", "new.yaml", "--storage", url, "--warm-start", "csv:old.csv")
    assert malformed.exit_code == 2 and "error: --warm-start: 0: must be one source" in malformed.stderr
    assert json.loads(invoke("ls", "--storage", url, "--json").stdout) == []


def test_validate_checks_that_a_warm_starts_files_are_there(project: Path) -> None:
    spec = {**SPEC, "sweeper": {"warm_start": [{"export": "old.csv"}, {"wandb": "wandb"}]}}
    Path("new.yaml").write_text(yaml.safe_dump(spec))
    Path("old.csv").write_text("config.x,value.loss\n0.5,1.0\n")
    result = invoke("validate", "new.yaml")
    assert result.exit_code == 2
    assert (
        "new.yaml: sweeper.warm_start.1.wandb: warm start wandb wandb: no such file or folder"
        in result.stderr
    )
    assert "warm_start.0" not in result.stderr
