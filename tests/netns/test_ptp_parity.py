"""ptp (with static and host-local IPAM) through libcni, side by side with the Go ptp v1.1.1 (/usr/lib/cni).

Each suite gets its own "host" namespace and two containers with the same container IDs, so even the masquerade
chain names (a hash of network + container ID) must match. After ADD: the same results, links, addresses, routes,
NAT rules and forwarding sysctls, traffic from a container to the node and to the other container through the
node; after DEL: nothing left, and a second DEL succeeds. Known, intended differences, left out of the
comparison: the host end's transmit queue (v1.1.1 makes it 0, v1.6+ and ours leave the kernel default), DAD
(ours skips it on both ends of the pair: upstream's host gateway stays "tentative" after the ADD), and the leak
fixed here (DEL with the netns gone, see the last tests).
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import net
from tests.helpers.cnitool import Cnitool
from tests.helpers.netns import Netns
from tests.helpers.plugin import run_plugin

NET = "cntptp"
CIDS = ("cntp-par-a", "cntp-par-b")
STATIC_ARGS = ("IP=10.79.0.5/24,fd79::5/64;GATEWAY=10.79.0.1,fd79::1",
               "IP=10.79.0.6/24,fd79::6/64;GATEWAY=10.79.0.1,fd79::1")


def conflist(ipam: dict[str, Any], **options: Any) -> dict[str, Any]:
    return {"cniVersion": "1.0.0", "name": NET, "plugins": [{"type": "ptp", **options, "ipam": ipam}]}


def static_ipam() -> dict[str, Any]:
    """Addresses from CNI_ARGS (one per container), routes and DNS from the config."""
    return {"type": "static", "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}],
            "dns": {"nameservers": ["10.79.0.53"], "search": ["svc.test"]}}


def host_local_ipam(data_dir: Path) -> dict[str, Any]:
    return {"type": "host-local", "dataDir": str(data_dir), "ranges": [[{"subnet": "10.78.0.0/24"}]],
            "routes": [{"dst": "0.0.0.0/0"}]}


CONFIGS = {
    "static-dual-stack-masq-mtu": (lambda _d: conflist(static_ipam(), ipMasq=True, mtu=1400), STATIC_ARGS),
    "host-local-v4-dns": (lambda d: conflist(host_local_ipam(d), dns={"nameservers": ["10.78.0.53"]}), ("", "")),
}


def _veth(text: str) -> str:
    return re.sub(r"veth[0-9a-f]{8}", "<veth>", text)


def _routes(ns: Netns) -> list[tuple]:
    keep = []
    for fam in (4, 6):
        for r in net.routes(ns, family=fam):
            if r["dst"].startswith("fe80") or r["dst"].startswith("ff00"):
                continue
            keep.append((r["dst"], r.get("gateway"), _veth(r.get("dev", "")), r.get("protocol"), r.get("scope"),
                         r.get("prefsrc"), r.get("metric")))
    return sorted(keep, key=str)


def _sysctl(ns: Netns, path: str) -> str:
    return ns.run(["cat", f"/proc/sys/net/{path}"], check=False).stdout.strip()


def _wait_for_no_veth(host: Netns, timeout: float = 10) -> None:
    """The kernel destroys a removed namespace (and the veth pairs with an end in it) in a work queue, after
    `ip netns del` returned: wait for it, so that the state read after the DEL does not race it."""
    deadline = time.monotonic() + timeout
    while any(link["ifname"].startswith("veth") for link in net.links(host)) and time.monotonic() < deadline:
        time.sleep(0.05)


def node_state(host: Netns) -> dict[str, Any]:
    veths = [link for link in net.links(host) if link["ifname"].startswith("veth")]
    nat = [_veth(line) for tool in ("iptables", "ip6tables") for line in host.run([tool, "-t", "nat", "-S"]).stdout
           .splitlines()]
    return {
        "veths": sorted((link["mtu"], link["operstate"], "UP" in link["flags"]) for link in veths),
        "veth_addrs": sorted(a for link in veths for a in net.ip_addresses(host, link["ifname"])),
        "routes": _routes(host),
        "nat": sorted(nat),
        "forwarding": [_sysctl(host, p) for p in ("ipv4/ip_forward", "ipv6/conf/all/forwarding")],
        "accept_ra": sorted(_sysctl(host, f"ipv6/conf/{link['ifname']}/accept_ra") for link in veths),
    }


def container_state(ctr: Netns) -> dict[str, Any]:
    eth0 = net.link(ctr, "eth0")
    return {"eth0": eth0 and (eth0["mtu"], eth0["operstate"], eth0["linkinfo"]["info_kind"]),
            "addrs": sorted(net.ip_addresses(ctr, "eth0")) if eth0 else [], "routes": _routes(ctr)}


def normalized(result: dict[str, Any]) -> dict[str, Any]:
    out = dict(result)
    out["interfaces"] = [{k: ("<veth>" if k == "name" and str(v).startswith("veth") else
                              "<netns>" if k == "sandbox" else v) for k, v in itf.items() if k != "mac"}
                         | {"mac": bool(itf.get("mac"))} for itf in result["interfaces"]]
    return out


def run_suite(tool: Cnitool, netns_pool, config: str, data_dir: Path) -> dict[str, Any]:
    """ADD two containers, take every picture and probe traffic, DEL them (twice), picture again."""
    make_conf, cni_args = CONFIGS[config]
    tool.write_conflist(make_conf(data_dir))
    ctrs = [netns_pool.create("ctr") for _ in CIDS]
    pods = list(zip(ctrs, CIDS, cni_args, strict=True))
    snap: dict[str, Any] = {"results": []}
    try:
        for ctr, cid, args in pods:
            add = tool.add(NET, ctr, container_id=cid, cni_args=args or None)
            assert add.rc == 0, (config, add)
            snap["results"].append(normalized(add.out))
        addrs = [[ip["address"].split("/")[0] for ip in r["ips"]] for r in snap["results"]]
        gateways = [ip["gateway"] for ip in snap["results"][0]["ips"]]
        # The node (its gateway address on the host end), then the other container, through the node.
        snap["traffic"] = ([net.ping(ctrs[0], gw, count=3) for gw in gateways]
                           + [net.ping(ctrs[0], ip, count=3) for ip in addrs[1]])
        snap["node"] = node_state(tool.host)
        snap["containers"] = [container_state(c) for c in ctrs]
        snap["check"] = [tool.check(NET, c, container_id=cid, cni_args=a or None).rc
                         for c, cid, a in pods]
        for ctr, cid, args in pods:
            assert tool.delete(NET, ctr, container_id=cid, cni_args=args or None).rc == 0
        snap["node_after_del"] = node_state(tool.host)
        snap["containers_after_del"] = [container_state(c) for c in ctrs]
        snap["second_del"] = [tool.delete(NET, c, container_id=cid, cni_args=a or None).rc
                              for c, cid, a in pods]
        snap["leases_after_del"] = sorted(p.name for p in data_dir.rglob("10.*"))
    finally:
        for ctr in ctrs:
            netns_pool.remove(ctr)
    return snap


@pytest.mark.parametrize("config", CONFIGS)
def test_same_results_kernel_state_and_traffic_as_go(config, make_cnitool, plugin_dir, go_plugin_dir, netns_pool,
                                                      tmp_path):
    ours_host, go_host = netns_pool.create("host", lo_up=True), netns_pool.create("gohost", lo_up=True)
    try:
        ours = run_suite(make_cnitool(plugin_dir, host=ours_host), netns_pool, config, tmp_path / "ours")
        go = run_suite(make_cnitool(go_plugin_dir, host=go_host), netns_pool, config, tmp_path / "go")
    finally:
        netns_pool.remove(ours_host)
        netns_pool.remove(go_host)
    assert all(ours["traffic"]) and ours["check"] == [0, 0] and ours["second_del"] == [0, 0], ours
    for key in go:
        assert ours[key] == go[key], f"{key}:\nours {ours[key]}\ngo   {go[key]}"
    assert ours["node_after_del"]["veths"] == [] and [line for line in ours["node_after_del"]["nat"]
                                                      if "CNI-" in line] == []


@pytest.mark.parametrize("add_with, del_with", [("go", "ours"), ("ours", "go")])
def test_one_suite_deletes_what_the_other_added(add_with, del_with, make_cnitool, plugin_dir, go_plugin_dir,
                                                host_ns, make_container_ns):
    """Same chain names, comments, host end and routes: the other suite's DEL leaves nothing behind."""
    tools = {"ours": make_cnitool(plugin_dir), "go": make_cnitool(go_plugin_dir)}
    for tool in tools.values():
        tool.write_conflist(conflist(static_ipam(), ipMasq=True))
    ctr = make_container_ns()
    assert tools[add_with].add(NET, ctr, container_id="cntp-mix", cni_args=STATIC_ARGS[0]).rc == 0
    assert len([line for line in node_state(host_ns)["nat"] if "CNI-" in line]) == 8  # 1 chain + 3 rules, twice
    assert tools[del_with].delete(NET, ctr, container_id="cntp-mix", cni_args=STATIC_ARGS[0]).rc == 0
    after = node_state(host_ns)
    assert after["veths"] == [] and [line for line in after["nat"] if "CNI-" in line] == []
    assert net.link(ctr, "eth0") is None


