"""The pair's ADD and DEL (bridge + in-process host-local) in a loop, exec'd directly as libcni would, for
profiling and A/B runs: ours through the warm path (one or more builds) beside Go's, interleaved call by call.

    .venv/bin/python -m bench.pair_loop -n 60 --side go=/usr/lib/cni --side new=dist --side base=../pcpu-base-dist
    .venv/bin/python -m bench.pair_loop --loop new=dist --seconds 30     # just run, for perf record -a / strace -p

No driver (cnitool) and no nsenter per call: this process enters the "host" namespace once and execs the bridge
plugin with the pair's config (bench/confs.py) and, on DEL, the ADD's result as ``prevResult``, as libcni does.
Per call it reports wall time, CPU (the launcher's rusage plus what the warm process and its children spent:
its status' ``cpu_seconds``) and minor page faults (the launcher's, plus the warm process's own and its reaped
children's from /proc/<pid>/stat); walls from ADD and DEL run back to back, our per-call CPU and faults from a
second cycle read call by call (``Side.cycle``). Names: netns ``cnt-pc<run>-…``, bridges ``cntpc<n>``.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cni_common.warm.status import warm_processes

CLONE_NEWNET = 0x40000000


class Side:
    """One plugin set: Go's directory, or one of our dist/ folders with its own launcher cache."""

    def __init__(self, name: str, folder: str, tmp: Path, index: int, run: str) -> None:
        self.name, self.folder = name, os.path.abspath(folder)
        self.go = not os.path.exists(os.path.join(self.folder, "vxlan"))  # Go v1.1.1 has no vxlan
        self.cache = tmp / f"cache-{name}"
        self.cache.mkdir()
        self.data = tmp / f"data-{name}"
        self.netns = f"cnt-pc{run}-c{index}"
        subprocess.run(["ip", "netns", "add", self.netns], check=True)
        self.conf = {"cniVersion": "1.0.0", "name": f"cntpc-pair{index}", "type": "bridge",
                     "bridge": f"cntpc{index}", "isGateway": True,
                     "ipam": {"type": "host-local", "dataDir": str(self.data),
                              "ranges": [[{"subnet": f"10.{90 + index}.0.0/16"}]], "routes": [{"dst": "0.0.0.0/0"}]}}
        self.env = {"CNI_PATH": self.folder, "PATH": os.defpath, "CNI_CONTAINERID": f"cntpc{run}{index}",
                    "CNI_NETNS": f"/run/netns/{self.netns}", "CNI_IFNAME": "eth0",
                    "CNI_SUITE_CACHE_DIR": str(self.cache), "CNI_SUITE_WARM": "on", "CNI_SUITE_WARM_IDLE": "600"}
        self.prev: dict[str, object] | None = None

    def warm_counters(self) -> tuple[float, int, int]:
        """(CPU seconds, minor faults, pid) of this side's warm process and its reaped children; zeros for Go."""
        if self.go:
            return 0.0, 0, 0
        found = [w for w in warm_processes(str(self.cache), settle=1.0) if w.get("state") == "running"]
        if not found:
            return 0.0, 0, 0
        w = found[0]
        pid = int(w["pid"])  # type: ignore[call-overload]
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return float(w["cpu_seconds"]), int(fields[7]) + int(fields[8]), pid  # type: ignore[arg-type]

    def call(self, verb: str, metered: bool = True) -> tuple[float, float, int]:
        """One call: wall s, CPU s, minor faults (without ``metered``, the launcher's alone)."""
        conf = dict(self.conf)
        if verb == "DEL" and self.prev is not None:
            conf["prevResult"] = self.prev
        cpu0, flt0, _ = self.warm_counters() if metered else (0.0, 0, 0)
        with tempfile.TemporaryFile() as out:
            start = time.perf_counter()
            proc = subprocess.Popen([os.path.join(self.folder, "bridge")], stdin=subprocess.PIPE, stdout=out,
                                    stderr=subprocess.DEVNULL, env={**self.env, "CNI_COMMAND": verb})
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(conf).encode())
            proc.stdin.close()
            _, status, ru = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - start
            out.seek(0)
            text = out.read()
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"{self.name} {verb} failed: {text.decode(errors='replace')}")
        if verb == "ADD":
            self.prev = json.loads(text)
        cpu1, flt1, _ = self.warm_counters() if metered else (0.0, 0, 0)
        return wall, ru.ru_utime + ru.ru_stime + cpu1 - cpu0, ru.ru_minflt + flt1 - flt0

    def cycle(self, per_verb: bool = True) -> dict[str, tuple[float, float, int]]:
        """ADD then DEL back to back, as a runtime runs them: a status read between the two would delay the DEL,
        and a veth deleted later costs the kernel more (bench/measure.py, ``WarmCpu``). Walls of each; CPU and
        faults of both; with ``per_verb``, a warm side's per-verb CPU and faults from a second, metered cycle."""
        cpu0, flt0, _ = self.warm_counters()
        add, delete = self.call("ADD", metered=False), self.call("DEL", metered=False)
        cpu1, flt1, _ = self.warm_counters()
        both = (add[0] + delete[0], add[1] + delete[1] + cpu1 - cpu0, add[2] + delete[2] + flt1 - flt0)
        if per_verb and not self.go:
            add, delete = (add[0], *self.call("ADD")[1:]), (delete[0], *self.call("DEL")[1:])
        return {"ADD": add, "DEL": delete, "ADD+DEL": both}

    def close(self) -> None:
        for w in warm_processes(str(self.cache)):
            if isinstance(w.get("pid"), int):
                try:
                    os.kill(int(w["pid"]), 9)  # type: ignore[call-overload]
                except ProcessLookupError:
                    pass
        subprocess.run(["ip", "netns", "del", self.netns], check=False)


