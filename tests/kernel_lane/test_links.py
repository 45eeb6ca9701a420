"""dummy, ipvlan and vlan in the kernel lane (this machine's kernel has none of these link kinds), through libcni,
ours beside Go's v1.1.1 where it has the plugin (ipvlan, vlan; not dummy): the same link and result after ADD,
CHECK, nothing left after DEL, a second DEL fine, traffic, and where ours does better than Go's.

A plugin call costs ~2 s under TCG: DEL runs in the lifecycle cases only (the VM is thrown away after the batch).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.e2e_links.links import result_shape
from tests.helpers import kernel_lane


def _net(name: str, plugin: dict[str, Any], subnet: str, first: str = "") -> dict[str, Any]:
    rng: dict[str, str] = {"subnet": subnet}
    if first:
        rng["rangeStart"] = first
    ipam = {"type": "host-local", "dataDir": f"/run/cnt-ipam-{name}", "ranges": [[rng]]}
    return {"cniVersion": "1.0.0", "name": name, "plugins": [{**plugin, "ipam": ipam}]}


DUMMY = """
mkns cnt-d; mkns cnt-d2
ip -n $HOST link add eth0 type veth peer name cnthosteth0   # a host link named like CNI_IFNAME (#1205)
lifecycle ours cntl-dummy cnt-d
fact leases-ours ls /run/cnt-ipam-cntl-dummy/cntl-dummy
fact no-ipam cni add cntl-dummy-noipam cnt-d2
fact left-no-ipam inns cnt-d2 ip -j link show
"""

IPVLAN = """
mkmaster $HOST cntmst0 10.59.0.1/24
fact master inns $HOST ip -j link show dev cntmst0
for label in ours go; do mkns cnt-$label; done
lifecycle ours cntl-ipv-ours cnt-ours
CNI_PATH=$GO; lifecycle go cntl-ipv-go cnt-go; CNI_PATH=$OURS
for label in ours go; do fact leases-$label ls /run/cnt-ipam-cntl-ipv-$label/cntl-ipv-$label; done
# l3 and l3s
for mode in l3 l3s; do
    mkns cnt-$mode
    fact add-$mode cni add cntl-ipv-$mode cnt-$mode
    fact link-$mode inns cnt-$mode ip -j -d link show dev eth0
done
# two children of one master talk (l2)
mkns cnt-a; mkns cnt-b
fact add-a cni add cntl-ipv-pair cnt-a
fact add-b cni add cntl-ipv-pair cnt-b
fact ping-pair ping1 cnt-a 10.64.0.11
# master omitted (the default route's link): ours CHECKs it, Go's CHECK looks up master ""
for label in ours go; do
    [ $label = go ] && CNI_PATH=$GO
    mkns cnt-nm-$label
    fact nm-add-$label cni add cntl-ipv-nomaster-$label cnt-nm-$label
    fact nm-check-$label cni check cntl-ipv-nomaster-$label cnt-nm-$label
    CNI_PATH=$OURS
done
# chained without master and without ipam: the master and the IPs come from the prevResult
mkns cnt-ch
chained() {
    printf '%s' '{"cniVersion":"1.0.0","name":"cntl-ch","type":"ipvlan","prevResult":{"cniVersion":"1.0.0",
"interfaces":[{"name":"cntmst0"}],"ips":[{"address":"10.65.0.5/24","interface":0}]}}' |
    ip netns exec $HOST env CNI_COMMAND=$1 CNI_CONTAINERID=cntch CNI_NETNS=/run/netns/cnt-ch CNI_IFNAME=eth0 \
        CNI_PATH=$OURS "$OURS/ipvlan"
}
fact ch-add chained ADD
fact ch-link inns cnt-ch ip -j -d link show dev eth0
fact ch-addr inns cnt-ch ip -j addr show dev eth0
fact ch-del chained DEL
"""

VLAN = """
mkmaster $HOST cntmst0
fact master inns $HOST ip -j link show dev cntmst0
for label in ours go; do mkns cnt-$label; done
lifecycle ours cntl-vl-ours cnt-ours
CNI_PATH=$GO; lifecycle go cntl-vl-go cnt-go; CNI_PATH=$OURS
for label in ours go; do fact leases-$label ls /run/cnt-ipam-cntl-vl-$label/cntl-vl-$label; done
# traffic: VLAN 100 tagged on the master's wire, answered by a VLAN link on its peer
ip -n $HOST link add link cntmst0p name cntpeer.100 type vlan id 100
ip -n $HOST addr add 10.66.0.1/24 dev cntpeer.100
ip -n $HOST link set cntpeer.100 up
mkns cnt-t
fact add-t cni add cntl-vl-traffic cnt-t
fact ping-tagged ping1 cnt-t 10.66.0.1
# linkInContainer: the master is the container's own
mkns cnt-lic
mkmaster cnt-lic cntinner
fact lic-add cni add cntl-vl-lic cnt-lic
fact lic-link inns cnt-lic ip -j -d link show dev eth0
# the master goes before the pod: ours tears down, Go's DEL looks the master up and fails
for label in ours go; do
    [ $label = go ] && CNI_PATH=$GO
    mkmaster $HOST cntgone
    mkns cnt-g-$label
    fact g-add-$label cni add cntl-vl-gone-$label cnt-g-$label
    ip -n $HOST link del cntgone
    fact g-del-$label cni del cntl-vl-gone-$label cnt-g-$label
    CNI_PATH=$OURS
