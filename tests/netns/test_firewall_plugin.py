"""firewall beside the Go plugin v1.1.1 (/usr/lib/cni/firewall), through libcni: [bridge, firewall] in a host
whose FORWARD policy is DROP, so the container reaches the outside only through the plugin's rules.

Topology per host (namespaces ``cnt-…``; nothing touches the machine's)::

    container (10.99.8.x) --bridge cntfbr0-- host (192.0.2.1) --veth-- remote (192.0.2.2)

The same filter table after ADD and after DEL on both suites (Go v1.1.1 writes the old isolation comments;
ours the v1.9 ones, and it accepts the old ones as present), traffic out and back only while the container is
attached, a second DEL, CHECK; then the nftables backend (ours) with its bridge isolation by traffic.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from tests.helpers import paths
from tests.helpers.netns import Netns
from tests.helpers.plugin import run_plugin

SUBNETS = {"cntf": "10.99.8.0/24", "cntg": "10.99.9.0/24"}
BRIDGES = {"cntf": "cntfbr0", "cntg": "cntfbr1"}
REMOTE = "192.0.2.2"


@pytest.fixture
def make_host(netns_pool):
    """Factory: a host namespace (FORWARD policy DROP) wired to its own remote; both removed afterwards."""
    yield from host_factory(netns_pool)


def host_factory(netns_pool) -> Iterator[Callable[[], Netns]]:
    """The body of ``make_host`` (a fixture of test_firewall_firewalld.py too)."""
    made: list[Netns] = []

    def make() -> Netns:
        host, remote = netns_pool.create("host", lo_up=True), netns_pool.create("remote", lo_up=True)
        made.extend([remote, host])
        host.ip("link", "add", "cntfup0", "type", "veth", "peer", "name", "cntfup1", "netns", remote.name)
        host.ip("addr", "add", "192.0.2.1/24", "dev", "cntfup0")
        host.ip("link", "set", "cntfup0", "up")
        remote.ip("addr", "add", f"{REMOTE}/24", "dev", "cntfup1")
        remote.ip("link", "set", "cntfup1", "up")
        for subnet in SUBNETS.values():
            remote.ip("route", "add", subnet, "via", "192.0.2.1")
        host.run(["iptables", "-P", "FORWARD", "DROP"])
        return host

    yield make
    for ns in made:
        netns_pool.remove(ns)


def conflist(net: str, tmp: Path, with_firewall: bool = True, **firewall: Any) -> dict[str, Any]:
    """bridge (+ firewall with these keys) on the network's own bridge and subnet."""
    return {"cniVersion": "1.0.0", "name": net, "plugins": [
        {"type": "bridge", "bridge": BRIDGES[net], "isGateway": True,
         "ipam": {"type": "host-local", "dataDir": str(tmp / "ipam"), "ranges": [[{"subnet": SUBNETS[net]}]],
                  "routes": [{"dst": "0.0.0.0/0"}]}},
        {"type": "firewall", **firewall}][:2 if with_firewall else 1]}


_COUNTERS = re.compile(r"\[\d+:\d+\]")


def filter_table(host: Netns) -> str:
    """iptables-save -t filter (both families) without comments' generation, counters and header lines."""
    text = host.run(["iptables-save", "-t", "filter"]).stdout + host.run(["ip6tables-save", "-t", "filter"]).stdout
    text = text.replace("(ingressPolicy: same-bridge|isolated)", "(ingressPolicy: same-bridge)")
    return "\n".join(_COUNTERS.sub("", line) for line in text.splitlines() if not line.startswith("#"))


def inspected_firewall(host: Netns, tmp: Path) -> dict[str, Any]:
    """``cni-suite inspect``'s firewall view of the host (from the source tree)."""
    argv = [sys.executable, "-m", "cni_common.inspect", "--netns", host.name, "--format", "json",
            "--data-dir", str(tmp), "--cache-dir", str(tmp)]
    return json.loads(subprocess.run(argv, check=True, capture_output=True, text=True, cwd=paths.REPO).stdout)[
        "firewall"]


