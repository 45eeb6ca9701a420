"""host-local ADD+DEL alone through the warm path of two or more builds, beside Go's, interleaved pair by pair:
what each build's warm process costs itself and what its children cost, counted from ``/proc`` alike for every
build (bench/README.md, "The final main of session 8").

    .venv/bin/python -m bench.warm_ab -n 200 --side new=dist --side old=../old-dist

Per side it prints, per ADD+DEL: the total CPU from ``/proc/<pid>/stat`` (the warm process's own utime+stime and
its reaped children's), the warm process's own part and its page faults, and the median and mean of the per-pair
figure ``bench/warm.py`` takes (the launcher's rusage plus the difference of the warm process's status around the
call). A build whose status counts its own CPU in clock ticks shows a median below its ``/proc`` total; the
status queries the per-pair figure makes are in both. Names: data dirs and caches under a ``cnt-wab-`` temp
folder, removed at the end; no kernel state.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
from pathlib import Path

from bench.measure import WarmCpu
from bench.warm import GO_HOST_LOCAL, _pair
from cni_common.warm.status import warm_processes

WARMUP_PAIRS = 20


def _proc_times(pid: int) -> tuple[int, int, int]:
    """(minor faults, own utime+stime, reaped children's utime+stime) of ``pid``, in faults and clock ticks."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[7]), int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=200, help="ADD+DEL pairs per side")
    parser.add_argument("--side", action="append", required=True, help="NAME=DIST (a folder holding host-local)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="cnt-wab-"))
    sides = []
    for spec in args.side:
        name, _, dist = spec.partition("=")
        cache = tmp / f"cache-{name}"
        cache.mkdir(mode=0o700)
        env = {"CNI_SUITE_CACHE_DIR": str(cache), "CNI_SUITE_WARM": "on", "CNI_SUITE_WARM_IDLE": "600"}
        sides.append((name, Path(dist) / "host-local", env, WarmCpu(str(cache)), cache))
    try:
        for name, plugin, env, meter, _ in sides:
            for i in range(WARMUP_PAIRS):
                _pair(plugin, tmp / f"data-{name}", env, f"cnt-w{i}", meter)
        pids = [int(warm_processes(str(cache))[0]["pid"]) for *_, cache in sides]  # type: ignore[call-overload]
        before = [_proc_times(pid) for pid in pids]
        per_pair: list[list[float]] = [[] for _ in sides]
        go: list[float] = []
        for i in range(args.n):
            for k, (name, plugin, env, meter, _) in enumerate(sides):
                per_pair[k].append(_pair(plugin, tmp / f"data-{name}", env, f"cnt-{i}", meter)[1])
            go.append(_pair(GO_HOST_LOCAL, tmp / "data-go", {}, f"cnt-{i}", None)[1])
        after = [_proc_times(pid) for pid in pids]
    finally:
        for *_, cache in sides:
            for warm in warm_processes(str(cache)):
                try:
                    os.kill(int(warm["pid"]), 9)  # type: ignore[call-overload]
                except (KeyError, ProcessLookupError, ValueError):
                    pass
        shutil.rmtree(tmp, ignore_errors=True)
    tick = os.sysconf("SC_CLK_TCK")
    print(f"per host-local ADD+DEL, {args.n} pairs; Go: median {statistics.median(go) * 1000:.2f} ms CPU")
    for k, (name, *_rest) in enumerate(sides):
        faults, own, children = (b - a for a, b in zip(before[k], after[k], strict=True))
        print(f"{name}: /proc total {(own + children) / tick / args.n * 1000:.2f} ms, warm process "
              f"{own / tick / args.n * 1000:.2f} ms and {faults / args.n:.0f} faults; per-pair figure median "
              f"{statistics.median(per_pair[k]) * 1000:.2f} ms, mean {statistics.mean(per_pair[k]) * 1000:.2f} ms")


if __name__ == "__main__":
    main()
