"""vrf in the kernel lane (this machine's kernel has no vrf), chained after bridge through libcni, ours beside Go's
v1.1.1: the same VRF and enslaved interface after ADD, CHECK of the whole chain, nothing left after DEL, a second
DEL fine; ours also moves the routes into the VRF's table (Go v1.1.1 loses them, #866), so traffic leaves
through the VRF, and its DEL succeeds when the interface went first (Go's fails: `resetMaster`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e_meta.test_conf_examples import load as load_example
from tests.helpers import kernel_lane
from tests.helpers.paths import REPO


def _chain(name: str, bridge: str, subnet: str, vrf: dict[str, Any]) -> dict[str, Any]:
    ipam = {"type": "host-local", "dataDir": f"/run/cnt-ipam-{name}", "ranges": [[{"subnet": subnet}]],
            "routes": [{"dst": "0.0.0.0/0"}]}
    return {"cniVersion": "1.0.0", "name": name, "plugins": [
        {"type": "bridge", "bridge": bridge, "isGateway": True, "ipam": ipam},
        {"type": "vrf", **vrf},
    ]}


VRF = """
for label in ours go; do
    [ $label = go ] && CNI_PATH=$GO
    mkns cnt-$label
    fact add-$label cni add cntl-vrf-$label cnt-$label
    fact vrf-$label inns cnt-$label ip -j -d link show dev cntblue
    fact eth0-$label inns cnt-$label ip -j -d link show dev eth0
    fact vrfroutes-$label inns cnt-$label ip -j route show vrf cntblue
    fact main-$label inns cnt-$label ip -j route show table main
    fact ping-$label inns cnt-$label ping -c1 -W2 -I cntblue 10.67.0.1
    fact check-$label cni check cntl-vrf-$label cnt-$label
    fact del-$label cni del cntl-vrf-$label cnt-$label
    fact left-$label inns cnt-$label ip -j link show
    fact del2-$label cni del cntl-vrf-$label cnt-$label
    CNI_PATH=$OURS
done
# two interfaces in one VRF: the VRF stays until the last one leaves
mkns cnt-two
fact two-add1 cni add cntl-vrf-two1 cnt-two net1
fact two-add2 cni add cntl-vrf-two2 cnt-two net2
fact two-del1 cni del cntl-vrf-two1 cnt-two net1
fact two-vrf-after1 inns cnt-two ip -j link show dev cntblue
fact two-del2 cni del cntl-vrf-two2 cnt-two net2
fact two-left inns cnt-two ip -j link show
# a given table
mkns cnt-tbl
fact tbl-add cni add cntl-vrf-table cnt-tbl
fact tbl-vrf inns cnt-tbl ip -j -d link show dev cntred
fact tbl-routes inns cnt-tbl ip -j route show table 4242
fact tbl-del cni del cntl-vrf-table cnt-tbl
# the interface gone before DEL (the runtime or another plugin removed it)
for label in ours go; do
    [ $label = go ] && CNI_PATH=$GO
    mkns cnt-gone-$label
    fact gone-add-$label cni add cntl-vrf-$label cnt-gone-$label
    ip -n cnt-gone-$label link del eth0
    fact gone-del-$label cni del cntl-vrf-$label cnt-gone-$label
    CNI_PATH=$OURS
