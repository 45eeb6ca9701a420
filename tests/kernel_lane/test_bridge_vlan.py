"""Bridge VLAN filtering, in the kernel lane (this machine's kernel has none): access VLANs and a trunk, with traffic.

Containers on the same access `vlan` talk, containers on different ones cannot (one shared subnet, so only the
VLAN keeps them apart); a `vlanTrunk` port carries the listed VLANs tagged: a container's `eth0.101` reaches an
access port of VLAN 101. The library's bridge VLAN calls run here too (tests/netns cannot make such a bridge).
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest

from tests.e2e_bridge import lab
from tests.e2e_bridge.test_conf_examples import VLAN_EXAMPLES, load_example
from tests.helpers import kernel_lane

SUBNET = "10.86.0.0/24"
BRIDGE = "cntl8"


def _vlan_net(name: str, vlan: int, first: int) -> dict:
    ipam = {"type": "host-local", "dataDir": "/run/cnt-ipam",
            "ranges": [[{"subnet": SUBNET, "rangeStart": f"10.86.0.{first}", "rangeEnd": f"10.86.0.{first + 9}"}]]}
    return lab.bridge_conflist(name, BRIDGE, None, vlan=vlan, ipam=ipam)  # type: ignore[arg-type]


def _access_net(name: str, vlan: int, subnet: str) -> dict:
    """An access port of `vlan` whose one container gets `<subnet>.10`."""
    first = subnet.replace("0/24", "10")
    ipam = {"type": "host-local", "dataDir": "/run/cnt-ipam", "ranges": [[{"subnet": subnet, "rangeStart": first}]]}
    return lab.bridge_conflist(name, BRIDGE, None, vlan=vlan, ipam=ipam)  # type: ignore[arg-type]


ACCESS = """
for c in a1 a2 b1; do mkns cnt-$c; done
fact add-a1 cni add cntl-vlan10 cnt-a1
fact add-a2 cni add cntl-vlan10 cnt-a2
fact add-b1 cni add cntl-vlan20 cnt-b1
fact vlans inns $HOST bridge -j vlan show
fact bridge inns $HOST ip -j -d link show cntl8
fact ping-same-vlan ping1 cnt-a1 10.86.0.11
fact ping-other-vlan ping1 cnt-a1 10.86.0.20
fact del-a1 cni del cntl-vlan10 cnt-a1
fact del-a2 cni del cntl-vlan10 cnt-a2
fact del-b1 cni del cntl-vlan20 cnt-b1
fact veths-after inns $HOST ip -j link show type veth
"""

TRUNK = """
mkns cnt-t; mkns cnt-acc; mkns cnt-other
fact add-trunk cni add cntl-trunk cnt-t
fact add-acc cni add cntl-acc101 cnt-acc
fact add-other cni add cntl-acc300 cnt-other
fact vlans inns $HOST bridge -j vlan show
inns cnt-t ip link set eth0 up
tagged() {  # tagged VID ADDR: a VLAN link on the trunk container's eth0
    inns cnt-t ip link add link eth0 name eth0.$1 type vlan id $1
    inns cnt-t ip addr add $2 dev eth0.$1
    inns cnt-t ip link set eth0.$1 up
}
tagged 101 10.86.11.50/24
tagged 300 10.86.30.50/24
fact ping-tagged-101 ping1 cnt-t 10.86.11.10
fact ping-untrunked-300 ping1 cnt-t 10.86.30.10
fact del-trunk cni del cntl-trunk cnt-t
fact del-acc cni del cntl-acc101 cnt-acc
fact del-other cni del cntl-acc300 cnt-other
"""

EXAMPLE = """
mkns cnt-e1; mkns cnt-e2
for c in e1 e2; do fact add-$c cni add "$NET" cnt-$c; done
fact ping-gateway ping1 cnt-e1 "$GATEWAY"
fact ping-peer ping1 cnt-e1 "$PEER"
fact masq inns $HOST iptables -t nat -S
for c in e1 e2; do fact check-$c cni check "$NET" cnt-$c; fact del-$c cni del "$NET" cnt-$c; done
fact masq-after inns $HOST iptables -t nat -S
fact leases ls /run/cnt-ipam/"$NET"
"""

LIBRARY = """
mkns cnt-c
fact library inns $HOST "$REPO/.venv/bin/python" -c '
import json, sys
sys.path.insert(0, sys.argv[1])
from cni_common import netlink as nl
from cni_common.netns import NetNS
with NetNS("/run/netns/cnt-l-host") as h, NetNS("/run/netns/cnt-c") as c, \\
        nl.open_conn(h) as host, nl.open_conn(c) as ctr:
    br = nl.ensure_bridge(host, "cntbr0", vlan_filtering=True)
    host_veth, _ = nl.setup_veth(host, ctr, "eth0")
    nl.set_master(host, host_veth.index, br.index)
    nl.del_bridge_vlan(host, host_veth.index, 1)
    nl.add_bridge_vlan(host, host_veth.index, 100, pvid=True, untagged=True)
    nl.add_bridge_vlan(host, host_veth.index, 200)
    vlans = nl.list_bridge_vlans(host, host_veth.index)
