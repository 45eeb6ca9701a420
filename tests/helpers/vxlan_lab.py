"""A simulated vxlan cluster for the overlay tests: nodes are namespaces joined to an "underlay" bridge that
lives in another namespace, each with its own libcni driver, conflist and IPAM data dir.

The fixtures over it (``lab``, ``etcd``, ``cluster``) are in tests/netns/conftest.py.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from tests.helpers import paths
from tests.helpers.cnitool import Cnitool
from tests.helpers.netns import Netns, NetnsPool
from tests.helpers.skip import require_dist

PYTHON = str(paths.REPO / ".venv" / "bin" / "python")
NETWORK = "10.244.0.0/16"
NET_NAME = "cntxvx"
_PATIENCE = 60.0


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
        """Remove the node's namespaces; return once its underlay veth is gone too. The kernel destroys a deleted
        namespace in the background, and the veth's underlay end with it, so a node added again at once under
        the same number found ``cntxu<n>`` still there on a loaded machine ("File exists")."""
        for c in node.containers:
            self.pool.remove(c)
        self.pool.remove(node.ns)
        self.nodes.remove(node)
        assert self.underlay is not None
        outside = f"cntxu{node.name.removeprefix('node')}"
        deadline = time.monotonic() + _PATIENCE
        while self.underlay.ip("link", "show", outside, check=False).returncode == 0:
            if time.monotonic() > deadline:
                raise AssertionError(f"{outside} outlived its node's namespace by {_PATIENCE:.0f} s")
            time.sleep(0.05)

    def down(self) -> None:
        for node in list(self.nodes):
            self.remove_node(node)
        if self.underlay is not None:
            self.pool.remove(self.underlay)


def source_wrappers(dest: Path, *plugin_types: str) -> Path:
    """``dest/<type>`` for each type: a two-line script running the multi-call entry point from the source
    tree under that name (no ./build.sh needed). Returns ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    for plugin_type in plugin_types:
        wrapper = dest / plugin_type
        wrapper.write_text("#!/bin/sh\n"
                           f"PYTHONPATH={paths.REPO} exec {PYTHON} -c 'import sys; sys.argv[0] = \"{plugin_type}\"; "
                           "from plugins.multicall import main; sys.exit(main())' \"$@\"\n")
        wrapper.chmod(0o755)
    return dest


def source_bin_dir(dest: Path) -> Path:
    """A CNI_PATH with ``vxlan`` running from the source tree and our built ``host-local`` (from dist/).

    vxlan itself needs no ./build.sh (:func:`source_wrappers`). The IPAM is dist/'s host-local, copied
    (build.sh swaps dist/ as a whole, so a link could dangle mid-test).
    """
    source_wrappers(dest, "vxlan")
    paths.make_bin_dir(dest, {"host-local": require_dist() / "host-local"})
    return dest


def eventually(cond: Callable[[], bool], patience: float = _PATIENCE) -> bool:
    """Poll ``cond`` until it holds (True) or ``patience`` runs out (its last value): a bound, not a timing."""
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.3)
    return cond()


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
