"""Huge grids: creating a sweep, `ls`, `status` and an agent's first trial, by the grid's size.

Each (storage, size) runs in a fresh process, which creates a grid sweep of 10^3, 10^6 or 10^9
points (a product of 10-value parameters), then times ``sweeper ls``, ``sweeper status`` (in
process, through the CLI) and one agent taking and running its first trial (local executor, a
trainer that returns at once). Peak memory is the process's VmHWM after each step, so a step that
built the grid in memory would show it. Before the block-by-block queue, 10^6 points took
455-748 s, 2.1 GB and a 312 MB journal to create.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import harness
from harness import Figure

SECTION = "8. Huge grids"

_CHILD = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from click.testing import CliRunner

    def hwm():
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024

    url, digits = sys.argv[1], int(sys.argv[2])
    import sweeper
    from sweeper.cli import main
    out = {"hwm_start": hwm()}
    spec = {"method": "grid", "metric": {"name": "loss"},
            "parameters": {f"p{i}": {"values": list(range(10))} for i in range(digits)}}
    began = time.perf_counter(); sweep_id = sweeper.sweep(spec, storage=url)
    out["create_s"] = time.perf_counter() - began; out["hwm_create"] = hwm()
    for command in ("ls", "status"):
        args = [command] + ([sweep_id] if command == "status" else []) + ["--storage", url]
        began = time.perf_counter(); result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
        out[command + "_s"] = time.perf_counter() - began
    began = time.perf_counter()
    summary = sweeper.agent(sweep_id, function=lambda config, trial: 0.0, storage=url,
                            executor="local", count=1)
    assert summary.complete == 1, summary
    out["first_trial_s"] = time.perf_counter() - began; out["hwm_end"] = hwm()
    print(json.dumps(out))
    """
)


def measure(url: str, digits: int) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, url, str(digits)], capture_output=True, text=True, check=True
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def storages(root: Path) -> dict[str, str]:
    urls = {"journal": f"journal://{root / 'grid.log'}", "sqlite": f"sqlite:///{root / 'grid.db'}"}
    try:
        import psycopg2

        conn = psycopg2.connect("postgresql://postgres@127.0.0.1:5432/postgres")
        conn.autocommit = True
        conn.cursor().execute("DROP DATABASE IF EXISTS sweeper_bench_grid")
        conn.cursor().execute("CREATE DATABASE sweeper_bench_grid")
        urls["postgresql"] = "postgresql://postgres@127.0.0.1:5432/sweeper_bench_grid"
    except Exception as exc:  # no server here: the other storages are still measured
        print(f"PostgreSQL not measured: {exc}")
    return urls


def main() -> None:
    args = harness.parse_args(__doc__ or "")
    sizes = (3, 6) if args.quick else (3, 6, 9)
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind, url in storages(Path(tmp)).items():
            for digits in sizes:
                m = measure(url, digits)
                grown = m["hwm_end"] - m["hwm_start"]
                figures.append(
                    Figure(
                        SECTION,
                        f"{kind}, 10^{digits} points",
                        f"create {m['create_s'] * 1000:.0f} ms, ls {m['ls_s'] * 1000:.0f} ms, "
                        f"status {m['status_s'] * 1000:.0f} ms, "
                        f"first trial {m['first_trial_s'] * 1000:.0f} ms; "
                        f"peak memory +{grown:.0f} MiB over the imports ({m['hwm_end']:.0f} MiB)",
                        "independent of the size",
                        None,
                    )
                )
    harness.emit(figures, args.json)


if __name__ == "__main__":
    main()
