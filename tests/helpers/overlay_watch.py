"""Watching an overlay while faults happen: continuous pings between pods and a record of every route or
neighbour the kernel withdrew on the nodes' VXLAN devices (``ip monitor``), both measured, never timed.

Shared by tests/netns/test_vxlan_faults.py and bench/bench_vxlan_scale.py.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from tests.helpers import paths
from tests.helpers.netns import Netns

PYTHON = str(paths.REPO / ".venv" / "bin" / "python")

#: ``python -c`` body: ICMP echo to argv[1] every 0.2 s, each answer awaited up to 1 s; prints "sent received"
#: on SIGTERM. Raw socket, so no ping binary is needed (the machines have busybox's only).
_PINGER = r"""
import os, signal, socket, struct, sys, time
dst = sys.argv[1]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
ident = os.getpid() & 0xffff
sent = got = 0
stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
def csum(b):
    t = sum(struct.unpack("!%dH" % (len(b) // 2), b)); t = (t >> 16) + (t & 0xffff); t += t >> 16
    return ~t & 0xffff
seq = 0
print("ready", flush=True)
while not stop:
    seq = (seq + 1) & 0xffff
    start = time.monotonic()
    hdr = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + b"cnt-ping"
    s.sendto(struct.pack("!BBHHH", 8, 0, csum(hdr), ident, seq) + b"cnt-ping", (dst, 0))
    sent += 1
    while time.monotonic() < start + 1.0:  # a stop waits for the ping in flight: not a loss
        s.settimeout(max(0.01, start + 1.0 - time.monotonic()))
        try:
            data = s.recv(2048)
        except (socket.timeout, InterruptedError):
            continue
        ihl = (data[0] & 15) * 4
        if data[ihl] == 0 and struct.unpack("!HH", data[ihl + 4:ihl + 8]) == (ident, seq):
            got += 1
            break
    time.sleep(max(0.0, start + 0.2 - time.monotonic()))
print(sent, got, flush=True)
"""


def _ours_withdrawn(line: str, device: str) -> bool:
    """A "Deleted" event of an entry the overlay programs on ``device``: a route, a neighbour or an FDB entry
    (IPv4 in the labs), or the device's own address. Not the IPv6 multicast neighbours (``ff02::…``, NOARP)
    the kernel makes and garbage-collects by itself on every link."""
    _, _, rest = line.partition("] ")
    if not rest.startswith("Deleted ") or f"dev {device}" not in rest:
        return False
    entry = rest.split()[1]
    return not (entry.startswith("ff0") or entry.startswith("fe80:"))


@dataclass
class Observation:
    """What a watched period showed: echo requests sent/answered per pair, and the withdrawn entries."""

    pings: dict[str, tuple[int, int]] = field(default_factory=dict)
    withdrawn: list[str] = field(default_factory=list)

    @property
    def sent(self) -> int:
        return sum(s for s, _ in self.pings.values())

    @property
    def lost(self) -> int:
        return sum(s - r for s, r in self.pings.values())


@contextlib.contextmanager
def observe(nodes: Sequence[Netns], pairs: Sequence[tuple[Netns, str]], device: str = "cnivx.1"
            ) -> Iterator[Observation]:
    """Ping every ``(source netns, destination ip)`` pair and monitor every node in ``nodes`` while the body
    runs; the observation is complete when the block exits."""
    obs = Observation()
    tmp = Path(tempfile.mkdtemp(prefix="cnt-x-observe-"))
    monitors: list[tuple[subprocess.Popen, Path]] = []
    pingers: list[tuple[str, subprocess.Popen]] = []
    try:
        for i, ns in enumerate(nodes):
            out = tmp / f"monitor-{i}.log"
            proc = subprocess.Popen(["ip", "-n", ns.name, "-ts", "monitor", "route", "neigh"],
                                    stdout=open(out, "wb"), stderr=subprocess.STDOUT)
            monitors.append((proc, out))
        for src, dst in pairs:
            proc = src.popen([PYTHON, "-c", _PINGER, dst], stdout=subprocess.PIPE, text=True)
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
            pingers.append((f"{src.name} -> {dst}", proc))
        time.sleep(0.3)  # the monitors subscribe asynchronously
        yield obs
    finally:
        time.sleep(0.5)  # let the last echo of the period come back
        for label, proc in pingers:
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=30)
            sent, got = (int(x) for x in out.split()[-2:])
            obs.pings[label] = (sent, got)
        for proc, out in monitors:
            proc.terminate()
            proc.wait(timeout=10)
            lines = out.read_text(errors="replace").splitlines()
            obs.withdrawn += [ln for ln in lines if _ours_withdrawn(ln, device)]
        shutil.rmtree(tmp, ignore_errors=True)
