"""Cluster configs: the local multi-node cluster runs an agent for real; the cloud, Kubernetes and
Slurm configs, which cannot run here, are parsed and checked, and every `sweeper ...` command they
(or the READMEs and example specs) tell a user to run must exist in our CLI with the flags it uses."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner
from example_specs import EXAMPLE_SPECS

from sweeper.cli import main
from sweeper.storage.sweeps import list_sweeps, load_study
from sweeper.storage.urls import open_storage

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "cluster"
SWEEPER_BIN = Path(sys.executable).parent / "sweeper"

_ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_OPERATORS = {"&&", "||", ";", "|", "&", "(", ")"}


def _segments(tokens: list[str]) -> Iterator[list[str]]:
    segment: list[str] = []
    for token in tokens:
        if token in _OPERATORS:
            yield segment
            segment = []
        else:
            segment.append(token)
    yield segment


def sweeper_commands(line: str) -> Iterator[list[str]]:
    """Every `sweeper ...` command in a shell line, including those inside quoted strings."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|()")
    lexer.whitespace_split = True
    tokens = list(lexer)
    for segment in _segments(tokens):
        for index, token in enumerate(segment):
            before = segment[index - 1] if index else None
            starts_command = before is None or before in {"--", "exec"} or bool(_ENV_ASSIGNMENT.match(before))
            if Path(token).name == "sweeper" and starts_command and index + 1 < len(segment):
                yield segment[index:]
                break
            if " " in token:  # a quoted command line, e.g. ray exec CONFIG "cd x && sweeper agent ..."
                yield from sweeper_commands(token)


def command_lines(path: Path) -> list[str]:
    """The lines of ``path`` that a user runs: code blocks, indented comment examples, script lines."""
    # Join continued lines (a docstring spells the backslash twice).
    text = path.read_text().replace("\\\\\n", " ").replace("\\\n", " ")
    lines = text.splitlines()
    if path.suffix == ".md":
        fenced, inside = [], False
        for line in lines:
            if line.startswith("```"):
                inside = not inside
            elif inside:
                fenced.append(line)
        return fenced
    if path.suffix == ".sbatch":
        examples = [m.group(1) for line in lines if (m := re.match(r"^#\s{2,}(\S.*)", line))]
        return examples + [line for line in lines if not line.lstrip().startswith("#")]
    if path.suffix == ".yaml":
        examples = [m.group(1) for line in lines if (m := re.match(r"^#\s{2,}(\S.*)", line))]
        entrypoints = [
            str(doc["spec"]["entrypoint"])
            for doc in yaml.safe_load_all(text)
            if isinstance(doc, dict) and "entrypoint" in doc.get("spec", {})
        ]
        return examples + entrypoints
    if path.suffix == ".py":
        return [
            line.strip()
            for line in lines
            if line.startswith("    python ") or line.startswith("        sweeper ")
        ]
    raise AssertionError(f"no rule for {path}")


def check_sweeper_command(argv: list[str]) -> str:
    subcommand = argv[1]
    assert subcommand in main.commands, f"{shlex.join(argv)}: no command {subcommand!r} in the sweeper CLI"
    command = main.commands[subcommand]
    flags = {
        opt
        for param in command.params
        if isinstance(param, click.Option)
        for opt in param.opts + param.secondary_opts
    }
    flags.add("--help")
    for token in argv[2:]:
        if token.startswith("--"):
            flag = token.split("=", 1)[0]
            assert flag in flags, (
                f"{shlex.join(argv)}: {subcommand} has no option {flag}; it has {sorted(flags)}"
            )
    result = CliRunner().invoke(main, [subcommand, "--help"])
    assert result.exit_code == 0, result.output
    return subcommand


def documented_commands(path: Path) -> list[list[str]]:
    return [argv for line in command_lines(path) for argv in sweeper_commands(line)]


# Files that tell a user to run sweeper commands; every example spec shows how to run it.
DOCUMENTED = [
    CLUSTER / "README.md",
    CLUSTER / "aws-gpu.yaml",
    CLUSTER / "kuberay" / "rayjob.yaml",
    CLUSTER / "slurm" / "sweeper-agent.sbatch",
    CLUSTER / "local_cluster.py",
    *(REPO / "sweeps" / f"{name}.yaml" for name in EXAMPLE_SPECS),
    # The other specs' owners may show commands too: check the ones they show.
    *(
        p
        for p in sorted((REPO / "sweeps").glob("*.yaml"))
        if p.stem not in EXAMPLE_SPECS and documented_commands(p)
    ),
]


def test_the_command_finder_sees_through_quotes_and_operators() -> None:
    line = 'ray exec c.yaml "cd ~/p && sweeper agent \\"$SWEEP_ID\\" --ray-address auto" --tmux'
    assert list(sweeper_commands(line)) == [["sweeper", "agent", "$SWEEP_ID", "--ray-address", "auto"]]
    assert list(sweeper_commands("X=1 sweeper status s; echo sweeper ls")) == [["sweeper", "status", "s"]]
    assert list(sweeper_commands("python c.py --nodes 2 -- sweeper run x.yaml")) == [
        ["sweeper", "run", "x.yaml"]
    ]


@pytest.mark.parametrize("path", DOCUMENTED, ids=lambda p: str(p.relative_to(REPO)))
def test_documented_sweeper_commands_exist_with_their_flags(path: Path) -> None:
    commands = documented_commands(path)
    assert commands, f"{path.name} shows no sweeper command"
    for argv in commands:
        check_sweeper_command(argv)


