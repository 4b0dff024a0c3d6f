"""`sweeper validate` and `sweeper preview` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from sweeper import load_spec
from sweeper.cli import main
from sweeper.search.samplers import draw_params

ROOT = Path(__file__).parents[2]
EXAMPLES = [ROOT / "sweeps" / f"{name}.yaml" for name in ("grid", "random", "bayes")]


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def bad_spec(tmp_path: Path) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "method: gird\n"
        "parameters:\n"
        "  lr: {distribution: log_uniform_values, min: 1e-1, max: 1e-5}\n"
        "metric: {name: loss, goel: minimize}\n"
        "controller: {type: local}\n"
    )
    return path


def test_validate_examples(runner: CliRunner) -> None:
    result = runner.invoke(main, ["validate", *map(str, EXAMPLES)])
    assert result.exit_code == 0, result.output
    assert result.stdout.count(": ok (") == 3
    assert "grid, 2 searched parameter(s), 16 grid point(s)" in result.stdout


def test_validate_prints_every_located_error(runner: CliRunner, bad_spec: Path) -> None:
    result = runner.invoke(main, ["validate", str(bad_spec), str(EXAMPLES[0])])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"error: {bad_spec}: method: must be one of grid, random, bayes, custom, got 'gird'; "
        "did you mean 'grid'?",
        f"error: {bad_spec}: parameters.lr.min: must be < max (1e-05), got 0.1",
        f"error: {bad_spec}: metric.goel: unknown key; did you mean 'goal'?",
        f"{bad_spec}: note: ignoring W&B server keys: controller",
        "1 of 2 spec(s) invalid",
    ]
    assert f"{EXAMPLES[0]}: ok" in result.stdout


def test_validate_notes_ignored_wandb_keys(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "launch.yaml"
    path.write_text(
        "method: random\nparameters: {x: {min: 0, max: 3}}\njob: e/p/j:latest\nscheduler: {num_workers: 2}\n"
    )
    result = runner.invoke(main, ["validate", str(path)])
    assert result.exit_code == 0
    assert f"{path}: note: ignoring W&B server keys: job, scheduler" in result.stderr


def test_validate_yaml_syntax_error_and_missing_file(runner: CliRunner, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("method: grid\nparameters: [\n")
    result = runner.invoke(main, ["validate", str(broken), str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert f"error: {broken}: line 3, column 1: YAML syntax error" in result.stderr
    assert f"error: {tmp_path / 'nope.yaml'}: <root>: must be a readable UTF-8 file" in result.stderr
    assert "Traceback" not in result.output


def test_preview_grid_in_order_with_total(runner: CliRunner) -> None:
    result = runner.invoke(main, ["preview", str(EXAMPLES[0]), "-n", "5"])
    assert result.exit_code == 0, result.output
    configs = [json.loads(line) for line in result.stdout.splitlines()]
    space = load_spec(EXAMPLES[0]).space
    assert configs == [space.to_config(p) for p in space.grid()[:5]]
    assert configs[:2] == [{"x1": -5.0, "x2": 0.0}, {"x1": -5.0, "x2": 2.275}]
    assert "grid: 16 point(s), showing 5" in result.stderr
    everything = runner.invoke(main, ["preview", str(EXAMPLES[0])])
    assert len(everything.stdout.splitlines()) == 16


def test_preview_random_is_seeded_and_matches_the_sampler(runner: CliRunner) -> None:
    first = runner.invoke(main, ["preview", str(EXAMPLES[1]), "--seed", "3", "-n", "4"])
    again = runner.invoke(main, ["preview", str(EXAMPLES[1]), "--seed", "3", "-n", "4"])
    assert first.exit_code == 0 and first.stdout == again.stdout
    space = load_spec(EXAMPLES[1]).space
    configs = [json.loads(line) for line in first.stdout.splitlines()]
    assert configs == [space.to_config(draw_params(space, 3, n)) for n in range(4)]
    assert all(-5 <= c["x1"] <= 10 and 0 <= c["x2"] <= 15 for c in configs)
    # Default: 10 draws, with the spec's own seed (42).
    default = runner.invoke(main, ["preview", str(EXAMPLES[1])])
    assert len(default.stdout.splitlines()) == 10
    assert "seed 42" in default.stderr


def test_preview_bayes_draws_from_the_prior(runner: CliRunner) -> None:
    result = runner.invoke(main, ["preview", str(EXAMPLES[2]), "-n", "3"])
    assert result.exit_code == 0
    assert [sorted(json.loads(line)) for line in result.stdout.splitlines()] == [["x1", "x2"]] * 3


def test_preview_of_an_invalid_spec_exits_2(runner: CliRunner, bad_spec: Path) -> None:
    result = runner.invoke(main, ["preview", str(bad_spec)])
    assert result.exit_code == 2
    assert f"error: {bad_spec}: parameters.lr.min: must be < max (1e-05), got 0.1" in result.stderr


@pytest.mark.parametrize("command", ["validate", "preview"])
def test_help(runner: CliRunner, command: str) -> None:
    result = runner.invoke(main, [command, "--help"])
    assert result.exit_code == 0
    assert "Usage: main " in result.stdout or "Usage: " in result.stdout


def test_console_script(bad_spec: Path) -> None:
    script = Path(sys.executable).with_name("sweeper")
    ok = subprocess.run(
        [str(script), "validate", *map(str, EXAMPLES)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run(
        [str(script), "validate", str(bad_spec)], check=False, capture_output=True, text=True, timeout=120
    )
    assert bad.returncode == 2
    assert "parameters.lr.min: must be < max" in bad.stderr and "Traceback" not in bad.stderr
    preview = subprocess.run(
        [str(script), "preview", str(EXAMPLES[1]), "-n", "2", "--seed", "1"],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert preview.returncode == 0 and len(preview.stdout.splitlines()) == 2


PARAMS = "parameters: {x: {min: 0.0, max: 1.0}}\n"


def validate_in(project: Path, spec: str, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, str]:
    """``sweeper validate`` run from ``project`` (the directory an agent would start in)."""
    (project / "s.yaml").write_text(spec)
    monkeypatch.chdir(project)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the project dir goes on a copy
    result = CliRunner().invoke(main, ["validate", "s.yaml"])
    return result.exit_code, result.stdout, result.stderr


def test_validate_imports_the_trainer_from_the_project_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = f"fit_{uuid.uuid4().hex[:8]}"  # a name no other test imported in this process
    project = tmp_path / "proj"
    (project / package).mkdir(parents=True)
    (project / package / "__init__.py").write_text("")
    (project / package / "model.py").write_text("def train(config, trial):\n    return 0.0\n")
    spec = f"method: random\n{PARAMS}sweeper: {{trainer: '{package}.model:train'}}\n"
    code, out, err = validate_in(project, spec, monkeypatch)
    assert (code, err) == (0, "") and out.startswith("s.yaml: ok (")

    code, out, err = validate_in(project, spec.replace(":train", ":trian"), monkeypatch)
    assert code == 2 and out == ""
    assert err.splitlines() == [
        f"error: s.yaml: sweeper.trainer: trainer module '{package}.model' has no attribute 'trian' "
        f"(the project directory {project} is on the path)",
        "1 of 1 spec(s) invalid",
    ]
    code, _, err = validate_in(project, spec.replace(f"{package}.model", "no_such_trainer_mod"), monkeypatch)
    assert code == 2
    assert err.startswith(
        "error: s.yaml: sweeper.trainer: cannot import trainer module 'no_such_trainer_mod': "
        "ModuleNotFoundError: No module named 'no_such_trainer_mod'"
    )


def test_validate_finds_the_program_where_the_agent_runs_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = f"method: random\n{PARAMS}program: train.py\n"
    code, _, err = validate_in(tmp_path, spec, monkeypatch)
    assert code == 2
    assert (
        err.splitlines()[0]
        == f"error: s.yaml: program: 'train.py' not found in {tmp_path}, where the agent runs it"
    )
    (tmp_path / "train.py").write_text("print('hi')\n")
    assert validate_in(tmp_path, spec, monkeypatch)[0] == 0
    # A command that does not run ${program} needs no file.
    spec = f"method: random\n{PARAMS}program: gone.py\ncommand: ['${{interpreter}}', '-c', 'pass']\n"
    assert validate_in(tmp_path, spec, monkeypatch)[:3:2] == (0, "")
    spec = f"method: random\n{PARAMS}command: ['${{interpreter}}', '${{program}}']\n"
    code, _, err = validate_in(tmp_path, spec, monkeypatch)
    assert code == 2 and "error: s.yaml: command: uses ${program} but the spec has no program" in err


def test_validate_checks_the_storage_url_form_without_opening_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = validate_in(
        tmp_path, f"method: random\n{PARAMS}sweeper: {{storage: 'mongodb://h/db'}}\n", monkeypatch
    )
    assert code == 2
    assert err.splitlines()[1] == (
        "error: s.yaml: sweeper.storage: storage URL must be journal://PATH or a database URL "
        "(sqlite, postgresql, postgres, mysql, mariadb, oracle, mssql), got 'mongodb://h/db'"
    )
    spec = f"method: random\n{PARAMS}sweeper: {{storage: 'journal://runs/j.log'}}\n"
    assert validate_in(tmp_path, spec, monkeypatch)[0] == 0
    assert not (tmp_path / "runs").exists()  # validating creates nothing


def test_validate_notes_a_spec_without_trainer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = validate_in(tmp_path, f"method: random\n{PARAMS}", monkeypatch)
    assert code == 0 and out.startswith("s.yaml: ok (")
    assert err == (
        "s.yaml: note: names no trainer (sweeper.trainer, or program and command): "
        "`sweeper run` and `sweeper agent` will need --trainer MODULE:FUNCTION\n"
    )


def test_validate_suggests_the_key_meant_inside_parameters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = validate_in(tmp_path, "method: grid\nparameters: {x: {vales: [1, 2]}}\n", monkeypatch)
    assert code == 2
    assert err.splitlines()[0] == "error: s.yaml: parameters.x.vales: unknown key; did you mean 'values'?"
