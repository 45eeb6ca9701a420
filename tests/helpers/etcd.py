"""A throwaway single-member etcd (Debian's ``etcd-server``) for the overlay's store tests.

It listens on a random port with a temp data dir, on 127.0.0.1 of the machine (store-only tests) or on an
address inside a test namespace (data-path tests), and is stopped (its data removed) after.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Optional

from tests.helpers.netns import Netns

ETCD = shutil.which("etcd") or "/usr/bin/etcd"
_START_DEADLINE = 30.0  # a safety net for a hung start, not a timed assertion


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EtcdServer:
    """One single-member etcd; ``url`` is its client endpoint."""

    def __init__(self, ns: Optional[Netns] = None, host: str = "127.0.0.1") -> None:
        self.ns = ns
        self.host = host
        self.client_port = free_port()
        self.peer_port = free_port()
        self.data_dir = Path(tempfile.mkdtemp(prefix="cnt-x-etcd-"))
        self.proc: Optional[subprocess.Popen[bytes]] = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.client_port}"

    def start(self) -> "EtcdServer":
        peer = f"http://{self.host}:{self.peer_port}"
        argv = [ETCD, "--name", "cnt-x", "--data-dir", str(self.data_dir / "data"),
                "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"cnt-x={peer}", "--log-level", "warn", "--logger", "zap"]
        if self.ns is not None:
            argv = self.ns.cmd(argv)
        log = open(self.data_dir / "etcd.log", "wb")
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        self._wait_ready()
        return self

    def _health_cmd(self) -> list[str]:
        code = f"import urllib.request; urllib.request.urlopen('{self.url}/health', timeout=1).read()"
        argv = ["python3", "-c", code]
        return self.ns.cmd(argv) if self.ns is not None else argv

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + _START_DEADLINE
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"etcd exited: {(self.data_dir / 'etcd.log').read_text()[-2000:]}")
            if self.ns is None:
                try:
                    urllib.request.urlopen(f"{self.url}/health", timeout=1).read()
                    return
                except OSError:
                    pass
            elif subprocess.run(self._health_cmd(), capture_output=True).returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError("etcd did not become ready")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.data_dir, ignore_errors=True)


def store_conf(etcd: EtcdServer, **extra: Any) -> dict[str, Any]:
    """The vxlan ``store`` key pointing at ``etcd``."""
    return {"etcd": {"endpoints": [etcd.url], "prefix": "/cnt-x/vx", **extra}}