def reaches_remote(ctr: Netns) -> bool:
    return ctr.run(["ping", "-c", "1", "-W", "1", REMOTE], check=False).returncode == 0


@pytest.mark.parametrize("policy", ["", "same-bridge"])
@pytest.mark.parametrize("dual_stack", [False, True])
def test_same_rules_and_traffic_as_go(policy, dual_stack, make_host, make_cnitool, plugin_dir, go_plugin_dir,
                                      make_container_ns, tmp_path):
    keys = {"ingressPolicy": policy} if policy else {}
    tables = {}
    for suite, bin_dir in (("go", go_plugin_dir), ("ours", plugin_dir)):
        host = make_host()
        tool = make_cnitool(bin_dir, host=host)
        conf = conflist("cntf", tmp_path / suite, **keys)
        if dual_stack:  # both families' filter tables, each with its own rules (/128 for IPv6)
            conf["plugins"][0]["ipam"]["ranges"].append([{"subnet": "fd99:8::/64"}])
        tool.write_conflist(conf)
        ctr = make_container_ns(lo_up=True)
        before = filter_table(host)
        added = tool.add("cntf", ctr, container_id="cnt-fw-1")
        assert added.rc == 0, added.out
        assert reaches_remote(ctr), suite
        bare = make_cnitool(bin_dir, host=host)  # the proof that FORWARD drops what the plugin did not open
        bare.write_conflist(conflist("cntg", tmp_path / suite / "bare", with_firewall=False))
        other = make_container_ns(lo_up=True)
        assert bare.add("cntg", other, container_id="cnt-fw-2").rc == 0
        assert not reaches_remote(other)
        assert bare.delete("cntg", other, container_id="cnt-fw-2").rc == 0
        assert tool.check("cntf", ctr, container_id="cnt-fw-1").rc == 0
        after_add = filter_table(host)
        ip = added.out["ips"][0]["address"].split("/")[0]
        view = inspected_firewall(host, tmp_path)
        assert {"backend": "iptables", "address": ip, "attachment": None} in view["allowed"]
        assert view["isolated_bridges"] == ([{"backend": "iptables", "bridge": "cntfbr0"}] if policy else [])
        assert tool.delete("cntf", ctr, container_id="cnt-fw-1").rc == 0
        after_del = filter_table(host)
        assert tool.delete("cntf", ctr, container_id="cnt-fw-1").rc == 0  # a second DEL
        assert "10.99.8." not in after_del and after_del != before
        tables[suite] = (after_add, after_del)
    assert tables["go"] == tables["ours"]


def test_ours_adds_nothing_twice_after_go(make_host, make_cnitool, plugin_dir, go_plugin_dir,
                                          make_container_ns, tmp_path):
    """A node switching suites: Go's rules (old isolation comments) count as present for ours."""
    host = make_host()
    go, ours = make_cnitool(go_plugin_dir, host=host), make_cnitool(plugin_dir, host=host)
    for tool in (go, ours):
        tool.write_conflist(conflist("cntf", tmp_path, ingressPolicy="same-bridge"))
    ctr_go, ctr_ours = make_container_ns(lo_up=True), make_container_ns(lo_up=True)
    assert go.add("cntf", ctr_go, container_id="cnt-fw-go").rc == 0
    shared = [line for line in filter_table(host).splitlines() if "10.99.8." not in line]
    assert ours.add("cntf", ctr_ours, container_id="cnt-fw-ours").rc == 0
    assert [line for line in filter_table(host).splitlines() if "10.99.8." not in line] == shared
    assert reaches_remote(ctr_go) and reaches_remote(ctr_ours)
    assert ours.delete("cntf", ctr_ours, container_id="cnt-fw-ours").rc == 0
    assert go.delete("cntf", ctr_go, container_id="cnt-fw-go").rc == 0
    assert "10.99.8." not in filter_table(host)


