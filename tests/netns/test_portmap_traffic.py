"""portmap with real TCP/UDP traffic, both backends, and interop with the Go portmap (namespaces ``cnt-f``).

Topology: remote (192.0.2.2) --veth-- node (192.0.2.1 | 10.99.0.1) --veth-- container (10.99.0.2, fd99::2).
"""

from __future__ import annotations

import io
import json
import os
import secrets
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest

from cni_common.netfilter import names
from cni_common.netns import NetNS
from plugins import portmap
from tests.helpers.net import serve, tcp_connect, udp_connect
from tests.helpers.netns import Netns

NET = "testnet"
CID = "ctr1"
GO_PORTMAP = Path("/usr/lib/cni/portmap")
PREV = {"cniVersion": "1.0.0",
        "interfaces": [{"name": "cntfh0", "mac": "0a:58:0a:63:00:01"},
                       {"name": "eth0", "mac": "0a:58:0a:63:00:02", "sandbox": "/var/run/netns/x"}],
        "ips": [{"interface": 1, "address": "10.99.0.2/24", "gateway": "10.99.0.1"},
                {"interface": 1, "address": "fd99::2/64", "gateway": "fd99::1"}]}
MAPPINGS = [{"HostPort": 8080, "ContainerPort": 80, "Protocol": "TCP"},
            {"hostPort": 5353, "containerPort": 53, "protocol": "udp"}]


@pytest.fixture
def topo() -> Iterator[dict[str, Netns]]:
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    run = secrets.token_hex(2)
    made = {role: Netns(f"cnt-f{run}-{role}") for role in ("node", "ctr", "remote")}
    try:
        for ns in made.values():
            subprocess.run(["ip", "netns", "add", ns.name], check=True)
            ns.ip("link", "set", "lo", "up")
        node, ctr, remote = made["node"], made["ctr"], made["remote"]
        node.ip("link", "add", "cntfh0", "type", "veth", "peer", "name", "eth0", "netns", ctr.name)
        node.ip("link", "add", "cntfh1", "type", "veth", "peer", "name", "eth0", "netns", remote.name)
        for ns, ifname, addrs in ((node, "cntfh0", ["10.99.0.1/24", "fd99::1/64"]),
                                  (ctr, "eth0", ["10.99.0.2/24", "fd99::2/64"]),
                                  (node, "cntfh1", ["192.0.2.1/24", "fd98::1/64"]),
                                  (remote, "eth0", ["192.0.2.2/24", "fd98::2/64"])):
            for addr in addrs:
                ns.ip("addr", "add", addr, "dev", ifname, "nodad")
            ns.ip("link", "set", ifname, "up")
        ctr.ip("route", "add", "default", "via", "10.99.0.1")
        ctr.ip("-6", "route", "add", "default", "via", "fd99::1")
        node.run(["sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"])
        yield made
    finally:
        for ns in made.values():
            for pid in ns.pids():
                subprocess.run(["kill", "-9", str(pid)], check=False)
            subprocess.run(["ip", "netns", "del", ns.name], check=False)


def conf(**extra: Any) -> dict[str, Any]:
    return {"cniVersion": "1.0.0", "name": NET, "type": "portmap", "prevResult": PREV,
            "runtimeConfig": {"portMappings": MAPPINGS}, **extra}


def run_plugin(node: Netns, verb: str, config: dict[str, Any], ctr: Netns) -> tuple[int, dict[str, Any]]:
    """Run our portmap in-process inside the node namespace, as a runtime would exec it there."""
    env = {"CNI_COMMAND": verb, "CNI_CONTAINERID": CID, "CNI_NETNS": ctr.path, "CNI_IFNAME": "eth0",
           "CNI_PATH": "/nonexistent"}
    out = io.StringIO()
    with NetNS(node.path) as handle, handle.entered():
        rc = portmap.plugin_main(portmap.CNIFuncs(add=portmap.cmd_add, delete=portmap.cmd_del,
                                                  check=portmap.cmd_check, gc=portmap.cmd_gc), "test",
                                 environ=env, stdin=io.BytesIO(json.dumps(config).encode()), stdout=out,
                                 stderr=io.StringIO())
    text = out.getvalue()
    return rc, json.loads(text) if text.strip() else {}


