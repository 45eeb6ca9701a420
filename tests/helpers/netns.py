"""Throwaway network namespaces for tests (names `cnt-<tag><run>-<role><n>`, tag `h` unless a suite has its own).

Every kernel change a test makes happens inside namespaces made here: a "host"
namespace stands in for the machine (bridges, iptables) and "container"
namespaces hold the pod side. The root namespace is never touched.

Commands run through `ip netns exec`, not bare `nsenter --net`, because it also
remounts /sys for the namespace: a plugin that reads /sys/class/net then sees
the same links as its netlink socket does. (containerd is the exception: see
tests/containerd, it needs `nsenter` to keep the cgroup mounts.)
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import pytest

from tests.helpers.skip import skip_or_fail

NETNS_DIR = Path("/run/netns")
#: Prefix shared by every namespace the test suite creates (ownership marker).
TEST_PREFIX = "cnt-"


@dataclass(frozen=True)
class Netns:
    """A named network namespace under /run/netns."""

    name: str

    @property
    def path(self) -> str:
        """The bind-mount path, what CNI_NETNS expects."""
        return str(NETNS_DIR / self.name)

    def cmd(self, argv: Sequence[str]) -> list[str]:
        """`argv` prefixed so that it runs inside this namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, argv: Sequence[str], *, check: bool = True, timeout: float = 30,
            env: dict[str, str] | None = None, input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run `argv` inside the namespace and capture text output."""
        return subprocess.run(self.cmd(argv), check=check, timeout=timeout, env=env, capture_output=True,
                              text=True, input=input)

    def popen(self, argv: Sequence[str], **kwargs) -> subprocess.Popen:
        """Start `argv` inside the namespace in the background (caller waits/kills)."""
        return subprocess.Popen(self.cmd(argv), **kwargs)

    def ip(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """`ip -n NAME args...`, cheaper than a full `ip netns exec`."""
        return subprocess.run(["ip", "-n", self.name, *args], check=check, capture_output=True, text=True,
                              timeout=30)

    def pids(self) -> list[int]:
        """PIDs of processes living in this namespace (all started by tests)."""
        out = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]


@dataclass
class NetnsPool:
    """Creates namespaces with a per-run prefix and removes them all at the end.

    The random run id keeps parallel test runs (and other engineers' namespaces)
    apart: `cleanup_leftovers()` only deletes names carrying this run's prefix.
    `tag` marks a suite's namespaces (`l`: tests/netns' own pools, `e`: e2e_bridge...).
    """

    run_id: str = field(default_factory=lambda: secrets.token_hex(3))
    created: list[Netns] = field(default_factory=list)
    _counter: int = 0
    tag: str = "h"

    @property
    def prefix(self) -> str:
        return f"{TEST_PREFIX}{self.tag}{self.run_id}-"

    def create(self, role: str, *, lo_up: bool = False, numbered: bool = True) -> Netns:
        """Create `cnt-h<run>-<role><n>` (`cnt-h<run>-<role>` when not `numbered`: the caller's role is already
        unique, as the demo's `ctr1`); with `lo_up`, bring its loopback up."""
        self._counter += 1
        ns = Netns(f"{self.prefix}{role}{self._counter if numbered else ''}")
        subprocess.run(["ip", "netns", "add", ns.name], check=True, capture_output=True, text=True)
        self.created.append(ns)
        if lo_up:
            ns.ip("link", "set", "lo", "up")
        return ns

    def attach(self, role: str, pid: int) -> Netns:
        """Name the netns of process `pid` (`ip netns attach`), e.g. a CRI pod's.

        Gives a runtime-made namespace a /run/netns name so the helpers work on
        it; removing it later only drops the name, not the namespace.
        """
        self._counter += 1
        ns = Netns(f"{self.prefix}{role}{self._counter}")
        subprocess.run(["ip", "netns", "attach", ns.name, str(pid)], check=True, capture_output=True, text=True)
        self.created.append(ns)
        return ns

    def forget(self, ns: Netns) -> None:
        """Drop the name of a namespace made by :meth:`attach` and nothing else: its processes belong to their
        runtime (killing a CRI pod's sandbox here races containerd's shim at the next StopPodSandbox: "ttrpc:
        closed")."""
        subprocess.run(["ip", "netns", "del", ns.name], capture_output=True)
        if ns in self.created:
            self.created.remove(ns)

    def remove(self, ns: Netns) -> None:
        """Kill what still runs inside `ns`, then delete it; tolerant of a missing one."""
        for pid in ns.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        subprocess.run(["ip", "netns", "del", ns.name], capture_output=True)
        if ns in self.created:
            self.created.remove(ns)

    def cleanup(self) -> None:
        """Remove every namespace this pool made, newest first."""
        for ns in reversed(list(self.created)):
            self.remove(ns)

    def cleanup_leftovers(self) -> list[str]:
        """Safety net: delete any namespace named with this run's prefix; returns their names."""
        names = [n.name for n in list_netns() if n.name.startswith(self.prefix)]
        for name in names:
            self.remove(Netns(name))
        return names


def serve_pool(pool: NetnsPool, *, strict: bool = True, leftovers: bool = False) -> Iterator[NetnsPool]:
    """The body of a pool fixture (`yield from serve_pool(...)`): skip when namespaces are unavailable (with
    `strict`, fail instead under CI=true), yield `pool`, then remove what it made (and, with `leftovers`,
    anything else named with its prefix)."""
    reason = netns_unavailable_reason()
    if reason:
        if strict:
            skip_or_fail(reason)
        pytest.skip(reason)
    yield pool
    pool.cleanup()
    if leftovers:
        pool.cleanup_leftovers()


def list_netns() -> list[Netns]:
    """Named namespaces on the machine (`ip netns list`)."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [Netns(line.split()[0]) for line in out.splitlines() if line.strip()]


def netns_unavailable_reason() -> str | None:
    """Why namespace tests cannot run here, or None when they can.

    Probes by really creating and deleting one namespace, since being root is
    not enough inside some containers (no CAP_SYS_ADMIN, read-only /run).
    """
    if os.geteuid() != 0:
        return "network namespace tests need root"
    probe = f"{TEST_PREFIX}hprobe-{secrets.token_hex(3)}"
    try:
        res = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    except FileNotFoundError:
        return "iproute2 (`ip`) is not installed"
    if res.returncode != 0:
        return f"cannot create a network namespace: {res.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None
