"""Connectivity probes between test namespaces, and `ip -j` state readers.

Servers print a line once they listen, and the probe waits for that line, so
no test depends on sleeping. Every server answers with the peer address it
saw: portmap tests need that to tell DNAT-only from DNAT+SNAT (hairpin).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from typing import Any, Iterator

from tests.helpers.netns import Netns

_TCP_SERVER = r"""
import socket, sys
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(8)
print("ready", flush=True)
for _ in range(int(sys.argv[3])):
    c, peer = s.accept()
    c.recv(64); c.sendall(peer[0].encode()); c.close()
"""

_UDP_SERVER = r"""
import socket, sys
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
print("ready", flush=True)
for _ in range(int(sys.argv[3])):
    data, peer = s.recvfrom(64); s.sendto(peer[0].encode(), peer)
"""

_CLIENT = r"""
import socket, sys
proto, host, port, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
if proto == "tcp":
    s = socket.create_connection((host, port), timeout=timeout)
    s.sendall(b"hi"); print(s.recv(64).decode())
else:
    s = socket.socket(fam, socket.SOCK_DGRAM); s.settimeout(timeout)
    s.sendto(b"hi", (host, port)); print(s.recvfrom(64)[0].decode())
"""


def ping(ns: Netns, address: str, *, count: int = 1, wait: int = 1) -> bool:
    """True when `address` answers ICMP echo from inside `ns`.

    Uses busybox's ping: iputils-ping is not installed on these machines.
    """
    proc = ns.run(["busybox", "ping", "-c", str(count), "-W", str(wait), address], check=False,
                  timeout=count * wait + 10)
    return proc.returncode == 0


@contextlib.contextmanager
def serve(ns: Netns, proto: str, port: int, *, bind: str = "0.0.0.0", accepts: int = 1) -> Iterator[subprocess.Popen]:
    """Run a one-shot `proto` ("tcp"/"udp") echo-peer server in `ns` while inside the block.

    Yields once the socket is bound; the server answers `accepts` clients with
    the source address it saw, then exits. It is killed on leaving the block.
    """
    code = _TCP_SERVER if proto == "tcp" else _UDP_SERVER
    proc = ns.popen([sys.executable, "-c", code, bind, str(port), str(accepts)],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        if line.strip() != "ready":
            proc.kill()
            raise RuntimeError(f"{proto} server on {bind}:{port} in {ns.name} failed: {proc.communicate()[1]}")
        yield proc
    finally:
        proc.kill()
        proc.wait()


def connect(ns: Netns, proto: str, address: str, port: int, *, timeout: float = 3) -> str | None:
    """Connect from `ns` to a `serve()` server; returns the peer address it reported, None on failure."""
    proc = ns.run([sys.executable, "-c", _CLIENT, proto, address, str(port), str(timeout)], check=False,
                  timeout=timeout + 20)
    return proc.stdout.strip() if proc.returncode == 0 else None


def tcp_connect(ns: Netns, address: str, port: int, *, timeout: float = 3) -> str | None:
    """TCP round trip from `ns`; the server's view of our source address, or None."""
    return connect(ns, "tcp", address, port, timeout=timeout)


def udp_connect(ns: Netns, address: str, port: int, *, timeout: float = 3) -> str | None:
    """UDP round trip from `ns`; the server's view of our source address, or None."""
    return connect(ns, "udp", address, port, timeout=timeout)


def _ip_json(ns: Netns, *args: str) -> Any:
    out = ns.ip("-j", *args).stdout
    return json.loads(out) if out.strip() else []


def links(ns: Netns) -> list[dict[str, Any]]:
    """`ip -j -d link show` in `ns` (details included: kind, master, vxlan id...)."""
    return _ip_json(ns, "-d", "link", "show")


def link(ns: Netns, ifname: str) -> dict[str, Any] | None:
    """One link of `ns` by name, or None when it doesn't exist."""
    return next((lk for lk in links(ns) if lk.get("ifname") == ifname), None)


def addrs(ns: Netns, ifname: str | None = None) -> list[dict[str, Any]]:
    """`ip -j addr show [dev ifname]` in `ns`."""
    return _ip_json(ns, "addr", "show", *(("dev", ifname) if ifname else ()))


def ip_addresses(ns: Netns, ifname: str, *, scope: str = "global") -> list[str]:
    """`addr/prefix` strings on `ifname` in `ns` with that scope (link-local v6 dropped by default)."""
    return [f"{a['local']}/{a['prefixlen']}" for dev in addrs(ns, ifname) for a in dev.get("addr_info", [])
            if a.get("scope") == scope]


def routes(ns: Netns, *, family: int = 4, table: str = "main") -> list[dict[str, Any]]:
    """`ip -j -<family> route show table <table>` in `ns`."""
    return _ip_json(ns, f"-{family}", "route", "show", "table", table)
