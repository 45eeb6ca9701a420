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
from typing import Mapping, Optional, Sequence

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


class TimedNetns:
    """A Netns stand-in whose `run()` also records the Usage of each command, per thread.

    Hand it to `Cnitool(...)` as the host; `extra_env` reaches the plugins, since libcni passes its environment
    on to them. After a call, `last_usage()` is that call's Usage (thread-local,
    so a burst of threads sharing one TimedNetns each read their own).
    """

    def __init__(self, ns: Netns, extra_env: Optional[Mapping[str, str]] = None) -> None:
        self.ns = ns
        self.name = ns.name
        self.extra_env = dict(extra_env or {})
        self._local = threading.local()

    @property
    def path(self) -> str:
        return self.ns.path

    def cmd(self, argv: Sequence[str]) -> list[str]:
        return self.ns.cmd(argv)

    def run(self, argv: Sequence[str], *, check: bool = True, timeout: float = 30,
            env: Optional[dict[str, str]] = None, input: Optional[str] = None) -> subprocess.CompletedProcess[str]:
        """Same contract as `Netns.run`, measured; `extra_env` is added to `env` (libcni passes it on)."""
        if env is not None:
            env = {**env, **self.extra_env}
        proc, usage = run_measured(self.ns.cmd(argv), env=env, stdin=(input or "").encode(), timeout=timeout)
        self._local.usage = usage
        if check and proc.returncode != 0:
            raise subprocess.CalledProcessError(proc.returncode, proc.args, proc.stdout, proc.stderr)
        return proc

    def last_usage(self) -> Usage:
        """Usage of this thread's latest `run()`."""
        return self._local.usage