@pytest.mark.parametrize("how", ["netns-gone", "netns-empty"])
def test_del_without_the_netns_leaves_no_masquerading(how, make_cnitool, plugin_dir, go_plugin_dir, netns_pool):
    """Upstream's leak (plugins#810): with the netns gone (or CNI_NETNS empty) its DEL keeps the chain and the
    POSTROUTING jumps forever. Ours finds them by their names and comments."""
    leftovers = {}
    for suite, bin_dir in (("ours", plugin_dir), ("go", go_plugin_dir)):
        host = netns_pool.create("host", lo_up=True)
        try:
            tool = make_cnitool(bin_dir, host=host)
            tool.write_conflist(conflist(static_ipam(), ipMasq=True))
            ctr = netns_pool.create("ctr")
            assert tool.add(NET, ctr, container_id="cntp-gone", cni_args=STATIC_ARGS[0]).rc == 0
            path = ctr.path
            netns_pool.remove(ctr)
            _wait_for_no_veth(host)  # the kernel ends the pair's host end asynchronously with the netns
            if how == "netns-gone":
                deleted: Any = tool.delete(NET, path, container_id="cntp-gone", cni_args=STATIC_ARGS[0])
            else:  # libcni always names a netns: run the plugin as a runtime without one would
                conf = dict(conflist(static_ipam(), ipMasq=True)["plugins"][0], name=NET, cniVersion="1.0.0")
                deleted = run_plugin(bin_dir / "ptp", "DEL", conf, netns="", container_id="cntp-gone",
                                     cni_args=STATIC_ARGS[0], in_netns=host)
            assert deleted.rc == 0, (suite, deleted)
            leftovers[suite] = [line for line in node_state(host)["nat"] if "CNI-" in line]
        finally:
            netns_pool.remove(host)
    assert leftovers["ours"] == []
    assert len(leftovers["go"]) == 8, leftovers["go"]  # documents the bug fixed here


