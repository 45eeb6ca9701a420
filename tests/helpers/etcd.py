"""A throwaway single-member etcd (Debian's ``etcd-server``) for the overlay's store tests.

It listens on a random port with a temp data dir, on 127.0.0.1 of the machine (store-only tests) or on an
address inside a test namespace (data-path tests), and is stopped (its data removed) after.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
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
    """One etcd member; ``url`` is its client endpoint. Alone by default, or one of an :class:`EtcdCluster`.

    ``tls`` (a :class:`tests.helpers.tls.Certs`) serves https with client certificates required.
    """

    def __init__(self, ns: Optional[Netns] = None, host: str = "127.0.0.1", *, name: str = "cnt-x",
                 client_port: int = 0, peer_port: int = 0, initial_cluster: str = "",
                 tls: Any = None, data_dir: Optional[Path] = None) -> None:
        self.ns = ns
        self.host = host
        self.name = name
        self.client_port = client_port or free_port()
        self.peer_port = peer_port or free_port()
        self.initial_cluster = initial_cluster
        self.tls = tls
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix="cnt-x-etcd-"))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.proc: Optional[subprocess.Popen[bytes]] = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{self.host}:{self.peer_port}"

    def start(self, wait: bool = True) -> "EtcdServer":
        argv = [ETCD, "--name", self.name, "--data-dir", str(self.data_dir / "data"),
                "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
                "--listen-peer-urls", self.peer_url, "--initial-advertise-peer-urls", self.peer_url,
                "--initial-cluster", self.initial_cluster or f"{self.name}={self.peer_url}",
                "--initial-cluster-token", "cnt-x", "--log-level", "warn", "--logger", "zap"]
        if self.tls is not None:
            argv += ["--cert-file", str(self.tls.server_cert), "--key-file", str(self.tls.server_key),
                     "--client-cert-auth", "--trusted-ca-file", str(self.tls.ca)]
        if self.ns is not None:
            argv = self.ns.cmd(argv)
        log = open(self.data_dir / "etcd.log", "ab")
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        if wait:
            self.wait_ready()
        return self

    def _health_code(self) -> str:
        if self.tls is None:
            return f"import urllib.request; urllib.request.urlopen('{self.url}/health', timeout=1).read()"
        return ("import ssl, urllib.request; c = ssl.create_default_context(cafile=%r); c.load_cert_chain(%r, %r); "
                "urllib.request.urlopen('%s/health', timeout=1, context=c).read()"
                % (str(self.tls.ca), str(self.tls.client_cert), str(self.tls.client_key), self.url))

    def wait_ready(self) -> None:
        deadline = time.monotonic() + _START_DEADLINE
        argv = ["python3", "-c", self._health_code()]
        if self.ns is not None:
            argv = self.ns.cmd(argv)
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"etcd exited: {(self.data_dir / 'etcd.log').read_text()[-2000:]}")
            if subprocess.run(argv, capture_output=True).returncode == 0:
                return
            time.sleep(0.2)
        raise RuntimeError("etcd did not become ready")

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def kill(self) -> None:
        """SIGKILL (a crash): the data dir stays, :meth:`start` brings the member back."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self, keep_data: bool = False) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a frozen member cannot handle SIGTERM
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not keep_data:
            shutil.rmtree(self.data_dir, ignore_errors=True)


#: ``python3 -c`` body: POST argv[2] to argv[1] on the first of argv[3:] that answers; print the reply.
_GATEWAY_CALL = """
import sys, urllib.request
for url in sys.argv[3:]:
    try:
        req = urllib.request.Request(url + sys.argv[1], data=sys.argv[2].encode(),
                                     headers={"Content-Type": "application/json"})
        print(urllib.request.urlopen(req, timeout=5).read().decode())
        break
    except OSError as exc:
        err = exc
else:
    raise SystemExit(str(err))
"""