def _enter(path: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns")
    os.close(fd)


def _spread(values: list[float]) -> str:
    q = statistics.quantiles(values, n=4) if len(values) >= 4 else [min(values), 0, max(values)]
    return f"{statistics.median(values) * 1e3:7.2f} (IQR {q[0] * 1e3:.2f}-{q[2] * 1e3:.2f})"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--side", action="append", default=[], help="NAME=FOLDER (Go's /usr/lib/cni or a dist/)")
    ap.add_argument("--loop", help="NAME=FOLDER: only loop this side for --seconds (profiling)")
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("-n", type=int, default=60)
    ap.add_argument("--pidfile", help="with --loop: write the warm process's pid here once it runs")
    opts = ap.parse_args()
    run = secrets.token_hex(2)
    host = f"cnt-pc{run}-h"
    subprocess.run(["ip", "netns", "add", host], check=True)
    sides: list[Side] = []
    try:
        with tempfile.TemporaryDirectory(prefix="cnt-pc-") as tmp:
            specs = [opts.loop] if opts.loop else opts.side
            for i, spec in enumerate(specs):
                name, folder = spec.split("=", 1)
                sides.append(Side(name, folder, Path(tmp), i, run))
            _enter(f"/run/netns/{host}")
            for side in sides:  # warm-up: unpack, start the warm process, make the bridge
                side.cycle()
                side.cycle()
            if opts.loop:
                side = sides[0]
                if opts.pidfile:
                    Path(opts.pidfile).write_text(str(side.warm_counters()[2]))
                    time.sleep(1.0)
                deadline, count = time.monotonic() + opts.seconds, 0
                while time.monotonic() < deadline:
                    side.cycle(per_verb=False)
                    count += 1
                print(f"{count} cycles", file=sys.stderr)
                return 0
            samples: dict[str, list[dict[str, tuple[float, float, int]]]] = {s.name: [] for s in sides}
            for _ in range(opts.n):
                for side in sides:
                    samples[side.name].append(side.cycle())
            load = os.getloadavg()
            print(f"n={opts.n}, load {load[0]:.2f}; median (IQR) ms; faults median")
            for side in sides:
                for verb in ("ADD", "DEL", "ADD+DEL"):
                    rows = [c[verb] for c in samples[side.name]]
                    print(f"{side.name:6} {verb:8} wall {_spread([r[0] for r in rows])}  "
                          f"cpu {_spread([r[1] for r in rows])}  faults {statistics.median(r[2] for r in rows):.0f}")
    finally:
        for side in sides:
            side.close()
        subprocess.run(["ip", "netns", "del", host], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
