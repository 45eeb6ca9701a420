"""host-local exec'd alone, ADD+DEL, the way a runtime execs an IPAM plugin: ours by exec and through the warm
path against Go's, interleaved sample by sample, with CPU and the peak RSS of a call.

No namespace and no driver: the plugin is exec'd directly with a temp dataDir (host-local changes no kernel
state), so the figures are the plugin's own. CPU and peak RSS of an exec'd call come from `os.wait4`; for a
warm call the work runs in the warm process's child, whose CPU and peak RSS the warm process reports in its
status (`cpu_seconds`, `max_call_rss_kib`; docs/packaging.md, "The warm path"). A warm child's RSS counts the
pages it shares with the warm process (copy-on-write), so it overstates what the call adds to the node.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from bench.measure import WarmCpu
from bench.stats import Usage
from bench.table import Goal, Row
from cni_common.warm.status import warm_processes

GO_HOST_LOCAL = Path("/usr/lib/cni/host-local")
ALONE_GOALS = (Goal("wall_ratio", 2.0), Goal("cpu_ratio", 1.0))


def _conf(data_dir: Path) -> bytes:
    return json.dumps({"cniVersion": "1.0.0", "name": "cnt-bench-alone", "type": "host-local",
                       "ipam": {"type": "host-local", "subnet": "10.98.0.0/16", "dataDir": str(data_dir)}}).encode()


def _pair(plugin: Path, data_dir: Path, env: dict[str, str], cid: str,
          warm: WarmCpu | None) -> tuple[float, float, int]:
    """One ADD+DEL: wall seconds, CPU seconds, peak RSS KiB of its largest call."""
    wall = cpu = 0.0
    rss = 0
    for verb in ("ADD", "DEL"):
        before = warm.total() if warm else 0.0
        call_env = {**env, "CNI_COMMAND": verb, "CNI_CONTAINERID": cid, "CNI_NETNS": "/run/netns/cnt-bench-none",
                    "CNI_IFNAME": "eth0", "CNI_PATH": str(plugin.parent), "PATH": os.defpath}
        proc, usage, maxrss = _measured(plugin, call_env, _conf(data_dir))
        if proc.returncode != 0:
            raise RuntimeError(f"{plugin} {verb}: {proc.stdout.strip()} {proc.stderr.strip()}")
        wall += usage.wall
        cpu += usage.cpu + (max(0.0, warm.total() - before) if warm else 0.0)
        rss = max(rss, maxrss)
    return wall, cpu, rss


def _measured(plugin: Path, env: dict[str, str], stdin: bytes) -> tuple[subprocess.CompletedProcess[str], Usage, int]:
    """Run one call: its output, its Usage and its peak RSS (KiB), all from `os.wait4`."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen([str(plugin)], stdin=subprocess.PIPE, stdout=out, stderr=err, env=env)
        assert proc.stdin is not None
        proc.stdin.write(stdin)
        proc.stdin.close()
        _, status, rusage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        done = subprocess.CompletedProcess([str(plugin)], proc.returncode, out.read().decode(errors="replace"),
                                           err.read().decode(errors="replace"))
    return done, Usage(wall, rusage.ru_utime + rusage.ru_stime), rusage.ru_maxrss


def alone_rows(ours: Path, workdir: Path, cache: Path, n: int) -> list[Row]:
    """Rows: host-local alone ADD+DEL, ours exec'd and warm, each beside Go's (interleaved), and peak RSS."""
    if not os.access(GO_HOST_LOCAL, os.X_OK):
        return [Row("host-local alone ADD+DEL", note=f"{GO_HOST_LOCAL} not installed")]
    base = {"CNI_SUITE_CACHE_DIR": str(cache), "CNI_SUITE_WARM_IDLE": "600"}
    warm = WarmCpu(str(cache))
    sides = {"go": (GO_HOST_LOCAL, {}, None), "exec": (ours, {**base, "CNI_SUITE_WARM": "off"}, None),
             "warm": (ours, {**base, "CNI_SUITE_WARM": "on"}, warm)}
    samples: dict[str, list[tuple[float, float, int]]] = {k: [] for k in sides}
    for name, (plugin, env, meter) in sides.items():  # warm-up: unpack, start the warm process
        _pair(plugin, workdir / name, env, "cnt-warmup", meter)
    for i in range(n):
        for name, (plugin, env, meter) in sides.items():
            samples[name].append(_pair(plugin, workdir / name, env, f"cnt-{i}", meter))
    warm_rss = max((int(w.get("max_call_rss_kib", 0)) for w in warm_processes(str(cache), settle=1.0)), default=0)  # type: ignore[call-overload]

    def med(name: str, index: int) -> float:
        return statistics.median(s[index] for s in samples[name])

    go_rss = max(s[2] for s in samples["go"])
    return [
        Row("host-local alone ADD+DEL, exec'd", ours=med("exec", 0), go=med("go", 0), ours_cpu=med("exec", 1),
            go_cpu=med("go", 1)),
        Row("host-local alone ADD+DEL, warm path", ours=med("warm", 0), go=med("go", 0), ours_cpu=med("warm", 1),
            go_cpu=med("go", 1), goals=ALONE_GOALS),
        Row("peak RSS of a host-local call, exec'd", unit="MiB", ours=max(s[2] for s in samples["exec"]) * 1024.0,
            go=go_rss * 1024.0),
        Row("peak RSS of a host-local call, warm (shared pages counted)", unit="MiB", ours=warm_rss * 1024.0,
            go=go_rss * 1024.0, goals=(Goal("wall_ratio", 3.0),)),
    ]
