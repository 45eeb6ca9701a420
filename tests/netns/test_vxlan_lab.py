"""Helpers for the vxlan and etcd tests (no tests here): a throwaway etcd server and a simulated cluster.

To be moved to tests/helpers/ (and the fixtures to tests/netns/conftest.py) by their owner; kept here because
this engineer owns only test_vxlan*/test_etcd*. Test modules import the fixtures ``lab`` and ``etcd`` by name.

- :class:`EtcdServer` runs Debian's ``etcd`` with a temp data dir on a random port, on 127.0.0.1 of the
  machine (store-only tests) or on an address inside a test namespace (data-path tests), and stops it after.
- :class:`Lab` builds nodes: each is a namespace joined to an "underlay" bridge living in another namespace.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import pytest

from tests.helpers.cnitool import Cnitool
from tests.helpers.netns import Netns, NetnsPool

REPO = str(Path(__file__).resolve().parents[2])
PYTHON = str(Path(REPO) / ".venv" / "bin" / "python")
ETCD = shutil.which("etcd") or "/usr/bin/etcd"
NETWORK = "10.244.0.0/16"
NET_NAME = "cntxvx"
_PATIENCE = 60.0
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


@dataclass
class Node:
    """A simulated machine: its namespace and its address on the underlay."""

    ns: Netns
    underlay_ip: str
    name: str
    containers: list[Netns] = field(default_factory=list)


@dataclass
class Lab:
    """An underlay bridge in its own namespace, and nodes plugged into it with veths."""

    pool: NetnsPool
    prefix: str = "10.123.0"
    mtu: int = 1500
    ipv6: bool = False
    underlay: Optional[Netns] = None
    nodes: list[Node] = field(default_factory=list)

    def up(self) -> "Lab":
        self.underlay = self.pool.create("xul", lo_up=True)
        self.underlay.ip("link", "add", "cntxbr", "mtu", str(self.mtu), "type", "bridge")
        self.underlay.ip("link", "set", "cntxbr", "up")
        return self

    def address(self, n: int) -> str:
        return f"fd00:7b::{n}" if self.ipv6 else f"{self.prefix}.{n}"

    @property
    def plen(self) -> int:
        return 64 if self.ipv6 else 24

    def bridge_address(self, n: int = 254) -> str:
        """An address on the underlay bridge itself (where etcd listens)."""
        assert self.underlay is not None
        addr = self.address(n)
        self.underlay.ip("addr", "add", f"{addr}/{self.plen}", "dev", "cntxbr", "nodad")
        return addr

    def add_node(self, n: int) -> Node:
        assert self.underlay is not None
        ns = self.pool.create(f"xn{n}-", lo_up=True)
        outside, inside = f"cntxu{n}", "cntxeth0"
        self.underlay.ip("link", "add", outside, "mtu", str(self.mtu), "type", "veth", "peer", "name", inside,
                         "mtu", str(self.mtu), "netns", ns.name)
        self.underlay.ip("link", "set", outside, "master", "cntxbr", "up")
        ns.ip("addr", "add", f"{self.address(n)}/{self.plen}", "dev", inside, "nodad")
        ns.ip("link", "set", inside, "up")
        node = Node(ns=ns, underlay_ip=self.address(n), name=f"node{n}")
        self.nodes.append(node)
        return node

    def remove_node(self, node: Node) -> None:
        for c in node.containers:
            self.pool.remove(c)
        self.pool.remove(node.ns)
        self.nodes.remove(node)

    def down(self) -> None:
        for node in list(self.nodes):
            self.remove_node(node)
        if self.underlay is not None:
            self.pool.remove(self.underlay)


def _wrapper(dest: Path, plugin_type: str) -> None:
    """``dest/<type>``: runs the multi-call entry point from the source tree under that name."""
    wrapper = dest / plugin_type
    wrapper.write_text("#!/bin/sh\n"
                       f"PYTHONPATH={REPO} exec {PYTHON} -c 'import sys; sys.argv[0] = \"{plugin_type}\"; "
                       "from cni_common.multicall import main; sys.exit(main())' \"$@\"\n")
    wrapper.chmod(0o755)


def source_bin_dir(dest: Path, python_ipam: bool = False, also: tuple[str, ...] = ()) -> Path:
    """A CNI_PATH with ``vxlan`` running from the source tree, and Go's ``host-local`` (or ours).

    The data-path tests do not need ./build.sh: a two-line wrapper execs the multi-call entry point as
    ``vxlan``. The IPAM defaults to Go's host-local (v1.1.1, configs up to 1.0.0) so these tests depend on
    nobody else's work in progress; ``python_ipam`` takes ours instead (needed for cniVersion 1.1.0).
    ``also`` adds more of our types (e.g. ``("bridge",)``).
    """
    dest.mkdir(parents=True, exist_ok=True)
    for plugin_type in ("vxlan", *also):
        _wrapper(dest, plugin_type)
    if python_ipam:
        _wrapper(dest, "host-local")
    elif not (dest / "host-local").exists():
        (dest / "host-local").symlink_to("/usr/lib/cni/host-local")
    return dest


def eventually(cond: Callable[[], bool], patience: float = _PATIENCE) -> bool:
    """Poll ``cond`` until it holds (True) or ``patience`` runs out (its last value): a bound, not a timing."""
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.3)
    return cond()


def store_conf(etcd: EtcdServer, **extra: Any) -> dict[str, Any]:
    """The ``store`` key pointing at ``etcd``."""
    return {"etcd": {"endpoints": [etcd.url], "prefix": "/cnt-x/vx", **extra}}


class Cluster:
    """Nodes of one lab, each with its own libcni driver, conflist and IPAM data dir."""

    def __init__(self, lab: Lab, cnitool_bin: Path, bin_dir: Path, tmp: Path, pool: NetnsPool) -> None:
        self.lab, self.cnitool_bin, self.bin_dir, self.tmp, self.pool = lab, cnitool_bin, bin_dir, tmp, pool
        self.tools: dict[str, Cnitool] = {}
        self.results: dict[str, dict[str, Any]] = {}  # container netns name -> ADD result

    def plugin_conf(self, node: Node, **extra: Any) -> dict[str, Any]:
        conf = {"type": "vxlan", "network": NETWORK, "nodeName": node.name,
                "ipam": {"type": "host-local", "dataDir": str(self.tmp / "ipam" / node.name)}}
        conf.update(extra)
        return conf

    def conflist(self, node: Node, **extra: Any) -> dict[str, Any]:
        return {"cniVersion": "1.0.0", "name": NET_NAME, "plugins": [self.plugin_conf(node, **extra)]}

    def configure(self, node: Node, **extra: Any) -> Cnitool:
        tool = Cnitool(self.cnitool_bin, node.ns, self.tmp / f"cnitool-{node.name}", self.bin_dir)
        tool.write_conflist(self.conflist(node, **extra))
        self.tools[node.name] = tool
        return tool

    def add_container(self, node: Node) -> Netns:
        ctr = self.pool.create(f"xc{node.name[-1]}-", lo_up=True)
        node.containers.append(ctr)
        res = self.tools[node.name].add(NET_NAME, ctr)
        assert res.rc == 0, (res.out, res.stderr)
        self.results[ctr.name] = res.out
        return ctr

    def ip_of(self, ctr: Netns) -> str:
        return self.results[ctr.name]["ips"][0]["address"].split("/")[0]

    def all_containers(self) -> list[Netns]:
        return [c for n in self.lab.nodes for c in n.containers]


@pytest.fixture
def lab(netns_pool: NetnsPool) -> Iterator[Lab]:
    """An empty underlay; add nodes with ``lab.add_node(n)``."""
    lab = Lab(netns_pool).up()
    yield lab
    lab.down()


@pytest.fixture
def etcd(lab: Lab) -> Iterator[EtcdServer]:
    """etcd listening on the underlay bridge (``.254``), reachable from every node."""
    server = EtcdServer(ns=lab.underlay, host=lab.bridge_address(254)).start()
    yield server
    server.stop()


@pytest.fixture
def cluster(lab: Lab, cnitool_bin: Path, tmp_path: Path, netns_pool: NetnsPool) -> Cluster:
    """Per-node libcni drivers over ``lab``, plugins from the source tree (``tmp_path/bin``)."""
    return Cluster(lab, cnitool_bin, source_bin_dir(tmp_path / "bin"), tmp_path, netns_pool)
