#!/usr/bin/env python3
"""Runs every example against a fresh kvtierd (the `examples` ctest test).

Starts kvtierd ($KVTIERD, or --kvtierd) in a temporary directory with kvtier.testing.Daemon,
runs each example with ``--server`` pointing at its Unix socket, and fails (exit 1) when an
example exits non-zero or runs past --timeout seconds. The daemon is stopped and its
directory removed however the run ends.

    KVTIERD=build/release/server/kvtierd build/venv/bin/python examples/run_examples.py
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from kvtier.testing import Daemon

HERE = os.path.dirname(os.path.abspath(__file__))

# Each example with the arguments the test gives it besides --server (kept small where the
# example's defaults are sized for a demonstration rather than a test).
EXAMPLES = [
    ("offload_repair_paged.py", []),
    ("index_only.py", []),
    ("async_client.py", ["--sessions", "4"]),
    ("return_mode_cost.py", ["--rows", "512", "--budgets", "96", "--runs", "1",
                             "--tokens", "4"]),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kvtierd", default=None, help="kvtierd binary (default: $KVTIERD)")
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds per example")
    parser.add_argument("names", nargs="*", help="run only these examples")
    args = parser.parse_args()

    selected = [(name, extra) for name, extra in EXAMPLES
                if not args.names or name in args.names]
    if not selected:
        print(f"no example named {args.names}", file=sys.stderr)
        return 2
    failed = []
    with Daemon(kvtierd=args.kvtierd, extra_flags=["--durability=none"]) as daemon:
        print(f"kvtierd: {daemon}", flush=True)
        for name, extra in selected:
            command = [sys.executable, os.path.join(HERE, name), "--server",
                       daemon.unix_target, *extra]
            print(f"=== {name} {' '.join(extra)}", flush=True)
            start = time.monotonic()
            try:
                # No __pycache__ in the source tree from a test run.
                env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
                code = subprocess.run(command, timeout=args.timeout, env=env).returncode
            except subprocess.TimeoutExpired:  # run() kills the child before raising
                code = f"timeout after {args.timeout:g} s"
            seconds = time.monotonic() - start
            print(f"=== {name}: exit {code} ({seconds:.1f} s)", flush=True)
            if code != 0:
                failed.append(name)
            if not daemon.running:
                print("kvtierd died; log tail:\n" + daemon.log_tail(), file=sys.stderr)
                failed.append("kvtierd")
                break
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"all {len(selected)} examples passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
