"""Start a multi-node Ray cluster on this machine, run a command against it, then tear it down.

Each node is a separate raylet with its own declared CPUs and GPUs (GPUs need not exist: Ray only
counts them), so GPU scheduling, fractional GPUs and multi-node placement can be tried on a laptop::

    python cluster/local_cluster.py --nodes 2 --gpus-per-node 2 -- \\
        sweeper agent SWEEP_ID --count 8 --storage sqlite:///sweeps.db

A ``sweeper agent`` or ``sweeper run`` command gets ``--ray-address`` pointing at the cluster (unless it
has one); every command also sees ``RAY_ADDRESS``. The script exits with the command's exit code.
Ray's files go to a private temporary directory, so a ``ray.init()`` elsewhere on the machine never
joins this cluster by accident.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

# Commands of our CLI that take --ray-address.
_RAY_COMMANDS = ("agent", "run")


def with_ray_address(command: Sequence[str], address: str) -> list[str]:
    """``command`` with ``--ray-address ADDRESS`` appended when it is a sweeper agent/run without one.

    Example:
        >>> with_ray_address(["sweeper", "agent", "abc"], "10.0.0.1:6379")
        ['sweeper', 'agent', 'abc', '--ray-address', '10.0.0.1:6379']
        >>> with_ray_address(["python", "train.py"], "10.0.0.1:6379")
        ['python', 'train.py']
    """
    argv = list(command)
    is_sweeper = len(argv) >= 2 and Path(argv[0]).name == "sweeper" and argv[1] in _RAY_COMMANDS
    has_address = any(arg == "--ray-address" or arg.startswith("--ray-address=") for arg in argv)
    return [*argv, "--ray-address", address] if is_sweeper and not has_address else argv


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line: node shape options, then ``--`` and the command to run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=2, help="Ray nodes, the head included (default 2).")
    parser.add_argument("--cpus-per-node", type=int, default=2, help="CPUs each node declares (default 2).")
    parser.add_argument(
        "--gpus-per-node", type=float, default=2, help="GPUs each node declares, real or not (default 2)."
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command to run.")
    args = parser.parse_args(argv)
    if args.command[:1] == ["--"]:
        args.command = args.command[1:]
    if not args.command:
        parser.error("give the command to run after --, e.g. -- sweeper agent SWEEP_ID --count 4")
    if args.nodes < 1:
        parser.error(f"--nodes must be >= 1, got {args.nodes}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Start the cluster, run the command against it, shut the cluster down; return the exit code."""
    args = parse_args(argv)
    # Short path: Ray's socket paths must fit in 107 bytes.
    temp_dir = tempfile.mkdtemp(prefix="swr-")
    os.environ["RAY_TMPDIR"] = temp_dir  # read by Ray when it picks where the cluster's address goes

    from ray.cluster_utils import Cluster

    node_args = {"num_cpus": args.cpus_per_node, "num_gpus": args.gpus_per_node}
    cluster = Cluster(initialize_head=True, head_node_args={**node_args, "include_dashboard": False})
    try:
        for _ in range(args.nodes - 1):
            cluster.add_node(**node_args)
        cluster.wait_for_nodes()
        address = cluster.address
        print(
            f"local Ray cluster at {address}: {args.nodes} node(s), each with "
            f"{args.cpus_per_node} CPU(s) and {args.gpus_per_node:g} GPU(s)",
            file=sys.stderr,
            flush=True,
        )
        command = with_ray_address(args.command, address)
        return subprocess.call(command, env={**os.environ, "RAY_ADDRESS": address})
    finally:
        cluster.shutdown()  # type: ignore[no-untyped-call]
        shutil.rmtree(temp_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
