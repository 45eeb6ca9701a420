"""Time the dhcp plugin and daemon against Go's (/usr/lib/cni/dhcp and its daemon) on one dnsmasq.

A test lab (tests/helpers/dhcp_lab: a bridge netns, dnsmasq in a server netns, one container netns) serves both
daemons in turn; each measurement is the median wall time of N calls of the plugin exec'd directly: ADD (a full
DISCOVER/OFFER/REQUEST/ACK through the daemon), DEL (DHCPRELEASE), and the daemon's start until its socket
answers. Ours is ``dist/dhcp`` when built, else ``python -m plugins dhcp``. Run from the repo root as root:
``.venv/bin/python -m bench.bench_dhcp [-n 10]``. Prints one line per case: both medians and ours/Go.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.helpers.dhcp_lab import REPO, DhcpLab
from tests.helpers.netns import NetnsPool

GO = "/usr/lib/cni/dhcp"


def ours() -> list[str]:
    built = REPO / "dist" / "dhcp"
    return [str(built)] if os.access(built, os.X_OK) else [sys.executable, "-m", "plugins", "dhcp"]


def _daemon(lab: DhcpLab, argv: list[str]) -> tuple[subprocess.Popen, float]:
    started = time.monotonic()
    proc = subprocess.Popen([*argv, "daemon", "-socketpath", lab.socket_path, *(
        ["-leasedir", str(lab.lease_dir)] if argv[0] != GO else [])], cwd=REPO, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(REPO)})
    deadline = started + 30
    while not lab._accepts():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{argv[0]} daemon did not start (exit {proc.poll()})")
        time.sleep(0.005)
    return proc, time.monotonic() - started


def measure(lab: DhcpLab, argv: list[str], n: int) -> dict[str, float]:
    ctr = lab.containers[0] if lab.containers else lab.container()
    daemon, start = _daemon(lab, argv)
    adds, dels = [], []
    try:
        for _ in range(n):
            began = time.monotonic()
            proc = lab.call("ADD", ctr, plugin=argv)
            adds.append(time.monotonic() - began)
            assert proc.returncode == 0, proc.stdout + proc.stderr
            began = time.monotonic()
            proc = lab.call("DEL", ctr, plugin=argv)
            dels.append(time.monotonic() - began)
            assert proc.returncode == 0, proc.stdout + proc.stderr
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(10)
        if os.path.exists(lab.socket_path):
            os.unlink(lab.socket_path)
    return {"daemon start": start, "ADD (DORA)": statistics.median(adds), "DEL (release)": statistics.median(dels)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=10)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cnt-bench-dhcp-") as tmp:
        pool = NetnsPool(tag="b")
        lab = DhcpLab(pool, Path(tmp)).up()
        try:
            mine = measure(lab, ours(), opts.n)
            go = measure(lab, [GO], opts.n)
        finally:
            lab.down()
            pool.cleanup()
    print(f"{'case':<16}{'ours ms':>10}{'Go ms':>10}{'ours/Go':>9}")
    for case, value in mine.items():
        print(f"{case:<16}{value * 1000:>10.1f}{go[case] * 1000:>10.1f}{value / go[case]:>9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
