"""The warm path in the test run: the switch passed on to the plugins, and the warm processes the tests started.

The helpers give plugins a minimal environment (PATH and the CNI variables), so ``CNI_SUITE_WARM=on|off|auto``
set on the test run would not reach the launcher; :func:`passthrough` adds it, so the same test files run the
plugins with the warm path forced on and forced off (docs/packaging.md, "The warm path").

With the build's default (``auto``), a plugin called straight from the test process, which is a settled parent
in its callee's namespaces like a runtime, starts a warm process that outlives the test by its idle time (or
until its cache is removed): :func:`stop_warm_processes` ends those, so tests leave nothing behind.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

SWITCHES = ("CNI_SUITE_WARM", "CNI_SUITE_WARM_IDLE")


def passthrough() -> dict[str, str]:
    """The warm-path variables of this test run, to add to a plugin's environment."""
    return {name: os.environ[name] for name in SWITCHES if os.environ.get(name)}


def dist_build() -> str:
    """The build hash of dist/'s files (their folder's name in a launcher cache), '' when there is no build."""
    from cni_common.bundle.trailer import build_hash
    from tests.helpers.paths import DIST_DIR

    return build_hash(str(DIST_DIR / "host-local"))


def _start_ticks(pid: str) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])


def warm_processes(under: str = "", started_after: int = 0) -> list[int]:
    """Pids of the warm processes (``cni-suite warm-server``) whose command line names ``under`` (a cache
    folder) and that started after ``started_after`` (clock ticks since boot, as /proc/PID/stat says)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if b"warm-server" not in args or (under and not any(under.encode() in a for a in args)):
                continue
            if _start_ticks(pid) >= started_after:
                found.append(int(pid))
        except (OSError, IndexError, ValueError):
            continue
    return found


def own_start_ticks() -> int:
    """When this process started, in the clock ticks of /proc/PID/stat: every warm process this test run's
    plugins started, started later."""
    return _start_ticks("self")


def stop_warm_processes(under: str = "", started_after: int = 0) -> list[int]:
    """Kill (continuing a stopped one first) the warm processes :func:`warm_processes` finds; their pids."""
    pids = warm_processes(under, started_after)
    for pid in pids:
        for signum in (signal.SIGCONT, signal.SIGKILL):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                break
    return pids
