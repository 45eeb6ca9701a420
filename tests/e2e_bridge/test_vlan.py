"""VLANs on one bridge: containers on the same `vlan` talk, containers on different ones cannot.

Needs bridge VLAN filtering in the kernel; without it (EOPNOTSUPP) the tests skip with that reason: a
kernel limit, not a broken machine, so they skip under CI=true as well.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e_bridge import lab
from tests.e2e_bridge.conftest import bridge_vlan_unsupported
from tests.helpers import net

SUBNET = "10.86.0.0/24"


def _vlan_net(name: str, vlan: int, first: int, data_dir: Path) -> dict:
    """One network per VLAN, one shared subnet (disjoint ranges), so only the VLAN can keep them apart."""
    ipam = {"type": "host-local", "dataDir": str(data_dir),
            "ranges": [[{"subnet": SUBNET, "rangeStart": f"10.86.0.{first}", "rangeEnd": f"10.86.0.{first + 9}"}]]}
    return lab.bridge_conflist(name, "cnte8", data_dir, vlan=vlan, ipam=ipam)


def _port_vlans(host, port: str) -> list[dict]:
    out = host.run(["bridge", "-j", "vlan", "show", "dev", port]).stdout
    entries = json.loads(out or "[]")
    return entries[0]["vlans"] if entries else []


def test_containers_on_different_vlans_are_apart(needs_vlan_filtering, cnitool, host_ns, make_container_ns,
                                                 tmp_path: Path):
    nets = {10: _vlan_net("cnte-vlan10", 10, 10, tmp_path / "ipam"),
            20: _vlan_net("cnte-vlan20", 20, 20, tmp_path / "ipam")}
    for conf in nets.values():
        cnitool.write_conflist(conf)
    placed = []  # (vlan, netns, ip)
    for vlan in (10, 10, 20):
        ctr = make_container_ns()
        add = cnitool.add(nets[vlan]["name"], ctr)
        assert add.rc == 0, add
        port = add.out["interfaces"][1]["name"]
        assert [(v["vlan"], "PVID" in v.get("flags", []), "Egress Untagged" in v.get("flags", []))
                for v in _port_vlans(host_ns, port)] == [(vlan, True, True)]
        placed.append((vlan, ctr, lab.result_ips(add.out)[0]))
    assert net.link(host_ns, "cnte8")["linkinfo"]["info_data"]["vlan_filtering"] == 1
    (_, a1, _), (_, _, a2_ip), (_, _, b1_ip) = placed
    assert net.ping(a1, a2_ip)  # same VLAN
    assert not net.ping(a1, b1_ip)  # other VLAN, same subnet: no way through
    for vlan, ctr, _ in placed:
        assert cnitool.delete(nets[vlan]["name"], ctr).rc == 0


def test_trunk_port_carries_the_listed_vids(needs_vlan_filtering, cnitool, host_ns, make_container_ns,
                                            tmp_path: Path):
    conf = lab.bridge_conflist("cnte-trunk", "cnte8", tmp_path / "ipam", ipam={},
                               vlanTrunk=[{"id": 101}, {"minID": 200, "maxID": 202}])
    cnitool.write_conflist(conf)
    ctr = make_container_ns()
    add = cnitool.add("cnte-trunk", ctr)
    assert add.rc == 0, add
    vlans = {v["vlan"]: v.get("flags", []) for v in _port_vlans(host_ns, add.out["interfaces"][1]["name"])}
    assert sorted(vlans) == [1, 101, 200, 201, 202]
    assert "PVID" in vlans[1]  # native VLAN 1 when no access vlan is given
    assert cnitool.delete("cnte-trunk", ctr).rc == 0


def test_without_vlan_filtering_a_vlan_add_fails_cleanly(cnitool, host_ns, make_container_ns, tmp_path: Path):
    """The other side of the kernel limit: a clear error and nothing left behind (runs only on such kernels)."""
    if not bridge_vlan_unsupported():
        pytest.skip("this kernel has bridge VLAN filtering: covered by the tests above")
    conf = _vlan_net("cnte-vlan10", 10, 10, tmp_path / "ipam")
    cnitool.write_conflist(conf)
    ctr = make_container_ns()
    add = cnitool.add("cnte-vlan10", ctr)
    assert add.rc == 1 and "Operation not supported" in add.out["error"], add
    assert lab.veths(host_ns) == [] and [lk["ifname"] for lk in net.links(ctr)] == ["lo"]
    assert lab.leases(tmp_path / "ipam", "cnte-vlan10") == []