done
# refused configs leave nothing
for label in ours go; do
    [ $label = go ] && CNI_PATH=$GO
    mkns cnt-bad-$label
    fact bad-id-$label cni add cntl-vl-badid-$label cnt-bad-$label
    fact bad-mtu-$label cni add cntl-vl-badmtu-$label cnt-bad-$label
    fact bad-left-$label inns cnt-bad-$label ip -j link show
    CNI_PATH=$OURS
done
"""


@pytest.fixture(scope="module")
def lane(lane_batch) -> dict[str, kernel_lane.CaseResult]:
    batch = lane_batch()
    batch.case("dummy", DUMMY, conflists=[
        _net("cntl-dummy", {"type": "dummy"}, "10.62.0.0/24"),
        {"cniVersion": "1.0.0", "name": "cntl-dummy-noipam", "plugins": [{"type": "dummy"}]},
    ])
    ipvlan = {"type": "ipvlan", "master": "cntmst0", "mtu": 1400}
    batch.case("ipvlan", IPVLAN, conflists=[
        # one subnet per network: their addresses all sit on children of one master
        _net("cntl-ipv-ours", ipvlan, "10.62.0.0/24"), _net("cntl-ipv-go", ipvlan, "10.63.0.0/24"),
        _net("cntl-ipv-l3", {**ipvlan, "mode": "l3"}, "10.67.0.0/24"),
        _net("cntl-ipv-l3s", {**ipvlan, "mode": "l3s"}, "10.68.0.0/24"),
        _net("cntl-ipv-pair", {"type": "ipvlan", "master": "cntmst0"}, "10.64.0.0/24", "10.64.0.10"),
        _net("cntl-ipv-nomaster-ours", {"type": "ipvlan"}, "10.69.0.0/24"),
        _net("cntl-ipv-nomaster-go", {"type": "ipvlan"}, "10.70.0.0/24"),
    ])
    vlan = {"type": "vlan", "master": "cntmst0", "vlanId": 100, "mtu": 1400}
    batch.case("vlan", VLAN, conflists=[
        _net("cntl-vl-ours", vlan, "10.62.0.0/24"), _net("cntl-vl-go", vlan, "10.63.0.0/24"),
        _net("cntl-vl-traffic", {"type": "vlan", "master": "cntmst0", "vlanId": 100}, "10.66.0.0/24", "10.66.0.10"),
        _net("cntl-vl-lic", {"type": "vlan", "master": "cntinner", "vlanId": 7, "linkInContainer": True},
             "10.67.0.0/24"),
        *(_net(f"cntl-vl-gone-{label}", {"type": "vlan", "master": "cntgone", "vlanId": 9}, f"10.{n}.0.0/24")
          for n, label in ((68, "ours"), (69, "go"))),
        *(_net(f"cntl-vl-badid-{label}", {**vlan, "vlanId": 5000}, "10.70.0.0/24") for label in ("ours", "go")),
        *(_net(f"cntl-vl-badmtu-{label}", {**vlan, "mtu": 9000}, "10.70.0.0/24") for label in ("ours", "go")),
    ])
    return batch.run()


def _link(case: kernel_lane.CaseResult, fact: str) -> dict[str, Any]:
    return case.fact(fact).json()[0]


def _facts(case: kernel_lane.CaseResult, label: str) -> dict[str, Any]:
    """The link and result that ours and Go's must agree on (no MACs, indexes or addresses)."""
    link = _link(case, f"link-{label}")
    info = link["linkinfo"]
    data = {k: v for k, v in info.get("info_data", {}).items() if k not in ("flags",)}
    addrs = case.fact(f"addr-{label}").json()[0]["addr_info"]
    return {"kind": info["info_kind"], "data": data, "mtu": link["mtu"], "up": "UP" in link["flags"],
            "link": link.get("link"), "families": sorted({a["family"] for a in addrs if a.get("scope") == "global"}),
            "result": result_shape(case.fact(f"add-{label}").json())}


def _child_of_master(case: kernel_lane.CaseResult, fact: str) -> bool:
    """The container's link (fact) hangs off the host's cntmst0 (its parent is in another namespace)."""
    link = _link(case, fact)
    return "link_netnsid" in link and link["link_index"] == _link(case, "master")["ifindex"]


def _assert_lifecycle(case: kernel_lane.CaseResult, label: str) -> None:
    """ADD and CHECK succeeded, DEL left only lo and no lease, a second DEL succeeded."""
    for step in ("add", "check", "del", "del2"):
        fact = case.fact(f"{step}-{label}")
        assert fact.rc == 0, (step, label, fact)
    assert [lk["ifname"] for lk in case.fact(f"left-{label}").json()] == ["lo"]
    assert [f for f in case.fact(f"leases-{label}").out.split() if f[0].isdigit()] == []