done
# vrfname names a link that is no VRF
mkns cnt-clash
ip -n cnt-clash link add cntblue type dummy
fact clash-add cni add cntl-vrf-ours cnt-clash
fact clash-left inns cnt-clash ip -j link show dev eth0
# a failed ADD (eth0 is a bridge port already): the VRF it made goes again
mkns cnt-fail
ip -n cnt-fail link add eth0 type dummy
ip -n cnt-fail link add cntx type bridge
ip -n cnt-fail link set eth0 master cntx
vrfadd() {
    printf '%s' '{"cniVersion":"1.0.0","name":"cntl-vf","type":"vrf","vrfname":"cntgreen","prevResult":
{"cniVersion":"1.0.0","interfaces":[{"name":"eth0"}],"ips":[]}}' |
    ip netns exec $HOST env CNI_COMMAND=ADD CNI_CONTAINERID=cntvf CNI_NETNS=/run/netns/cnt-fail CNI_IFNAME=eth0 \
        CNI_PATH=$OURS "$OURS/vrf"
}
fact fail-add vrfadd
fact fail-green inns cnt-fail ip -j link show dev cntgreen
fact fail-eth0 inns cnt-fail ip -j link show dev eth0
# conf-examples/72-macvlan-vrf.conflist as it is (but its leases): macvlan on the default route's link, VRF blue
mkmaster $HOST cntmst0 10.59.0.1/24
mkns cnt-ex
fact ex-add cni add macvlan-vrf-net cnt-ex net1
fact ex-link inns cnt-ex ip -j -d link show dev net1
fact ex-routes inns cnt-ex ip -j route show vrf blue
fact ex-check cni check macvlan-vrf-net cnt-ex net1
fact ex-del cni del macvlan-vrf-net cnt-ex net1
fact ex-left inns cnt-ex ip -j link show
"""


@pytest.fixture(scope="module")
def lane(lane_batch) -> dict[str, kernel_lane.CaseResult]:
    batch = lane_batch()
    blue = {"vrfname": "cntblue"}
    batch.case("vrf", VRF, conflists=[
        _chain("cntl-vrf-ours", "cntbr0", "10.67.0.0/24", blue),
        _chain("cntl-vrf-go", "cntbr0", "10.67.0.0/24", blue),
        _chain("cntl-vrf-two1", "cntbr1", "10.68.0.0/24", blue),
        _chain("cntl-vrf-two2", "cntbr2", "10.69.0.0/24", blue),
        _chain("cntl-vrf-table", "cntbr3", "10.70.0.0/24", {"vrfname": "cntred", "table": 4242}),
        load_example(REPO / "conf-examples" / "72-macvlan-vrf.conflist", Path("/run/cnt-ipam-example")),
    ])
    return batch.run()


def _link(case: kernel_lane.CaseResult, fact: str) -> dict[str, Any]:
    return case.fact(fact).json()[0]


def _routes(case: kernel_lane.CaseResult, fact: str) -> list[tuple[Any, Any]]:
    return sorted((r["dst"], r.get("gateway")) for r in case.fact(fact).json() or [])


def test_vrf_matches_go_and_ours_moves_the_routes(lane):
    case = lane["vrf"]
    assert case.rc == 0, case
    facts = {}
    for label in ("ours", "go"):
        for step in ("add", "del", "del2"):
            assert case.fact(f"{step}-{label}").rc == 0, (step, label, case.fact(f"{step}-{label}"))
        vrf, eth0 = _link(case, f"vrf-{label}"), _link(case, f"eth0-{label}")
        facts[label] = {"kind": vrf["linkinfo"]["info_kind"], "table": vrf["linkinfo"]["info_data"]["table"],
                        "up": "UP" in vrf["flags"], "eth0_master": eth0.get("master"),
                        "slave_kind": eth0["linkinfo"].get("info_slave_kind")}
        assert [lk["ifname"] for lk in case.fact(f"left-{label}").json()] == ["lo"], label
        # the prevResult passes through: the same result as the bridge's
        assert case.fact(f"add-{label}").json()["interfaces"][2]["name"] == "eth0"
    assert facts["ours"] == facts["go"] == {"kind": "vrf", "table": 1, "up": True, "eth0_master": "cntblue",
                                            "slave_kind": "vrf"}
    assert ("default", "10.67.0.1") in _routes(case, "vrfroutes-ours")
    assert ("default", "10.67.0.1") not in _routes(case, "vrfroutes-go"), "v1.1.1 drops the IPAM routes (#866)"
    assert _routes(case, "main-ours") == []
    assert case.fact("ping-ours").rc == 0, "traffic leaves through the VRF's table"


def test_check_of_the_chain(lane):
    """Ours: bridge's CHECK finds the routes vrf moved, and vrf's CHECK finds eth0 in the VRF."""
    case = lane["vrf"]
    assert case.fact("check-ours").rc == 0, case.fact("check-ours")


def test_two_interfaces_share_one_vrf(lane):
    case = lane["vrf"]
    for step in ("two-add1", "two-add2", "two-del1", "two-del2"):
        assert case.fact(step).rc == 0, (step, case.fact(step))
    assert case.fact("two-vrf-after1").rc == 0, "the VRF stays while net2 is in it"
    assert [lk["ifname"] for lk in case.fact("two-left").json()] == ["lo"]


def test_given_table(lane):
    case = lane["vrf"]
    assert case.fact("tbl-add").rc == 0, case.fact("tbl-add")
    assert _link(case, "tbl-vrf")["linkinfo"]["info_data"]["table"] == 4242
    assert ("default", "10.70.0.1") in _routes(case, "tbl-routes")
    assert case.fact("tbl-del").rc == 0


def test_del_after_the_interface_is_gone(lane):
    case = lane["vrf"]
    assert case.fact("gone-add-ours").rc == 0 and case.fact("gone-add-go").rc == 0
    assert case.fact("gone-del-ours").rc == 0, case.fact("gone-del-ours")
    assert case.fact("gone-del-go").rc == 1


def test_vrfname_of_another_kind_is_refused(lane):
    case = lane["vrf"]
    refused = case.fact("clash-add")
    assert refused.rc == 1 and "Netlink cntblue is not a VRF" in refused.json()["msg"], refused
    assert "master" not in _link(case, "clash-left"), "eth0 (the bridge's) is left as the bridge made it"


def test_conf_example_72(lane):
    case = lane["vrf"]
    for step in ("ex-add", "ex-check", "ex-del"):
        assert case.fact(step).rc == 0, (step, case.fact(step))
    link = _link(case, "ex-link")
    assert (link["linkinfo"]["info_kind"], link.get("master")) == ("macvlan", "blue")
    assert ("default", "10.42.0.1") in _routes(case, "ex-routes")
    assert [lk["ifname"] for lk in case.fact("ex-left").json()] == ["lo"], "the VRF went with its last port"


def test_failed_add_removes_the_vrf_it_made(lane):
    case = lane["vrf"]
    refused = case.fact("fail-add")
    assert refused.rc == 1 and "interface eth0 has already a master set: cntx" in refused.json()["msg"], refused
    assert case.fact("fail-green").rc != 0, "the VRF this ADD made is gone"
    assert _link(case, "fail-eth0")["master"] == "cntx"