print(json.dumps([[v.vid, v.pvid, v.untagged] for v in vlans]))
' "$REPO"
fact bridge inns $HOST ip -j -d link show cntbr0
"""


@pytest.fixture(scope="module")
def lane(lane_batch) -> dict[str, kernel_lane.CaseResult]:
    batch = lane_batch()
    batch.case("access", ACCESS, conflists=[_vlan_net("cntl-vlan10", 10, 10), _vlan_net("cntl-vlan20", 20, 20)])
    batch.case("trunk", TRUNK, conflists=[
        lab.bridge_conflist("cntl-trunk", BRIDGE, None, ipam={},  # type: ignore[arg-type]
                            vlanTrunk=[{"id": 101}, {"minID": 200, "maxID": 202}]),
        _access_net("cntl-acc101", 101, "10.86.11.0/24"),
        _access_net("cntl-acc300", 300, "10.86.30.0/24"),  # VLAN 300 is not on the trunk: its frames stay out
    ])
    for path in VLAN_EXAMPLES:
        conf = load_example(path, Path("/run/cnt-ipam"))
        subnet = ipaddress.ip_network(conf["plugins"][0]["ipam"]["ranges"][0][0]["subnet"])
        # host-local hands out .2 then .3; the gateway is .1
        variables = f"NET={conf['name']} GATEWAY={subnet[1]} PEER={subnet[3]}"
        batch.case(f"example-{path.name}", f"{variables}\n{EXAMPLE}", conflists=[conf])
    batch.case("library", LIBRARY)
    return batch.run()


def _vlans(case: kernel_lane.CaseResult, add: str) -> list[tuple[int, bool, bool]]:
    """The VLANs of the bridge port of the container that the ADD fact `add` attached."""
    port = case.fact(add).json()["interfaces"][1]["name"]
    vlans = next(e["vlans"] for e in case.fact("vlans").json() if e["ifname"] == port)
    return [(v["vlan"], "PVID" in v.get("flags", []), "Egress Untagged" in v.get("flags", [])) for v in vlans]


def test_containers_on_different_vlans_are_apart(lane):
    case = lane["access"]
    assert case.rc == 0, case
    for c in ("a1", "a2", "b1"):
        assert case.fact(f"add-{c}").rc == 0, case.fact(f"add-{c}")
    assert _vlans(case, "add-a1") == _vlans(case, "add-a2") == [(10, True, True)]
    assert _vlans(case, "add-b1") == [(20, True, True)]
    assert [lab.result_ips(case.fact(f"add-{c}").json()) for c in ("a2", "b1")] == [["10.86.0.11"], ["10.86.0.20"]]
    assert case.fact("bridge").json()[0]["linkinfo"]["info_data"]["vlan_filtering"] == 1
    assert case.fact("ping-same-vlan").rc == 0, "same VLAN must talk"
    assert case.fact("ping-other-vlan").rc != 0, "other VLAN, same subnet: no way through"
    for c in ("a1", "a2", "b1"):
        assert case.fact(f"del-{c}").rc == 0, case.fact(f"del-{c}")
    assert case.fact("veths-after").json() in (None, [])


def test_trunk_port_carries_the_listed_vids_tagged(lane):
    case = lane["trunk"]
    assert case.rc == 0, case
    for step in ("add-trunk", "add-acc", "add-other"):
        assert case.fact(step).rc == 0, case.fact(step)
    vlans = {v: (pvid, untagged) for v, pvid, untagged in _vlans(case, "add-trunk")}
    assert sorted(vlans) == [1, 101, 200, 201, 202]
    assert vlans[1] == (True, True)  # native VLAN 1 when no access vlan is given
    assert vlans[101] == (False, False)  # tagged
    assert case.fact("ping-tagged-101").rc == 0, "a tagged frame of a trunked VLAN reaches its access port"
    assert case.fact("ping-untrunked-300").rc != 0, "VLAN 300 is not on the trunk"
    for step in ("del-trunk", "del-acc", "del-other"):
        assert case.fact(step).rc == 0, case.fact(step)


def test_library_bridge_vlan_calls(lane):
    case = lane["library"]
    fact = case.fact("library")
    assert fact.rc == 0, fact
    assert json.loads(fact.out) == [[100, True, True], [200, False, False]]
    assert case.fact("bridge").json()[0]["linkinfo"]["info_data"]["vlan_filtering"] == 1


@pytest.mark.parametrize("path", VLAN_EXAMPLES, ids=lambda p: p.name)
def test_vlan_conf_example_two_containers(lane, path: Path):
    """As tests/e2e_bridge/test_conf_examples.py does for the other examples: gateway, peer, masquerade, CHECK,
    DEL leaving no lease and no rule."""
    case = lane[f"example-{path.name}"]
    name = json.loads(path.read_text())["name"]
    for step in ("add-e1", "add-e2", "ping-gateway", "ping-peer", "check-e1", "del-e1", "check-e2", "del-e2"):
        assert case.fact(step).rc == 0, (step, case.fact(step))
    assert f'name: \\"{name}\\"' in case.fact("masq").out
    assert name not in case.fact("masq-after").out
    assert [f for f in case.fact("leases").out.split() if f[0].isdigit()] == []