def test_lane_runs_debians_kernel(lane):
    assert all(case.rc == 0 for case in lane.values()), lane
    assert (lane["dummy"].directory.parents[1] / "kernel-release").read_text().startswith("6.1.")


def test_dummy(lane):
    case = lane["dummy"]
    _assert_lifecycle(case, "ours")
    facts = _facts(case, "ours")
    assert facts["kind"] == "dummy" and facts["up"] and facts["families"] == ["inet"]
    result = case.fact("add-ours").json()
    assert result["interfaces"][0]["name"] == "eth0" and [ip["interface"] for ip in result["ips"]] == [0]
    refused = case.fact("no-ipam")
    assert refused.rc == 1 and "dummy interface requires an IPAM configuration" in refused.json()["msg"]
    assert [lk["ifname"] for lk in case.fact("left-no-ipam").json()] == ["lo"]


def test_ipvlan_matches_go(lane):
    case = lane["ipvlan"]
    for label in ("ours", "go"):
        _assert_lifecycle(case, label)
    ours, go = _facts(case, "ours"), _facts(case, "go")
    assert ours == go
    assert ours["kind"] == "ipvlan" and ours["data"]["mode"] == "l2" and ours["mtu"] == 1400
    assert _child_of_master(case, "link-ours") and _child_of_master(case, "link-go")
    # the ipvlan shares its master's MAC
    assert case.fact("add-ours").json()["interfaces"][0]["mac"] == _link(case, "link-ours")["address"]


@pytest.mark.parametrize("mode", ["l3", "l3s"])
def test_ipvlan_modes(lane, mode: str):
    case = lane["ipvlan"]
    assert case.fact(f"add-{mode}").rc == 0, case.fact(f"add-{mode}")
    assert _link(case, f"link-{mode}")["linkinfo"]["info_data"]["mode"] == mode


def test_two_ipvlan_children_talk(lane):
    case = lane["ipvlan"]
    assert case.fact("add-a").rc == case.fact("add-b").rc == 0
    assert case.fact("ping-pair").rc == 0


def test_ipvlan_check_without_master(lane):
    """Ours defaults the master in CHECK as in ADD; Go's CHECK fails (`failed to lookup master ""`)."""
    case = lane["ipvlan"]
    assert case.fact("nm-add-ours").rc == case.fact("nm-add-go").rc == 0
    assert case.fact("nm-check-ours").rc == 0, case.fact("nm-check-ours")
    assert case.fact("nm-check-go").rc != 0


def test_ipvlan_chained_takes_master_and_ips_from_prev_result(lane):
    case = lane["ipvlan"]
    add = case.fact("ch-add")
    assert add.rc == 0, add
    result = add.json()
    assert [itf["name"] for itf in result["interfaces"]] == ["eth0"]
    assert result["ips"] == [{"address": "10.65.0.5/24", "interface": 0}]
    assert _child_of_master(case, "ch-link")
    assert [a["local"] for a in case.fact("ch-addr").json()[0]["addr_info"] if a["family"] == "inet"] == ["10.65.0.5"]
    assert case.fact("ch-del").rc == 0


def test_vlan_matches_go(lane):
    case = lane["vlan"]
    for label in ("ours", "go"):
        _assert_lifecycle(case, label)
    ours, go = _facts(case, "ours"), _facts(case, "go")
    assert ours == go
    assert ours["kind"] == "vlan" and ours["data"]["id"] == 100 and ours["mtu"] == 1400
    assert _child_of_master(case, "link-ours") and _child_of_master(case, "link-go")


def test_vlan_tagged_traffic(lane):
    case = lane["vlan"]
    assert case.fact("add-t").rc == 0, case.fact("add-t")
    assert case.fact("ping-tagged").rc == 0


def test_vlan_link_in_container(lane):
    case = lane["vlan"]
    assert case.fact("lic-add").rc == 0, case.fact("lic-add")
    link = _link(case, "lic-link")
    assert link["link"] == "cntinner" and link["linkinfo"]["info_data"]["id"] == 7


def test_vlan_del_after_the_master_is_gone(lane):
    case = lane["vlan"]
    assert case.fact("g-add-ours").rc == case.fact("g-add-go").rc == 0
    assert case.fact("g-del-ours").rc == 0, case.fact("g-del-ours")
    assert case.fact("g-del-go").rc != 0  # Go re-reads the master on DEL


def test_vlan_refused_configs_leave_nothing(lane):
    case = lane["vlan"]
    for label in ("ours", "go"):
        assert case.fact(f"bad-id-{label}").rc == 1 and case.fact(f"bad-mtu-{label}").rc == 1
        assert [lk["ifname"] for lk in case.fact(f"bad-left-{label}").json()] == ["lo"]
    assert json.loads(case.fact("bad-id-ours").out)["code"] == 7
    assert "invalid MTU 9000" in case.fact("bad-mtu-ours").json()["msg"]
