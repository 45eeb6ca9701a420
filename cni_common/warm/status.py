"""The warm processes of a launcher cache, as ``inspect`` shows them: each answers a status query on its socket.

A status query is a connection to the warm process's ``w<context>.stat`` socket; the warm process writes one JSON
line (pid, build, context, start time, idle exit, calls served and refused, calls in flight, CPU, peak RSS of a
call) and closes it, without a fork.
"""

from __future__ import annotations

import json
import os
import socket
import time

#: The launcher's cache for root (``launcher.c``: ``DEFAULT_CACHE``); ``CNI_SUITE_CACHE_DIR`` overrides it.
DEFAULT_SUITE_CACHE = "/var/cache/cni-suite"
QUERY_TIMEOUT = 2.0


def suite_cache() -> str:
    return os.environ.get("CNI_SUITE_CACHE_DIR") or DEFAULT_SUITE_CACHE


def query(build_dir: str, socket_name: str) -> dict[str, object]:
    """The status of the warm process whose status socket is ``build_dir/socket_name``."""
    dir_fd = os.open(build_dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(QUERY_TIMEOUT)
            conn.connect(f"/proc/self/fd/{dir_fd}/{socket_name}")  # any cache path length fits sun_path
            data = b""
            while b"\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
    finally:
        os.close(dir_fd)
    answer = json.loads(data.split(b"\n", 1)[0])
    return answer if isinstance(answer, dict) else {}


def warm_processes(cache_dir: str | None = None, settle: float = 0.0) -> list[dict[str, object]]:
    """Every warm process of every build in the cache (a socket nobody answers on: ``state`` says so).

    ``settle``: wait up to that many seconds for no call in flight. A launcher returns as soon as its child
    reports its exit code, before the warm process reaps that child (:func:`cni_common.warm.child.report_exit`),
    so the counters of a call (``calls``, ``cpu_seconds``) appear a fraction of a millisecond after it returned:
    whoever reads them right after a call settles."""
    deadline = time.monotonic() + settle
    while True:
        found = _query_all(cache_dir or suite_cache())
        if not any(w.get("in_flight") for w in found) or time.monotonic() >= deadline:
            return found
        time.sleep(0.001)


def _query_all(cache: str) -> list[dict[str, object]]:
    found: list[dict[str, object]] = []
    try:
        builds = sorted(name for name in os.listdir(cache) if len(name) == 64)
    except OSError:
        return found
    for build in builds:
        folder = os.path.join(cache, build, "warm")
        try:
            sockets = sorted(name for name in os.listdir(folder) if name.startswith("w") and name.endswith(".stat"))
        except OSError:
            continue
        for name in sockets:
            try:
                found.append({"state": "running", **query(folder, name)})
            except (OSError, ValueError):
                found.append({"state": "not answering", "build": build, "context": name[1:-5]})
    return found