def test_slurm_script_is_valid_bash_and_runs_an_agent() -> None:
    script = CLUSTER / "slurm" / "sweeper-agent.sbatch"
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    directives = dict(
        m.groups() for m in re.finditer(r"^#SBATCH --([a-z-]+)(?:=(\S+))?", text, flags=re.MULTILINE)
    )
    assert int(directives["nodes"]) >= 2
    assert "gpus-per-node" in directives
    assert "ray start --head" in text and "ray start --address" in text
    agents = [argv for argv in documented_commands(script) if argv[1] == "agent"]
    assert any("--ray-address" in argv for argv in agents)


def test_aws_config_passes_rays_schema() -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((CLUSTER / "aws-gpu.yaml").read_text())
    validate_config(prepare_config(config))  # what `ray up` does before it touches the cloud
    assert config["provider"]["type"] == "aws"
    assert config["head_node_type"] in config["available_node_types"]
    gpu_types = [
        name
        for name, node in config["available_node_types"].items()
        if node["node_config"]["InstanceType"].split(".")[0][0] in "gp" and node.get("max_workers", 0) > 0
    ]
    assert gpu_types, "the cluster needs an autoscaled GPU node type"
    assert any("sweeper[" in command for command in config["setup_commands"])


def test_kuberay_cluster_and_job_fit_together() -> None:
    (cluster,) = yaml.safe_load_all((CLUSTER / "kuberay" / "raycluster.yaml").read_text())
    (job,) = yaml.safe_load_all((CLUSTER / "kuberay" / "rayjob.yaml").read_text())
    assert (cluster["apiVersion"], cluster["kind"]) == ("ray.io/v1", "RayCluster")
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    assert job["spec"]["clusterSelector"]["ray.io/cluster"] == cluster["metadata"]["name"]
    head = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert {e["name"] for e in head["env"]} >= {"SWEEPER_STORAGE"}
    for group in cluster["spec"]["workerGroupSpecs"]:
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        (worker,) = group["template"]["spec"]["containers"]
        assert int(worker["resources"]["limits"]["nvidia.com/gpu"]) >= 1
        assert worker["image"] == head["image"]
    runtime_env = yaml.safe_load(job["spec"]["runtimeEnvYAML"])
    assert runtime_env["working_dir"] == "/home/ray/project"
    entrypoint = shlex.split(job["spec"]["entrypoint"])
    assert entrypoint[:2] == ["sweeper", "agent"] and not _OPERATORS & set(entrypoint)
    dockerfile = (CLUSTER / "kuberay" / "Dockerfile").read_text()
    assert f"rayproject/ray:{cluster['spec']['rayVersion']}" in dockerfile


def test_cluster_files_are_all_documented() -> None:
    readme = (CLUSTER / "README.md").read_text()
    for path in CLUSTER.rglob("*"):
        if path.is_file() and path.name != "README.md" and "__pycache__" not in path.parts:
            assert path.name in readme, f"cluster/README.md does not mention {path.name}"


@pytest.mark.ray
@pytest.mark.slow
def test_local_cluster_runs_an_agent_on_two_gpu_nodes(tmp_path: Path) -> None:
    (tmp_path / "trainers").symlink_to(REPO / "trainers", target_is_directory=True)
    spec = {
        "name": "two-node-gpus",
        "method": "random",
        "metric": {"name": "value", "goal": "minimize"},
        "parameters": {"x1": {"min": -5.0, "max": 10.0}, "x2": {"min": 0.0, "max": 15.0}},
        # A whole GPU per trial: without the nodes' declared GPUs nothing could run.
        "sweeper": {"trainer": "trainers.functions:branin", "resources": {"gpus": 1, "cpus": 1}, "seed": 0},
    }
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    url = f"sqlite:///{tmp_path / 'sweeps.db'}"
    submitted = CliRunner().invoke(main, ["submit", str(tmp_path / "spec.yaml"), "--storage", url])
    assert submitted.exit_code == 0, submitted.output
    sweep_id = submitted.stdout.strip().splitlines()[-1]

    nodes = ["--nodes", "2", "--cpus-per-node", "1", "--gpus-per-node", "2"]
    agent = [str(SWEEPER_BIN), "agent", sweep_id, "--count", "4", "--max-concurrent", "2", "--storage", url]
    command = [sys.executable, str(CLUSTER / "local_cluster.py"), *nodes, "--", *agent]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 node(s)" in done.stderr

    study = load_study(open_storage(url), sweep_id)
    assert [t.state.name for t in study.trials if t.state.is_finished()] == ["COMPLETE"] * 4
    assert [s.id for s in list_sweeps(open_storage(url))] == [sweep_id]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["sweeper", "launch", "x.yaml"], "no command 'launch'"),
        (["sweeper", "agent", "abc", "--gpus", "2"], "agent has no option --gpus"),
        (["sweeper", "run", "x.yaml", "--ray-adress=auto"], "run has no option --ray-adress"),
    ],
)
def test_the_command_check_rejects_unknown_commands_and_flags(argv: list[str], message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        check_sweeper_command(argv)


def test_local_cluster_doctests_pass() -> None:
    import doctest
    import importlib.util

    spec = importlib.util.spec_from_file_location("local_cluster", CLUSTER / "local_cluster.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = doctest.testmod(module)
    assert result.attempted > 0
    assert result.failed == 0
