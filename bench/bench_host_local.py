"""Time our host-local against the Go one (/usr/lib/cni/host-local): VERSION, and an ADD+DEL cycle.

Each measurement is the median wall time of N execs, on a temp dataDir. Run from the repo root:
``.venv/bin/python bench/bench_host_local.py [-n 30] [--ours 'CMD ARGS']``. Ours is ``dist/host-local`` when it
is built, else ``python -m ipam.host_local``. Prints one line per case with both medians and ours/Go.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GO = "/usr/lib/cni/host-local"


def default_ours() -> list[str]:
    built = REPO / "dist" / "host-local"
    if os.access(built, os.X_OK):
        return [str(built)]
    return [str(REPO / ".venv" / "bin" / "python"), "-m", "ipam.host_local"]


def _exec(cmd: list[str], verb: str, stdin: bytes, cid: str) -> float:
    env = {"PATH": "/usr/bin:/bin", "CNI_COMMAND": verb, "CNI_CONTAINERID": cid, "CNI_NETNS": "/nonexistent",
           "CNI_IFNAME": "eth0", "CNI_PATH": "/usr/lib/cni"}
    start = time.perf_counter()
    proc = subprocess.run(cmd, input=stdin, env=env, cwd=REPO, capture_output=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{shlex.join(cmd)} {verb} failed: {proc.stdout.decode()} {proc.stderr.decode()}")
    return elapsed


def median_ms(cmd: list[str], case: str, n: int, data_dir: str) -> float:
    """Median of ``n`` runs of one case; an ADD+DEL cycle counts both execs."""
    conf = json.dumps({"cniVersion": "1.0.0", "name": "bench",
                       "ipam": {"type": "host-local", "dataDir": data_dir,
                                "ranges": [[{"subnet": "10.123.0.0/16"}]]}}).encode()
    samples = []
    for i in range(n):
        if case == "VERSION":
            samples.append(_exec(cmd, "VERSION", b"", "x"))
        else:
            cid = f"bench{i}"
            samples.append(_exec(cmd, "ADD", conf, cid) + _exec(cmd, "DEL", conf, cid))
    return statistics.median(samples) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=30, help="runs per case (default 30)")
    parser.add_argument("--ours", default="", help='command that runs our host-local, e.g. ".venv/bin/python -m ipam.host_local"')
    opts = parser.parse_args()
    ours = shlex.split(opts.ours) if opts.ours else default_ours()
    print(f"ours: {shlex.join(ours)}\ngo:   {GO}\nmedian of {opts.n} runs")
    with tempfile.TemporaryDirectory(prefix="cnt-i-bench-") as tmp:
        for case in ("VERSION", "ADD+DEL"):
            mine = median_ms(ours, case, opts.n, os.path.join(tmp, "ours"))
            theirs = median_ms([GO], case, opts.n, os.path.join(tmp, "go"))
            print(f"{case:8s} ours {mine:7.1f} ms   go {theirs:6.1f} ms   ratio {mine / theirs:5.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