def test_a_failed_add_leaves_nothing(cnitool, host_ns, make_container_ns):
    """Static with no gateway: upstream finds it in the kernel after making the veth ("numerical result out of
    range") and leaves the veth and a route until DEL; ours refuses before the node changes."""
    cnitool.write_conflist(conflist({"type": "static", "addresses": [{"address": "10.79.0.5/24"}]}, ipMasq=True))
    ctr = make_container_ns()
    before_host, before_ctr = node_state(host_ns), container_state(ctr)
    add = cnitool.add(NET, ctr, container_id="cntp-fail")
    assert add.rc != 0 and "gateway" in add.out["msg"], add
    assert node_state(host_ns) == before_host and container_state(ctr) == before_ctr


def test_gc_and_status(plugin_dir, host_ns, make_container_ns, tmp_path):
    """Spec 1.1.0 (beyond Go v1.1.1, which speaks up to 1.0.0): STATUS is IPAM's; GC removes the masquerading of
    attachments the runtime no longer lists and forwards GC to IPAM, which frees their leases."""
    conf = {"cniVersion": "1.1.0", "name": NET, "type": "ptp", "ipMasq": True,
            "ipam": host_local_ipam(tmp_path / "ipam")}
    ctrs = {cid: make_container_ns() for cid in ("cntp-gc-keep", "cntp-gc-gone")}
    for cid, ctr in ctrs.items():
        added = run_plugin(plugin_dir / "ptp", "ADD", conf, netns=ctr, container_id=cid, in_netns=host_ns)
        assert added.rc == 0, added
    assert run_plugin(plugin_dir / "ptp", "STATUS", conf, in_netns=host_ns).rc == 0
    valid = [{"containerID": "cntp-gc-keep", "ifname": "eth0"}]
    gc = run_plugin(plugin_dir / "ptp", "GC", dict(conf, **{"cni.dev/valid-attachments": valid}), in_netns=host_ns)
    assert gc.rc == 0, gc
    nat = "\n".join(node_state(host_ns)["nat"])
    assert 'id: \\"cntp-gc-keep\\"' in nat and "cntp-gc-gone" not in nat
    leases = {p.read_text().split()[0] for p in (tmp_path / "ipam" / NET).glob("10.*")}
    assert leases == {"cntp-gc-keep"}
    for cid, ctr in ctrs.items():
        assert run_plugin(plugin_dir / "ptp", "DEL", conf, netns=ctr, container_id=cid, in_netns=host_ns).rc == 0
    assert [line for line in node_state(host_ns)["nat"] if "CNI-" in line] == []


def test_check_sees_the_host_end(cnitool, go_cnitool, host_ns, make_container_ns):
    """Upstream's CHECK stops at the container; a node that lost the host route (or the gateway) still passes it.
    Ours checks the host end too."""
    checks = {}
    for suite, tool in (("ours", cnitool), ("go", go_cnitool)):
        tool.write_conflist(conflist(static_ipam()))
        ctr = make_container_ns()
        assert tool.add(NET, ctr, container_id=f"cntp-chk-{suite}", cni_args=STATIC_ARGS[0]).rc == 0
        before = tool.check(NET, ctr, container_id=f"cntp-chk-{suite}", cni_args=STATIC_ARGS[0]).rc
        host_ns.ip("route", "del", "10.79.0.5/32")
        after = tool.check(NET, ctr, container_id=f"cntp-chk-{suite}", cni_args=STATIC_ARGS[0])
        checks[suite] = (before, after.rc)
        if suite == "ours":
            assert "no host route to 10.79.0.5" in after.out["msg"], after
        assert tool.delete(NET, ctr, container_id=f"cntp-chk-{suite}", cni_args=STATIC_ARGS[0]).rc == 0
    assert checks == {"ours": (0, 1), "go": (0, 0)}