class EtcdCluster:
    """Three members in namespace ``ns`` on ``hosts`` (addresses inside that namespace, ports 2379/2380).

    On test addresses, so faults can be made inside test namespaces only: a member killed, frozen (SIGSTOP), or
    its client port dropped by a node's own iptables.
    """

    CLIENT_PORT = 2379

    def __init__(self, ns: Netns, hosts: list[str]) -> None:
        self.ns = ns
        self.base = Path(tempfile.mkdtemp(prefix="cnt-x-etcdc-"))
        initial = ",".join(f"m{i}=http://{h}:2380" for i, h in enumerate(hosts))
        self.members = [EtcdServer(ns, h, name=f"m{i}", client_port=self.CLIENT_PORT, peer_port=2380,
                                   initial_cluster=initial, data_dir=self.base / f"m{i}")
                        for i, h in enumerate(hosts)]

    @property
    def endpoints(self) -> list[str]:
        return [m.url for m in self.members]

    def start(self) -> "EtcdCluster":
        for m in self.members:
            m.start(wait=False)  # a member is ready only once a quorum is up
        for m in self.members:
            m.wait_ready()
        return self

    def call(self, path: str, body: dict[str, Any], member: int = -1) -> dict[str, Any]:
        """One gateway call from inside the namespace (the test process is outside it)."""
        urls = [self.members[member].url] if member >= 0 else [m.url for m in self.members if m.running()]
        out = self.ns.run(["python3", "-c", _GATEWAY_CALL, path, json.dumps(body), *urls])
        return json.loads(out.stdout)

    def leader(self) -> int:
        """Index of the member that leads now."""
        for i, m in enumerate(self.members):
            if not m.running():
                continue
            status = self.call("/v3/maintenance/status", {}, member=i)
            if status.get("leader") == status.get("header", {}).get("member_id"):
                return i
        raise RuntimeError("no leader")

    def revision(self) -> int:
        return int(self.call("/v3/kv/range", {"key": "AA=="})["header"]["revision"])

    def compact(self, revision: int) -> None:
        self.call("/v3/kv/compaction", {"revision": str(revision), "physical": True})

    def signal_all(self, sig: int) -> None:
        for m in self.members:
            m.signal(sig)

    def kill_all(self) -> None:
        for m in self.members:
            m.kill()

    def restart_stopped(self) -> None:
        down = [m for m in self.members if not m.running()]
        for m in down:
            m.start(wait=False)
        for m in down:
            m.wait_ready()

    #: The three ways etcd becomes unavailable in the fault tests and the scale bench.
    OUTAGES = ("killed", "frozen", "dropped")

    def begin_outage(self, kind: str, nodes: list[Netns]) -> None:
        """``killed``: every member SIGKILLed; ``frozen``: every member SIGSTOPped; ``dropped``: the client port
        dropped by each node's own iptables (inside the node namespaces only)."""
        if kind == "killed":
            self.kill_all()
        elif kind == "frozen":
            self.signal_all(signal.SIGSTOP)
        else:
            for ns in nodes:
                ns.run(["iptables", "-I", "OUTPUT", "-p", "tcp", "--dport", str(self.CLIENT_PORT), "-j", "DROP"])

    def end_outage(self, kind: str, nodes: list[Netns]) -> None:
        if kind == "killed":
            self.restart_stopped()
        elif kind == "frozen":
            self.signal_all(signal.SIGCONT)
        else:
            for ns in nodes:
                ns.run(["iptables", "-D", "OUTPUT", "-p", "tcp", "--dport", str(self.CLIENT_PORT), "-j", "DROP"])

    def stop(self) -> None:
        for m in self.members:
            m.stop(keep_data=True)
        shutil.rmtree(self.base, ignore_errors=True)


def store_conf(etcd: "EtcdServer | EtcdCluster", **extra: Any) -> dict[str, Any]:
    """The vxlan ``store`` key pointing at ``etcd`` (every member of a cluster)."""
    endpoints = etcd.endpoints if isinstance(etcd, EtcdCluster) else [etcd.url]
    return {"etcd": {"endpoints": endpoints, "prefix": "/cnt-x/vx", **extra}}
