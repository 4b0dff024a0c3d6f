"""Run every benchmark, each in its own process, and write the figures as one markdown report.

Usage (from the repository root)::

    python tests/benchmarks/run_all.py --out BENCHMARKS.md          # the full run (~15 min on 2 cores)
    python tests/benchmarks/run_all.py --quick --out /tmp/bench.md  # smoke run (~4 min)
    python tests/benchmarks/run_all.py --only overhead,quality      # some sections

The machine is noisy: compare the ratios measured side by side in the same run, not absolute times.
Timing-sensitive benchmarks run first; the search-quality and hyperband figures do not depend on load.
Needs the ``bench`` extra (``pip install -e '.[bench]'``: Ray Tune and W&B's ``sweeps`` engine).
Set ``BENCH_KEEP=1`` to keep the scratch directories, ``BENCH_TUNE_TRIALS`` / ``BENCH_QUALITY_SEEDS``
to change those sizes.
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import harness
from harness import Figure

# Order matters: the timing-sensitive ones first, while the machine is as quiet as it will be.
BENCHMARKS = (
    ("start", "bench_start.py", "1. Orchestration overhead"),
    ("overhead", "bench_overhead.py", "1. Orchestration overhead"),
    ("throughput", "bench_throughput.py", "1. Orchestration overhead"),
    ("pruning", "bench_pruning.py", "2. Pruning latency"),
    ("judge", "bench_judge.py", "2. Pruning latency"),
    ("gc", "bench_gc_pause.py", "2. Pruning latency"),
    ("logging", "bench_logging.py", "10. Logging at any rate"),
    ("utilisation", "bench_utilisation.py", "3. Cluster utilisation"),
    ("scale", "bench_scale.py", "6. Scale"),
    ("hyperband", "bench_hyperband.py", "4. Hyperband savings"),
    ("quality", "bench_quality.py", "5. Search quality"),
    ("conditional", "bench_conditional.py", "7. Conditional parameters"),
    ("warm", "bench_warm_start.py", "8. Warm starts"),
    ("grid", "bench_grid.py", "9. Huge grids"),
)
TIMEOUT_S = 1800


def run_one(script: str, section: str, quick: bool, logs: Path) -> tuple[list[Figure], float]:
    """Run one benchmark script; its figures (or one failure figure) and its wall time."""
    out = logs / f"{script}.json"
    log = logs / f"{script}.log"
    command = [sys.executable, str(harness.BENCH_DIR / script), "--json", str(out)]
    if quick:
        command.append("--quick")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(harness.BENCH_DIR), env.get("PYTHONPATH")]))
    env.setdefault("RAY_AUTH_MODE", "disabled")  # local throwaway instances
    began = time.perf_counter()
    print(f"== {script} ...", flush=True)
    with log.open("w") as sink:
        try:
            done = subprocess.run(
                command, stdout=sink, stderr=subprocess.STDOUT, env=env, timeout=TIMEOUT_S, check=False
            )
            code: int | str = done.returncode
        except subprocess.TimeoutExpired:
            code = f"timeout after {TIMEOUT_S} s"
    took = time.perf_counter() - began
    if code == 0 and out.exists():
        figures = harness.load_figures(out)
    else:
        tail = " | ".join(log.read_text(errors="replace").strip().splitlines()[-3:])
        figures = [Figure(section, f"{script} failed ({code})", "-", note=tail[-400:])]
    for fig in figures:
        print(f"   {fig.name}: {fig.value} (target {fig.target or '-'})", flush=True)
    print(f"   ({took:.0f} s; log: {log})", flush=True)
    return figures, took


def render(
    figures: list[Figure],
    took: dict[str, float],
    command: str,
    before: dict[str, object],
    after: dict[str, object],
    started: str,
) -> str:
    """The markdown report."""
    versions = harness.library_versions()
    lines = [
        "# Benchmarks",
        "",
        f"Produced by `{command}` (started {started} UTC, {sum(took.values()) / 60:.1f} min).",
        "Every engine ran side by side in the same run on the same machine; this machine is shared and",
        "noisy, so read the ratios rather than the absolute times.",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        f"| CPUs (nproc) | {before['nproc']} |",
        f"| Memory | {before['memory_gib']} GiB |",
        f"| CPU model | {before['cpu']} |",
        f"| Load average (1/5/15 min) at start | {' / '.join(map(str, before['loadavg']))} |",  # type: ignore[call-overload]
        f"| Load average at end | {' / '.join(map(str, after['loadavg']))} |",  # type: ignore[call-overload]
        f"| Python | {before['python']} on {before['platform']} |",
        f"| Versions | {', '.join(f'{k} {v}' for k, v in versions.items())} |",
        "",
        "## Results",
        "",
    ]
    sections: dict[str, list[Figure]] = {}
    for fig in figures:
        sections.setdefault(fig.section, []).append(fig)
    for section, items in sorted(sections.items()):
        lines += [
            f"### {section}",
            "",
            "| Figure | Measured | Target | Met | Notes |",
            "|---|---|---|---|---|",
        ]
        for fig in items:
            met = {True: "yes", False: "**no**", None: ""}[fig.met]
            cells = [fig.name, fig.value, fig.target, met, fig.note]
            lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
        lines.append("")
    missed = sorted((f for f in figures if f.met is False), key=lambda f: f.section)
    lines += ["## Targets missed", ""]
    lines += [f"- {f.section}: {f.name}: {f.value} (target {f.target})" for f in missed] or ["- none"]
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=harness.REPO_ROOT / "BENCHMARKS.md")
    parser.add_argument("--quick", action="store_true", help="smoke run with tiny sizes")
    parser.add_argument("--only", default="", help="comma-separated: " + ",".join(b[0] for b in BENCHMARKS))
    args = parser.parse_args()
    chosen = [b for b in BENCHMARKS if not args.only or b[0] in args.only.split(",")]
    unknown = set(filter(None, args.only.split(","))) - {b[0] for b in BENCHMARKS}
    if unknown:
        parser.error(f"unknown benchmarks: {', '.join(sorted(unknown))}")
    command = "python tests/benchmarks/run_all.py " + " ".join(sys.argv[1:])
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
    before = harness.machine()
    print(f"machine: {before}", flush=True)
    logs = Path(tempfile.mkdtemp(prefix="sweeper-bench-"))
    figures: list[Figure] = []
    took: dict[str, float] = {}
    for name, script, section in chosen:
        got, took[name] = run_one(script, section, args.quick, logs)
        figures += got
    after = harness.machine()
    args.out.write_text(render(figures, took, command.strip(), before, after, started))
    print(f"wrote {args.out} (logs in {logs})")


if __name__ == "__main__":
    main()