def test_unknown_ingress_policy_changes_nothing(make_host, make_cnitool, plugin_dir, make_container_ns, tmp_path):
    """Go adds the allow rules and then fails on the policy; ours refuses before anything."""
    host = make_host()
    tool = make_cnitool(plugin_dir, host=host)
    tool.write_conflist(conflist("cntf", tmp_path, ingressPolicy="bogus"))
    before = filter_table(host)
    got = tool.add("cntf", make_container_ns(lo_up=True), container_id="cnt-fw-bad")
    assert got.rc == 1 and got.out["code"] == 7 and "ingressPolicy" in got.out["msg"], got.out
    assert "10.99.8." not in filter_table(host)
    assert [ln for ln in filter_table(host).splitlines() if "CNI-FORWARD" in ln] == \
        [ln for ln in before.splitlines() if "CNI-FORWARD" in ln]


def nft_table(host: Netns) -> str:
    return host.run(["nft", "list", "table", "inet", "cni_plugins_firewall"], check=False).stdout


def test_nftables_backend_rules_isolation_and_del(make_host, make_cnitool, plugin_dir, make_container_ns,
                                                  tmp_path):
    host = make_host()
    host.run(["iptables", "-P", "FORWARD", "ACCEPT"])  # this backend's drops are its own: nothing else filters
    tools = {}
    for net in ("cntf", "cntg"):
        tools[net] = make_cnitool(plugin_dir, host=host)
        tools[net].write_conflist(conflist(net, tmp_path / net, backend="nftables", ingressPolicy="same-bridge"))
    a, b, c = (make_container_ns(lo_up=True) for _ in range(3))
    ips = {}
    for ctr, net, cid in ((a, "cntf", "cnt-fw-a"), (b, "cntg", "cnt-fw-b"), (c, "cntf", "cnt-fw-c")):
        added = tools[net].add(net, ctr, container_id=cid)
        assert added.rc == 0, added.out
        ips[cid] = added.out["ips"][0]["address"].split("/")[0]
        assert tools[net].check(net, ctr, container_id=cid).rc == 0
    table = nft_table(host)
    assert f"ip saddr {ips['cnt-fw-a']} accept" in table and "@policy_bridges drop" in table
    assert a.run(["ping", "-c", "1", "-W", "1", ips["cnt-fw-c"]], check=False).returncode == 0  # same bridge
    assert a.run(["ping", "-c", "1", "-W", "1", ips["cnt-fw-b"]], check=False).returncode != 0  # across: dropped
    assert reaches_remote(a)
    view = inspected_firewall(host, tmp_path)
    assert {a["address"] for a in view["allowed"]} == set(ips.values())
    assert sorted(b["bridge"] for b in view["isolated_bridges"]) == ["cntfbr0", "cntfbr1"]
    # GC (spec 1.1.0) of cntf keeping only c: a's rules go, c's stay, the other network's b is not touched
    gc_conf = {"cniVersion": "1.1.0", "name": "cntf", "type": "firewall", "backend": "nftables",
               "cni.dev/valid-attachments": [{"containerID": "cnt-fw-c", "ifname": "eth0"}]}
    gc = run_plugin(plugin_dir / "firewall", "GC", gc_conf, in_netns=host, env={"CNI_NETNS": None,
                                                                            "CNI_CONTAINERID": None,
                                                                            "CNI_IFNAME": None})
    assert gc.rc == 0, gc.out
    table = nft_table(host)
    assert ips["cnt-fw-a"] not in table and ips["cnt-fw-c"] in table and ips["cnt-fw-b"] in table
    assert tools["cntf"].delete("cntf", a, container_id="cnt-fw-a").rc == 0
    for ctr, net, cid in ((b, "cntg", "cnt-fw-b"), (c, "cntf", "cnt-fw-c")):
        assert tools[net].delete(net, ctr, container_id=cid).rc == 0
    assert "accept comment" not in nft_table(host)
