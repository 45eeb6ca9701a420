"""A DHCP network made of test namespaces: a "host" netns with a bridge, dnsmasq in a "server" netns on it, and
containers whose ``eth0`` is a veth port of the same bridge. DHCP traffic never leaves these namespaces.

The dhcp plugin and ``dhcp daemon`` run from the source tree (``python -m plugins``); the daemon's socket, lease
directory and log live in the test's ``tmp_path``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.helpers.netns import Netns, NetnsPool

REPO = Path(__file__).resolve().parents[2]
SUBNET = "10.79.0"
SERVER_IP = f"{SUBNET}.1"
NETWORK = "dhnet"


def plugin_env(command: str, container: str, netns: str, ifname: str = "eth0", args: str = "") -> dict[str, str]:
    return {**os.environ, "CNI_COMMAND": command, "CNI_CONTAINERID": container, "CNI_NETNS": netns,
            "CNI_IFNAME": ifname, "CNI_PATH": "/nonexistent", "CNI_ARGS": args, "PYTHONPATH": str(REPO)}


@dataclass
class DhcpLab:
    pool: NetnsPool
    workdir: Path
    host: Netns | None = None
    server: Netns | None = None
    dnsmasq: subprocess.Popen | None = None
    daemon: subprocess.Popen | None = None
    containers: list[Netns] = field(default_factory=list)

    @property
    def socket_path(self) -> str:
        return str(self.workdir / "dhcp.sock")

    @property
    def lease_dir(self) -> Path:
        return self.workdir / "leases.d"

    @property
    def dnsmasq_leases(self) -> Path:
        return self.workdir / "dnsmasq.leases"

    def up(self, *, t1: int | None = None, options: tuple[str, ...] = ()) -> "DhcpLab":
        """Start the network and dnsmasq; ``options``: more of its ``--dhcp-option=`` values."""
        self.host = self.pool.create("dhhost")
        self.server = self.pool.create("dhsrv", lo_up=True)
        self.host.ip("link", "add", "cntbr0", "type", "bridge")
        self.host.ip("link", "set", "cntbr0", "up")
        self.host.ip("link", "add", "cntsrv0", "type", "veth", "peer", "name", "eth0", "netns", self.server.name)
        self.host.ip("link", "set", "cntsrv0", "master", "cntbr0", "up")
        self.server.ip("addr", "add", f"{SERVER_IP}/24", "dev", "eth0")
        self.server.ip("link", "set", "eth0", "up")
        extra = [f"--dhcp-option=58,{t1}", f"--dhcp-option=59,{t1 * 2}"] if t1 else []
        extra += [f"--dhcp-option={option}" for option in options]
        self.dnsmasq = self.server.popen(
            ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--port=0",
             "--no-ping", "--interface=eth0", "--bind-interfaces", f"--dhcp-range={SUBNET}.10,{SUBNET}.60,2m",
             f"--dhcp-option=3,{SERVER_IP}", f"--dhcp-option=6,{SERVER_IP}", *extra,
             f"--dhcp-leasefile={self.dnsmasq_leases}", "--log-dhcp", f"--log-facility={self.workdir / 'dnsmasq.log'}",
             f"--pid-file={self.workdir / 'dnsmasq.pid'}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return self

    def container(self) -> Netns:
        assert self.host is not None
        ctr = self.pool.create("dhctr", lo_up=True)
        port = f"cntc{len(self.containers)}"
        self.host.ip("link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ctr.name)
        self.host.ip("link", "set", port, "master", "cntbr0", "up")
        self.containers.append(ctr)
        return ctr

    def start_daemon(self, *flags: str) -> subprocess.Popen:
        with open(self.workdir / "daemon.log", "ab") as log:
            self.daemon = subprocess.Popen(
                [sys.executable, "-m", "plugins", "dhcp", "daemon", "-socketpath", self.socket_path, "-leasedir",
                 str(self.lease_dir), "-resendtimeout", "20s", *flags],
                cwd=REPO, stdout=log, stderr=log, env={**os.environ, "PYTHONPATH": str(REPO)})
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not self._accepts():
            assert self.daemon.poll() is None, self.daemon_log()
            time.sleep(0.05)
        return self.daemon

    def _accepts(self) -> bool:
        """A daemon listens on the socket (a stale file left by a killed one refuses)."""
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(self.socket_path)
        except OSError:
            return False
        finally:
            probe.close()
        return True

    def stop_daemon(self, sig: int = signal.SIGTERM) -> None:
        if self.daemon is not None and self.daemon.poll() is None:
            self.daemon.send_signal(sig)
            self.daemon.wait(10)
        self.daemon = None

    def daemon_log(self) -> str:
        path = self.workdir / "daemon.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def dnsmasq_log(self) -> str:
        path = self.workdir / "dnsmasq.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def conf(self, **ipam: Any) -> dict[str, Any]:
        return {"cniVersion": "1.0.0", "name": NETWORK, "type": "macvlan",
                "ipam": {"type": "dhcp", "daemonSocketPath": self.socket_path, **ipam}}

    def call(self, command: str, ctr: Netns, conf: dict[str, Any] | None = None, container_id: str = "",
             plugin: list[str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        argv = plugin or [sys.executable, "-m", "plugins", "dhcp"]
        return subprocess.run(argv, input=json.dumps(conf or self.conf()), capture_output=True, text=True,
                              cwd=REPO, timeout=timeout, env=plugin_env(command, container_id or ctr.name, ctr.path))

    def leased(self) -> dict[str, str]:
        """dnsmasq's current leases: IP -> client-ID (its lease file, one line per lease)."""
        if not self.dnsmasq_leases.exists():
            return {}
        out = {}
        for line in self.dnsmasq_leases.read_text().splitlines():
            fields = line.split()
            if len(fields) >= 5:
                out[fields[2]] = fields[4]
        return out

    def down(self) -> None:
        self.stop_daemon(signal.SIGKILL)
        if self.dnsmasq is not None and self.dnsmasq.poll() is None:
            self.dnsmasq.terminate()
            self.dnsmasq.wait(10)
