"""The portmap end-to-end lab: a node, a remote host routed through it, and containers made through libcni.

Topology (all in namespaces named ``cnt-p<run>-…``; nothing touches the machine's namespace):

    remote (192.0.2.2, 198.51.100.2, fd98::2) --veth-- node (192.0.2.1, 198.51.100.1, fd98::1)
                                                        node --bridge from the conflist-- containers

The conflists are the ones shipped in ``conf-examples/`` (30: iptables, 31: nftables), changed only where a
test must not write outside its own folders (host-local ``dataDir``) and to give the bridge a test name.
Containers are added with ``CAP_ARGS`` port mappings, exactly as a runtime does through libcni.
"""

from __future__ import annotations

import json
import secrets
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.containerd.conftest import (  # noqa: F401  (fixtures re-exported for the CRI test)
    containerd_tools, cri_client, make_containerd, rootfs, sandbox_image_tar, workroot)
from tests.helpers import paths
from tests.helpers.cnitool import Cnitool, ToolResult
from tests.helpers.netns import Netns, NetnsPool, serve_pool
from tests.helpers.skip import require_dist

CONF_EXAMPLES = paths.REPO / "conf-examples"
#: backend name -> (conf-examples file, test bridge name)
CONFS = {"iptables": ("30-bridge-portmap.conflist", "cntpm0"),
         "nftables": ("31-bridge-portmap-nftables.conflist", "cntpm1")}
NODE_V4, NODE_V4_OTHER, NODE_V6 = "192.0.2.1", "198.51.100.1", "fd98::1"
REMOTE_V4 = "192.0.2.2"
UPLINK = "cntpup0"


@pytest.fixture(scope="session")
def netns_pool() -> Iterator[NetnsPool]:
    """Overrides the suite's pool for this folder with prefix ``cnt-p<run>-`` (also used by host_ns and the
    containerd fixtures)."""
    yield from serve_pool(NetnsPool(tag="p"), leftovers=True)


_WRAPPER = """#!/bin/sh
# Run the built plugin unchanged, with a launcher cache of its own (see plugin_dir).
CNI_SUITE_CACHE_DIR={cache} exec {real} "$@"
"""


