"""Run a command and measure it: wall time, and CPU time (user + sys) of it and every descendant it waited for.

CPU comes from `os.wait4`, whose rusage of a reaped child includes the children it reaped itself (cnitool ->
plugin -> iptables...), so one number covers a whole chain call. `TimedNetns` lends this to the harness's
`Cnitool`, which only needs a `run()` like `Netns.run`, so the bench drives libcni exactly as the tests do.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
import time
from contextlib import contextmanager
from typing import Iterator, Mapping, Optional, Sequence

from bench.stats import Usage
from tests.helpers.netns import Netns


def run_measured(argv: Sequence[str], *, env: Optional[Mapping[str, str]] = None, stdin: bytes = b"",
                 timeout: float = 120) -> tuple[subprocess.CompletedProcess[str], Usage]:
    """Run `argv` to completion (killed after `timeout` s); its text output and its Usage.

    Output goes to temp files rather than pipes so that no reader thread runs during the measurement.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(list(argv), stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                stdout=out, stderr=err, env=dict(env) if env is not None else None)
        if stdin and proc.stdin:
            try:
                proc.stdin.write(stdin)
                proc.stdin.close()
            except BrokenPipeError:  # it answered without reading stdin (VERSION may), as subprocess allows
                pass
        killer = threading.Timer(timeout, proc.kill)
        killer.start()
        try:
            _, status, rusage = os.wait4(proc.pid, 0)
        finally:
            killer.cancel()
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        completed = subprocess.CompletedProcess(list(argv), proc.returncode, out.read().decode(errors="replace"),
                                                err.read().decode(errors="replace"))
    return completed, Usage(wall, rusage.ru_utime + rusage.ru_stime)


class WarmCpu:
    """CPU of our calls served by warm processes (docs/packaging.md, "The warm path"): their children are not
    the launcher's, so `os.wait4` does not see them. The warm processes add up their children's rusage (and
    report their own time) in their status; the difference of `total()` around a call is what it cost there (a
    burst takes it around the whole phase: the differences of concurrent calls would overlap).

    Reading it between two calls of one pod delays the second: `total()` waits until the first call's child is
    reaped, a few milliseconds after its launcher returned, and a veth deleted that much later costs the
    kernel several milliseconds more (bench/README.md, "The pair's DEL and the bench's own gap"). Walls are
    therefore taken from calls run back to back (`TimedNetns.back_to_back`)."""

    def __init__(self, cache: str) -> None:
        self.cache = cache

    def total(self) -> float:
        from cni_common.warm.status import warm_processes

        settled = warm_processes(self.cache, settle=1.0)  # a call's child is reaped just after its launcher returns
        return sum(float(w.get("cpu_seconds", 0.0)) for w in settled)  # type: ignore[arg-type]


class TimedNetns:
    """A Netns stand-in whose `run()` also records the Usage of each command, per thread.

    Hand it to `Cnitool(...)` as the host; `extra_env` reaches the plugins, since libcni passes its environment
    on to them. After a call, `last_usage()` is that call's Usage (thread-local,
    so a burst of threads sharing one TimedNetns each read their own).
    """

    def __init__(self, ns: Netns, extra_env: Optional[Mapping[str, str]] = None, nsenter: bool = False,
                 warm: Optional[WarmCpu] = None) -> None:
        self.ns = ns
        self.name = ns.name
        self.extra_env = dict(extra_env or {})
        self.nsenter, self.warm = nsenter, warm
        self._local = threading.local()

    @property
    def path(self) -> str:
        return self.ns.path

    def cmd(self, argv: Sequence[str]) -> list[str]:
        """`ip netns exec` (a mount namespace per call), or with `nsenter` only the network namespace, as a runtime
        calls its plugins: from one context, which the warm path needs."""
        return ["nsenter", f"--net={self.ns.path}", *argv] if self.nsenter else self.ns.cmd(argv)

    def run(self, argv: Sequence[str], *, check: bool = True, timeout: float = 30,
            env: Optional[dict[str, str]] = None, input: Optional[str] = None) -> subprocess.CompletedProcess[str]:
        """Same contract as `Netns.run`, measured; `extra_env` is added to `env` (libcni passes it on)."""
        if env is not None:
            env = {**env, **self.extra_env}
        warm = None if getattr(self._local, "back_to_back", False) else self.warm
        before = warm.total() if warm else 0.0
        proc, usage = run_measured(self.cmd(argv), env=env, stdin=(input or "").encode(), timeout=timeout)
        if warm:
            usage = Usage(usage.wall, usage.cpu + max(0.0, warm.total() - before))
        self._local.usage = usage
        if check and proc.returncode != 0:
            raise subprocess.CalledProcessError(proc.returncode, proc.args, proc.stdout, proc.stderr)
        return proc

    def last_usage(self) -> Usage:
        """Usage of this thread's latest `run()`."""
        return self._local.usage

    @contextmanager
    def back_to_back(self) -> Iterator[list[float]]:
        """This thread's calls inside run one right after the other, as a runtime runs them: the warm processes'
        CPU is read once before and once after them all, not between them (`WarmCpu`). Their usages carry only
        their launchers' CPU; the list yielded holds, once the block is left, what the warm processes spent
        meanwhile (0.0 without a warm meter)."""
        spent: list[float] = []
        before = self.warm.total() if self.warm else 0.0
        self._local.back_to_back = True
        try:
            yield spent
        finally:
            self._local.back_to_back = False
        spent.append(max(0.0, self.warm.total() - before) if self.warm else 0.0)