def ruleset(node: Netns) -> str:
    return (node.run(["iptables-save", "-t", "nat"]).stdout + node.run(["ip6tables-save", "-t", "nat"]).stdout
            + node.run(["nft", "list", "ruleset"]).stdout)


def assert_clean(node: Netns) -> None:
    text = ruleset(node)
    assert names.dnat_chain(NET, CID) not in text
    assert f'comment "{CID}"' not in text


@pytest.mark.parametrize("backend", ["iptables", "nftables"])
def test_forwarding_hairpin_localhost_and_del(topo: dict[str, Netns], backend: str) -> None:
    node, ctr, remote = topo["node"], topo["ctr"], topo["remote"]
    for _ in range(2):  # a repeated ADD replaces, never stacks
        rc, out = run_plugin(node, "ADD", conf(backend=backend), ctr)
        assert rc == 0, out
    assert out["ips"] == PREV["ips"]
    assert rc == 0 and run_plugin(node, "CHECK", conf(backend=backend), ctr)[0] == 0
    assert node.run(["sysctl", "-n", "net.ipv4.conf.cntfh0.route_localnet"]).stdout.strip() == "1"
    with serve(ctr, "tcp", 80, bind="::", accepts=5), serve(ctr, "udp", 53, accepts=2):
        # remote -> node: DNAT, source kept
        assert tcp_connect(remote, "192.0.2.1", 8080) == "::ffff:192.0.2.2"
        assert udp_connect(remote, "192.0.2.1", 5353) == "192.0.2.2"
        assert tcp_connect(remote, "fd98::1", 8080) == "fd98::2"
        # hairpin: the container reaches itself through the node; masqueraded
        assert tcp_connect(ctr, "192.0.2.1", 8080) == "::ffff:10.99.0.1"
        # localhost on the node (route_localnet + masquerade)
        assert tcp_connect(node, "127.0.0.1", 8080) == "::ffff:10.99.0.1"
    if backend == "iptables":
        assert ruleset(node).count("-A CNI-HOSTPORT-DNAT -p tcp") == 2  # one per family
    rc, _ = run_plugin(node, "DEL", {k: v for k, v in conf().items() if k != "runtimeConfig"}, ctr)
    assert rc == 0
    assert_clean(node)
    assert run_plugin(node, "DEL", conf(), ctr)[0] == 0


@pytest.mark.skipif(not GO_PORTMAP.exists(), reason="Go portmap not installed")
def test_interop_with_go_portmap(topo: dict[str, Netns]) -> None:
    node, ctr = topo["node"], topo["ctr"]
    env = {"PATH": os.environ["PATH"], "CNI_CONTAINERID": CID, "CNI_NETNS": ctr.path, "CNI_IFNAME": "eth0",
           "CNI_PATH": str(GO_PORTMAP.parent)}
    body = json.dumps(conf())

    def go(verb: str) -> None:
        proc = node.run([str(GO_PORTMAP)], env={**env, "CNI_COMMAND": verb}, input=body, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr

    go("ADD")
    assert names.dnat_chain(NET, CID) in ruleset(node)
    assert run_plugin(node, "CHECK", conf(backend="iptables"), ctr)[0] == 0  # ours accepts Go's rules
    assert run_plugin(node, "DEL", conf(), ctr)[0] == 0
    assert_clean(node)
    assert run_plugin(node, "ADD", conf(backend="iptables"), ctr)[0] == 0
    # (No Go CHECK here: v1.1.1 checks the IPv4 rules against ip6tables too, so it fails on any host with
    # ip6tables, whoever wrote the rules.)
    go("DEL")
    assert_clean(node)


def test_gc_removes_stale_containers(topo: dict[str, Netns]) -> None:
    node, ctr = topo["node"], topo["ctr"]
    assert run_plugin(node, "ADD", conf(backend="iptables"), ctr)[0] == 0
    gc = {"cniVersion": "1.1.0", "name": NET, "type": "portmap",
          "cni.dev/valid-attachments": [{"containerID": CID, "ifname": "eth0"}]}
    assert run_plugin(node, "GC", gc, ctr)[0] == 0
    assert names.dnat_chain(NET, CID) in ruleset(node)
    gc["cni.dev/valid-attachments"] = []
    assert run_plugin(node, "GC", gc, ctr)[0] == 0
    assert_clean(node)
