"""Side by side with the Go bridge v1.1.1 (/usr/lib/cni/bridge): the same configs, compared after ADD and DEL.

Each suite gets its own node namespace and containers; the container IDs are the same, so even the
masquerade chain names (a hash of network + container ID) must match. MACs, veth names and link-local IPv6
addresses are random per run and are left out. Go v1.1.1 speaks spec versions up to 1.0.0.
Known, intended difference: CHECK in L2 mode (see the test).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.e2e_bridge import lab
from tests.helpers import net
from tests.helpers.netns import Netns

CONFIGS = {
    "dual-stack-masq": dict(isDefaultGateway=True, ipMasq=True, hairpinMode=True, mtu=1400),
    "gateway-promisc-spoofchk": dict(isGateway=True, promiscMode=True, macspoofchk=True, subnets=("10.85.0.0/24",)),
    "l2-only": dict(ipam={}),
}
CIDS = ("cnte-par-a", "cnte-par-b")


def _normalize_result(res: dict[str, Any]) -> dict[str, Any]:
    out = dict(res)
    out["interfaces"] = [{k: ("<veth>" if k == "name" and str(v).startswith("veth") else v)
                          for k, v in itf.items() if k != "mac"} | {"mac": bool(itf.get("mac"))}
                         for itf in res["interfaces"]]
    out.setdefault("dns", {})
    return out


def _sysctl(ns: Netns, path: str) -> str:
    return ns.run(["cat", f"/proc/sys/net/{path}"], check=False).stdout.strip()


def _routes(ns: Netns) -> list[tuple]:
    keep = []
    for fam in (4, 6):
        for r in net.routes(ns, family=fam):
            if r["dst"].startswith("fe80") or r["dst"].startswith("ff00"):
                continue
            dev = "<veth>" if r.get("dev", "").startswith("veth") else r.get("dev")
            keep.append((r["dst"], r.get("gateway"), dev, r.get("protocol"), r.get("scope"), r.get("prefsrc")))
    return sorted(keep, key=str)


def _node_state(host: Netns, bridge: str) -> dict[str, Any]:
    br = net.link(host, bridge)
    ports = sorted((p["mtu"], p["operstate"], {k: v for k, v in p["linkinfo"]["info_slave_data"].items()
                                               if k in ("hairpin", "isolated", "learning", "state")}.items().__str__())
                   for p in lab.bridge_ports(host, bridge))
    nat = []
    for tool in ("iptables", "ip6tables"):
        nat += [re.sub(r"veth[0-9a-f]+", "<veth>", ln)
                for ln in host.run([tool, "-t", "nat", "-S"]).stdout.splitlines()]
    spoofchk = [re.sub(r"veth[0-9a-f]+", "<veth>", re.sub(r"ether saddr \S+", "ether saddr <mac>", ln))
                for ln in lab.macspoofchk_rules(host)]
    return {
        "macspoofchk": sorted(spoofchk),
        # Admin state only: the bridge's operstate follows its ports a moment later (linkwatch).
        "bridge": br and (br["mtu"], "PROMISC" in br["flags"], "UP" in br["flags"]),
        "bridge_addrs": sorted(net.ip_addresses(host, bridge)),
        "ports": ports,
        "routes": _routes(host),
        "nat": sorted(nat),
        "sysctls": [_sysctl(host, p) for p in ("ipv4/ip_forward", "ipv6/conf/all/forwarding",
                                                f"ipv6/conf/{bridge}/accept_ra")],
    }


def _container_state(ctr: Netns) -> dict[str, Any]:
    eth0 = net.link(ctr, "eth0")
    return {
        "eth0": eth0 and (eth0["mtu"], eth0["operstate"], eth0["linkinfo"]["info_kind"]),
        "addrs": sorted(net.ip_addresses(ctr, "eth0")) if eth0 else [],
        "routes": _routes(ctr),
        "sysctls": [_sysctl(ctr, p) for p in ("ipv6/conf/eth0/accept_dad", "ipv4/conf/eth0/arp_notify")]
        if eth0 else [],
    }


def _run_suite(tool, netns_pool, tmp_path: Path, name: str, opts: dict[str, Any]) -> dict[str, Any]:
    """ADD two containers, snapshot everything, DEL them, snapshot again; returns the snapshots."""
    host = tool.host
    opts = dict(opts)
    conf = lab.bridge_conflist("cnte-par", "cnte7", tmp_path / "ipam", subnets=opts.pop("subnets", (
        "10.84.0.0/24", "fd84::/64")), **opts)
    tool.write_conflist(conf)
    ctrs = [netns_pool.create("ctr") for _ in CIDS]
    snap: dict[str, Any] = {"results": []}
    for ctr, cid in zip(ctrs, CIDS):
        add = tool.add("cnte-par", ctr, container_id=cid)
        assert add.rc == 0, (name, add)
        res = _normalize_result(add.out)
        res["interfaces"][2]["sandbox"] = "<netns>"
        snap["results"].append(res)
    if conf["plugins"][0]["ipam"]:
        snap["ping"] = net.ping(ctrs[0], lab.result_ips(add.out)[0])
    snap["node"] = _node_state(host, "cnte7")
    snap["containers"] = [_container_state(c) for c in ctrs]
    snap["check"] = [tool.check("cnte-par", c, container_id=cid).rc for c, cid in zip(ctrs, CIDS)]
    for ctr, cid in zip(ctrs, CIDS):
        assert tool.delete("cnte-par", ctr, container_id=cid).rc == 0
    snap["node_after_del"] = _node_state(host, "cnte7")
    snap["containers_after_del"] = [_container_state(c) for c in ctrs]
    snap["leases_after_del"] = lab.leases(tmp_path / "ipam", "cnte-par")
    for ctr in ctrs:
        netns_pool.remove(ctr)
    return snap


@pytest.mark.parametrize("name", CONFIGS)
def test_same_result_and_kernel_state_as_go(name, make_cnitool, plugin_dir, go_plugin_dir, netns_pool, tmp_path):
    ours_host, go_host = netns_pool.create("host", lo_up=True), netns_pool.create("gohost", lo_up=True)
    try:
        ours = _run_suite(make_cnitool(plugin_dir, host=ours_host), netns_pool, tmp_path / "ours", name,
                          CONFIGS[name])
        go = _run_suite(make_cnitool(go_plugin_dir, host=go_host), netns_pool, tmp_path / "go", name, CONFIGS[name])
    finally:
        netns_pool.remove(ours_host)
        netns_pool.remove(go_host)
    if name == "l2-only":
        # Go v1.1.1 CHECK execs IPAM even when there is none ("no plugin name provided"); ours passes.
        assert go.pop("check") == [1, 1] and ours.pop("check") == [0, 0]
    for key in go:
        assert ours[key] == go[key], f"{key}:\nours {lab.dump(ours[key])}\ngo   {lab.dump(go[key])}"


@pytest.mark.parametrize("add_with, del_with", [("go", "ours"), ("ours", "go")])
def test_one_suite_deletes_what_the_other_added(add_with, del_with, make_cnitool, plugin_dir, go_plugin_dir,
                                                host_ns, make_container_ns, tmp_path: Path):
    """Same chain names, comments and lease files: DEL by the other suite leaves nothing behind (masquerade,
    macspoofchk, lease)."""
    tools = {"ours": make_cnitool(plugin_dir), "go": make_cnitool(go_plugin_dir)}
    conf = lab.bridge_conflist("cnte-mix", "cnte7", tmp_path / "ipam", isDefaultGateway=True, ipMasq=True,
                               macspoofchk=True)
    for tool in tools.values():
        tool.write_conflist(conf)
    ctr = make_container_ns()
    add = tools[add_with].add("cnte-mix", ctr, container_id="cnte-mix-1")
    assert add.rc == 0, add
    assert len(lab.ipt_masq_rules(host_ns, "cnte-mix")) == 6 and lab.macspoofchk_rules(host_ns)
    assert tools[del_with].delete("cnte-mix", ctr, container_id="cnte-mix-1").rc == 0
    assert lab.ipt_masq_rules(host_ns, "cnte-mix") == [] and lab.ipt_nat_chains(host_ns) == []
    assert lab.leases(tmp_path / "ipam", "cnte-mix") == [] and net.link(ctr, "eth0") is None
    assert lab.macspoofchk_rules(host_ns) == []
