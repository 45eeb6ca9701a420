"""loopback and static through libcni, side by side with the Go v1.1.1 binaries (/usr/lib/cni), and the upstream
faults each answers correctly: loopback's DEL that set the node's own ``lo`` down, static's ``GATEWAY`` ignored
for configured addresses.

static runs here as the network's only plugin (libcni prints an IPAM result as any other), so its results are
compared as they are; tests/netns/test_ptp_parity.py runs it as ptp's IPAM with traffic.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import net
from tests.helpers.netns import Netns
from tests.helpers.plugin import run_plugin


def lo_state(ns: Netns) -> tuple[bool, list[str]]:
    lo = net.link(ns, "lo")
    assert lo is not None
    return "UP" in lo["flags"], sorted(net.ip_addresses(ns, "lo", scope="host"))


def loopback_suite(tool, ctr: Netns) -> dict[str, Any]:
    tool.write_conflist({"cniVersion": "1.0.0", "name": "cntlo", "plugins": [{"type": "loopback"}]})
    snap: dict[str, Any] = {"before": lo_state(ctr)}
    add = tool.add("cntlo", ctr, container_id="cntlo-a")
    assert add.rc == 0, add
    snap["result"] = dict(add.out, interfaces=[dict(i, sandbox="<netns>") for i in add.out["interfaces"]])
    snap["after_add"] = lo_state(ctr)
    snap["check"] = tool.check("cntlo", ctr, container_id="cntlo-a").rc
    snap["del"] = tool.delete("cntlo", ctr, container_id="cntlo-a").rc
    snap["after_del"] = lo_state(ctr)
    snap["second_del"] = tool.delete("cntlo", ctr, container_id="cntlo-a").rc
    return snap


def test_loopback_same_result_and_lo_as_go(cnitool, go_cnitool, make_container_ns):
    ours = loopback_suite(cnitool, make_container_ns())
    go = loopback_suite(go_cnitool, make_container_ns())
    assert ours == go
    assert ours["after_add"] == (True, ["127.0.0.1/8", "::1/128"]) and ours["after_del"][0] is False
    assert [ip["address"] for ip in ours["result"]["ips"]] == ["127.0.0.1/8", "::1/128"]


def test_loopback_answers_old_spec_versions_in_their_own_shape(plugin_dir, host_ns, make_container_ns):
    """Upstream prints a 1.0 body labelled 0.2.0; a 0.2.0 reader wants ``ip4``/``ip6``."""
    conf = {"cniVersion": "0.2.0", "name": "cntlo", "type": "loopback"}
    got = run_plugin(plugin_dir / "loopback", "ADD", conf, netns=make_container_ns(), in_netns=host_ns)
    assert got.rc == 0 and got.out["ip4"] == {"ip": "127.0.0.1/8"} and got.out["ip6"] == {"ip": "::1/128"}, got
    assert "interfaces" not in got.out


@pytest.mark.parametrize("verb", ["ADD", "DEL"])
def test_loopback_never_touches_its_own_namespaces_lo(verb, plugin_dir, go_plugin_dir, netns_pool):
    """kubernetes#100648, plugins#714: a stale /proc/<pid>/ns/net path may name the node's own namespace. The skel
    refuses that (code 8) unless CNI_NETNS_OVERRIDE is set; with it, upstream's DEL set the node's lo down.
    Ours leaves it alone, with or without the override: ADD is refused, DEL (with the override) succeeds having
    done nothing, as OpenShift's and CRI-O's loopback do."""
    conf = {"cniVersion": "1.0.0", "name": "cntlo", "type": "loopback"}
    for override in (None, "1"):
        node = netns_pool.create("node", lo_up=True)
        try:
            got = run_plugin(plugin_dir / "loopback", verb, conf, netns=node, in_netns=node,
                             env={"CNI_NETNS_OVERRIDE": override})
            if verb == "DEL" and override:
                assert got.rc == 0 and "lo left alone" in got.stderr, got
            else:
                assert got.rc == 1 and got.out["code"] == 8, got
            assert lo_state(node)[0] is True
        finally:
            netns_pool.remove(node)
    node = netns_pool.create("node", lo_up=True)
    try:
        go = run_plugin(go_plugin_dir / "loopback", "DEL", conf, netns=node, in_netns=node,
                        env={"CNI_NETNS_OVERRIDE": "1"})
        assert go.rc == 0 and lo_state(node)[0] is False  # the upstream fault, for the record
    finally:
        netns_pool.remove(node)


STATIC = {"type": "static", "addresses": [{"address": "10.81.0.5/24", "gateway": "10.81.0.1"},
                                          {"address": "3ffe:ffff:0:01ff::1/64", "gateway": "3ffe:ffff:0:1ff::ff"}],
          "routes": [{"dst": "0.0.0.0/0"}, {"dst": "192.168.0.0/16", "gw": "10.81.0.254"}, {"dst": "::/0"}],
          "dns": {"nameservers": ["10.81.0.53"], "domain": "example.test", "search": ["svc.test"],
                  "options": ["ndots:2"]}}
PLUGIN = {"type": "static", "ipam": STATIC}
STATIC_CASES: dict[str, tuple[dict[str, Any], dict[str, Any], str]] = {
    # name: (plugin config, CAP_ARGS, CNI_ARGS)
    "config": (PLUGIN, {}, ""),
    "cni-args-ip-gateway": ({"type": "static", "ipam": {"type": "static"}}, {},
                            "IP=10.81.1.5/24,fd81::5/64;GATEWAY=10.81.1.1,fd81::1"),
    "config-plus-cni-args": (PLUGIN, {}, "IP=10.81.1.5/24"),
    "args-cni-ips-replace": (dict(PLUGIN, args={"cni": {"ips": ["10.81.2.5/24"]}}), {}, "IP=10.81.1.5/24"),
    "runtimeConfig-ips-replace": (dict(PLUGIN, capabilities={"ips": True}), {"ips": ["10.81.3.5/24", "fd81::3/64"]},
                                  ""),
}


def static_suite(tool, ctr: Netns) -> dict[str, Any]:
    snap = {}
    for name, (plugin, cap_args, cni_args) in STATIC_CASES.items():
        tool.write_conflist({"cniVersion": "1.0.0", "name": "cntst", "plugins": [plugin]})
        add = tool.add("cntst", ctr, container_id="cntst-a", cni_args=cni_args or None, cap_args=cap_args or None)
        check = tool.check("cntst", ctr, container_id="cntst-a", cni_args=cni_args or None,
                           cap_args=cap_args or None)
        first = tool.delete("cntst", ctr, container_id="cntst-a", cni_args=cni_args or None, cap_args=cap_args or None)
        second = tool.delete("cntst", ctr, container_id="cntst-a", cni_args=cni_args or None,
                             cap_args=cap_args or None)
        snap[name] = (add.rc, add.out, check.rc, first.rc, second.rc)
    return snap


def test_static_same_results_as_go(cnitool, go_cnitool, make_container_ns):
    ctr = make_container_ns()
    ours, go = static_suite(cnitool, ctr), static_suite(go_cnitool, ctr)
    for name in STATIC_CASES:
        assert ours[name] == go[name], f"{name}:\nours {ours[name]}\ngo   {go[name]}"
        assert ours[name][0] == 0 and ours[name][2:] == (0, 0, 0), (name, ours[name])
    assert ours["config"][1]["ips"][1]["address"] == "3ffe:ffff:0:1ff::1/64"  # canonical, host bits kept


def test_static_honours_cni_args_gateway_for_configured_addresses(cnitool, go_cnitool, make_container_ns):
    """Upstream applies GATEWAY only to CNI_ARGS addresses (the configured ones are not parsed yet), so it is lost
    for a configured address: ptp on such a config then fails. Ours sets it for every address of its subnet."""
    plugin = {"type": "static", "ipam": {"type": "static", "addresses": [{"address": "10.81.4.5/24"}]}}
    ctr = make_container_ns()
    gateways = {}
    for suite, tool in (("ours", cnitool), ("go", go_cnitool)):
        tool.write_conflist({"cniVersion": "1.0.0", "name": "cntst", "plugins": [plugin]})
        add = tool.add("cntst", ctr, container_id="cntst-gw", cni_args="GATEWAY=10.81.4.1")
        assert add.rc == 0, add
        gateways[suite] = [ip.get("gateway") for ip in add.out["ips"]]
        assert tool.delete("cntst", ctr, container_id="cntst-gw", cni_args="GATEWAY=10.81.4.1").rc == 0
    assert gateways == {"ours": ["10.81.4.1"], "go": [None]}


def test_loopback_refuses_a_foreign_address_on_lo_before_changing_it(plugin_dir, go_plugin_dir, host_ns,
                                                                     make_container_ns):
    """Upstream refuses it too, but after it set lo up."""
    conf = {"cniVersion": "1.0.0", "name": "cntlo", "type": "loopback"}
    states = {}
    for suite, bin_dir in (("ours", plugin_dir), ("go", go_plugin_dir)):
        ctr = make_container_ns()
        ctr.ip("addr", "add", "10.9.9.9/32", "dev", "lo")
        got = run_plugin(bin_dir / "loopback", "ADD", conf, netns=ctr, in_netns=host_ns)
        assert got.rc == 1 and "non-loopback address" in got.out["msg"] and "10.9.9.9" in got.out["msg"], got
        states[suite] = lo_state(ctr)[0]
    assert states == {"ours": False, "go": True}
