"""The bandwidth lab: a node namespace, containers made through libcni with our bridge, then bandwidth.

Two drivers share one node: ``ours`` runs this suite's files only, ``go`` runs our bridge and host-local
followed by the Go bandwidth (v1.1.1, /usr/lib/cni), so the two plugins are compared on the same attachment
kind and the same node. Limits come from the config or, like a runtime, from ``CAP_ARGS`` (the ``bandwidth``
capability). Namespaces are ``cnt-w<run>-…``; links the tests make start with ``cnt``; the ifb devices are named
by the plugins (``bwp…``) from a network name that carries the run id.
"""

from __future__ import annotations

import json
import secrets
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.containerd.conftest import (  # noqa: F401  (fixtures for the CRI test)
    containerd_tools, cri_client, make_containerd, rootfs, sandbox_image_tar, workroot)
from tests.e2e_portmap.conftest import plugin_dir  # noqa: F401  (dist/ copied away from concurrent builds)
from tests.helpers import paths
from tests.helpers.cnitool import Cnitool, ToolResult
from tests.helpers.netns import Netns, NetnsPool, serve_pool

GATEWAY = "10.77.0.1"


@pytest.fixture(scope="session")
def netns_pool() -> Iterator[NetnsPool]:
    """This folder's pool: prefix ``cnt-w<run>-``."""
    yield from serve_pool(NetnsPool(tag="w"), leftovers=True)


def conflist(net: str, bridge: str, subnet: str, data_dir: Path, limits: dict[str, int] | None) -> dict[str, Any]:
    """Our bridge + host-local, then bandwidth with these top-level ``limits`` (None: the capability only)."""
    bandwidth: dict[str, Any] = {"type": "bandwidth", "capabilities": {"bandwidth": True}, **(limits or {})}
    return {"cniVersion": "1.0.0", "name": net, "plugins": [
        {"type": "bridge", "bridge": bridge, "isGateway": True,
         "ipam": {"type": "host-local", "dataDir": str(data_dir), "ranges": [[{"subnet": subnet}]]}},
        bandwidth]}


@dataclass
class Attached:
    ns: Netns
    net: str
    cid: str
    result: dict[str, Any]
    tool: Cnitool
    cap_args: dict[str, Any] | None

    @property
    def ip(self) -> str:
        return self.result["ips"][0]["address"].split("/")[0]

    @property
    def host_veth(self) -> str:
        return next(i["name"] for i in self.result["interfaces"]
                    if not i.get("sandbox") and i["name"].startswith("veth"))

    @property
    def ifb(self) -> str | None:
        return next((i["name"] for i in self.result["interfaces"] if i["name"].startswith("bwp")), None)


@dataclass
class Lab:
    node: Netns
    pool: NetnsPool
    tools: dict[str, Cnitool]
    net: str
    attached: list[Attached] = field(default_factory=list)

    def add(self, impl: str, role: str, *, net: str | None = None, cap_args: dict[str, Any] | None = None,
            expect_ok: bool = True) -> Attached:
        ns = self.pool.create(role, lo_up=True)
        cid = f"cnt-w-{role}-{secrets.token_hex(4)}"
        tool = self.tools[impl]
        res = tool.add(net or self.net, ns, container_id=cid, cap_args=cap_args)
        if expect_ok:
            assert res.rc == 0, (res.out, res.stderr)
        att = Attached(ns, net or self.net, cid, res.out if res.rc == 0 else {}, tool, cap_args)
        self.attached.append(att)
        return att

    def delete(self, att: Attached, tool: Cnitool | None = None) -> ToolResult:
        return (tool or att.tool).delete(att.net, att.ns, container_id=att.cid, cap_args=att.cap_args)

    def remove(self, att: Attached) -> None:
        self.delete(att)
        self.pool.remove(att.ns)
        if att in self.attached:
            self.attached.remove(att)

    def tc(self, *args: str) -> str:
        return self.node.run(["tc", *args]).stdout

    def qdiscs(self, dev: str) -> list[dict[str, Any]]:
        """``tc -j qdisc show dev`` without counters (refcnt), the kernel's default root left out."""
        out = json.loads(self.tc("-j", "qdisc", "show", "dev", dev) or "[]")
        return [{k: v for k, v in q.items() if k != "refcnt"} for q in out if q.get("kind") != "noqueue"]

    def ifb_facts(self, name: str) -> dict[str, Any] | None:
        proc = self.node.run(["ip", "-d", "-j", "link", "show", "dev", name], check=False)
        if proc.returncode:
            return None
        link = json.loads(proc.stdout)[0]
        return {"kind": link.get("linkinfo", {}).get("info_kind"), "mtu": link["mtu"], "txqlen": link.get("txqlen", 0),
                "up": "UP" in link["flags"], "qdisc": link.get("qdisc")}

    def redirect_filter(self, dev: str) -> list[str]:
        """The ingress filter of ``dev`` as text: its match and its first action (counters and index dropped)."""
        lines = []
        for line in self.tc("filter", "show", "dev", dev, "ingress").splitlines():
            if "action order 2" in line:
                break  # upstream adds a second mirred action that never runs (docs/bandwidth.md)
            if line.strip().startswith("index ") or not line.strip():
                continue
            lines.append(line.strip())
        return lines

    def ifb_links(self) -> list[str]:
        out = json.loads(self.node.run(["ip", "-j", "link", "show", "type", "ifb"]).stdout or "[]")
        return [link["ifname"] for link in out]


@pytest.fixture(scope="module")
def lab(netns_pool: NetnsPool, cnitool_bin: Path, plugin_dir: Path,  # noqa: F811
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    node = netns_pool.create("node", lo_up=True)
    work = tmp_path_factory.mktemp("bw")
    net = f"cntbw{netns_pool.run_id}"
    go_bin = paths.make_bin_dir(work / "go-bin", {
        "bridge": plugin_dir / "bridge", "host-local": plugin_dir / "host-local",
        "bandwidth": paths.GO_PLUGIN_DIR / "bandwidth"})
    tools = {"ours": Cnitool(cnitool_bin, node, work / "ours", plugin_dir),
             "go": Cnitool(cnitool_bin, node, work / "go", go_bin)}
    limits = {"ingressRate": 8_000_000, "ingressBurst": 80_000, "egressRate": 16_000_000, "egressBurst": 160_000}
    for tool in tools.values():
        tool.write_conflist(conflist(net, "cntbw0", "10.77.0.0/24", work / "ipam", limits))
        tool.write_conflist(conflist(net + "c", "cntbw1", "10.78.0.0/24", work / "ipam", None))
    lab = Lab(node, netns_pool, tools, net)
    try:
        yield lab
    finally:
        for att in list(lab.attached):
            lab.remove(att)
        for bridge in ("cntbw0", "cntbw1"):
            subprocess.run(["ip", "-n", node.name, "link", "del", bridge], capture_output=True)
        netns_pool.remove(node)


@pytest.fixture
def clean_lab(lab: Lab) -> Iterator[Lab]:
    """The module's lab; what a test attached is DELeted and removed after it."""
    yield lab
    for att in list(lab.attached):
        lab.remove(att)