@pytest.fixture(scope="session")
def plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dist/ as ./build.sh made it when the session started, isolated from concurrent builds.

    Other engineers rebuild dist/ (emptying it first) and their first runs prune the launcher's shared
    unpack cache, which breaks a run half-way. So the binaries are copied, and each runs through a one-line
    wrapper giving it a private CNI_SUITE_CACHE_DIR; the binary itself is exactly build.sh's.
    """
    dist = require_dist()
    root = tmp_path_factory.mktemp("dist")
    real = paths.make_bin_dir(root / "real", {n: dist / n for n in paths.OUR_PLUGINS})
    cache = root / "cache"
    cache.mkdir(mode=0o700)
    bin_dir = root / "bin"
    bin_dir.mkdir()
    for name in paths.OUR_PLUGINS:
        wrapper = bin_dir / name
        wrapper.write_text(_WRAPPER.format(cache=shlex.quote(str(cache)), real=shlex.quote(str(real / name))))
        wrapper.chmod(0o755)
    return bin_dir


def example_conflist(backend: str, data_dir: Path) -> dict[str, Any]:
    """The conf-examples conflist of ``backend``, with a private host-local dataDir and a test bridge name."""
    filename, bridge = CONFS[backend]
    conf = json.loads((CONF_EXAMPLES / filename).read_text())
    conf["plugins"][0]["bridge"] = bridge
    conf["plugins"][0]["ipam"]["dataDir"] = str(data_dir)
    return conf


@dataclass
class Container:
    """One container added through libcni, with its mappings (sent again on DEL, as runtimes do)."""

    ns: Netns
    cid: str
    mappings: list[dict[str, Any]]
    result: dict[str, Any]

    def ip(self, version: int) -> str:
        return next(i["address"].split("/")[0] for i in self.result["ips"]
                    if (":" in i["address"]) == (version == 6))


@dataclass
class Lab:
    """A node + remote pair and a libcni driver over dist/ with one conf-examples conflist."""

    backend: str
    node: Netns
    remote: Netns
    tool: Cnitool
    net: str
    data_dir: Path
    pool: NetnsPool
    containers: list[Container] = field(default_factory=list)

    def add(self, role: str, mappings: list[dict[str, Any]]) -> Container:
        ns = self.pool.create(role, lo_up=True)
        cid = f"cnt-p-{role}-{secrets.token_hex(4)}"
        res = self.tool.add(self.net, ns, container_id=cid, cap_args={"portMappings": mappings})
        assert res.rc == 0, (res.out, res.stderr)
        ctr = Container(ns, cid, mappings, res.out)
        self.containers.append(ctr)
        return ctr

    def delete(self, ctr: Container, *, with_mappings: bool = True) -> ToolResult:
        cap = {"portMappings": ctr.mappings} if with_mappings else None
        res = self.tool.delete(self.net, ctr.ns, container_id=ctr.cid, cap_args=cap)
        if res.rc == 0 and ctr in self.containers:
            self.containers.remove(ctr)
        return res

    def remove(self, ctr: Container) -> None:
        """DEL (if still attached) and drop the namespace."""
        if ctr in self.containers:
            self.delete(ctr)
        self.pool.remove(ctr.ns)

    def netfilter_text(self) -> str:
        """Everything netfilter holds in the node: nat tables of both families and the nft ruleset."""
        parts = [self.node.run([tool, "-t", "nat"]).stdout for tool in ("iptables-save", "ip6tables-save")]
        parts.append(self.node.run(["nft", "list", "ruleset"]).stdout)
        return "\n".join(parts)

    def leftovers(self, ctr: Container) -> list[str]:
        """Lines of netfilter state that still name this container (its ID or its CNI-DN chain hash)."""
        from cni_common.netfilter import names

        marks = (ctr.cid, names.dnat_chain(self.net, ctr.cid), names.masq_chain(self.net, ctr.cid))
        return [ln for ln in self.netfilter_text().splitlines() if any(m in ln for m in marks)]


def build_lab(pool: NetnsPool, cnitool_bin: Path, plugin_dir: Path, workdir: Path, backend: str) -> Lab:
    node = pool.create("node", lo_up=True)
    remote = pool.create("remote", lo_up=True)
    node.ip("link", "add", UPLINK, "type", "veth", "peer", "name", "eth0", "netns", remote.name)
    for ns, ifname, addrs in ((node, UPLINK, [f"{NODE_V4}/24", f"{NODE_V4_OTHER}/24", f"{NODE_V6}/64"]),
                              (remote, "eth0", [f"{REMOTE_V4}/24", "198.51.100.2/24", "fd98::2/64"])):
        for addr in addrs:
            ns.ip("addr", "add", addr, "dev", ifname, "nodad")
        ns.ip("link", "set", ifname, "up")
    remote.ip("route", "add", "default", "via", NODE_V4)
    remote.ip("-6", "route", "add", "default", "via", NODE_V6)
    node.run(["sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"])
    conf = example_conflist(backend, workdir / "ipam")
    tool = Cnitool(cnitool_bin, node, workdir / "cnitool", plugin_dir)
    tool.write_conflist(conf)
    return Lab(backend, node, remote, tool, conf["name"], workdir / "ipam", pool)


@pytest.fixture(scope="module", params=sorted(CONFS))
def lab_env(request: pytest.FixtureRequest, netns_pool: NetnsPool, cnitool_bin: Path, plugin_dir: Path,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """One lab per backend, shared by a module's tests (containers are added per test and removed after)."""
    lab = build_lab(netns_pool, cnitool_bin, plugin_dir, tmp_path_factory.mktemp(f"pm-{request.param}"),
                    request.param)
    try:
        yield lab
    finally:
        for ctr in list(lab.containers):
            lab.remove(ctr)
        for ns in (lab.remote, lab.node):
            netns_pool.remove(ns)


@pytest.fixture
def lab(lab_env: Lab) -> Iterator[Lab]:
    """The module's lab of one backend; the containers a test adds are DELeted and removed after it."""
    yield lab_env
    for ctr in list(lab_env.containers):
        lab_env.remove(ctr)


def conntrack_udp(node: Netns, port: int, family: int = 4) -> str:
    """`conntrack -L` lines of UDP flows to ``port`` in the node."""
    proc = node.run(["conntrack", "-L", "-f", "ipv4" if family == 4 else "ipv6", "-p", "udp",
                     "--orig-port-dst", str(port)], check=False)
    return proc.stdout
