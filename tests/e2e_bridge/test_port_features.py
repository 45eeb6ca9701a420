"""Per-port features with real traffic: portIsolation, mtu on both veth ends, macspoofchk."""

from __future__ import annotations

from pathlib import Path

from tests.e2e_bridge import lab
from tests.helpers import net

SUBNETS = ("10.79.0.0/24",)
GATEWAY = "10.79.0.1"


def _add_containers(cnitool, make_container_ns, conf, count: int):
    cnitool.write_conflist(conf)
    ctrs, results = [], []
    for _ in range(count):
        ctr = make_container_ns(lo_up=True)
        add = cnitool.add(conf["name"], ctr)
        assert add.rc == 0, add
        ctrs.append(ctr)
        results.append(add.out)
    return ctrs, results


def test_port_isolation_reaches_gateway_not_neighbours(cnitool, host_ns, make_container_ns, tmp_path: Path):
    conf = lab.bridge_conflist("cnte-iso", "cnte2", tmp_path / "ipam", subnets=SUBNETS, isGateway=True,
                               portIsolation=True)
    (a, b), (res_a, res_b) = _add_containers(cnitool, make_container_ns, conf, 2)
    for res in (res_a, res_b):
        (port,) = [p for p in lab.bridge_ports(host_ns, "cnte2") if p["ifname"] == res["interfaces"][1]["name"]]
        assert port["linkinfo"]["info_slave_data"]["isolated"] is True
    assert net.ping(a, GATEWAY) and net.ping(b, GATEWAY)
    assert not net.ping(a, lab.result_ips(res_b)[0])
    assert not net.ping(b, lab.result_ips(res_a)[0])
    for ctr in (a, b):
        assert cnitool.delete("cnte-iso", ctr).rc == 0


def test_mtu_on_both_veth_ends_and_full_size_df_ping(cnitool, host_ns, make_container_ns, tmp_path: Path):
    conf = lab.bridge_conflist("cnte-mtu", "cnte3", tmp_path / "ipam", subnets=SUBNETS, isGateway=True, mtu=1400)
    (a, b), (res_a, res_b) = _add_containers(cnitool, make_container_ns, conf, 2)
    assert net.link(host_ns, "cnte3")["mtu"] == 1400  # the bridge was created by the plugin: it gets the MTU
    for ctr, res in ((a, res_a), (b, res_b)):
        assert net.link(ctr, "eth0")["mtu"] == 1400
        assert net.link(host_ns, res["interfaces"][1]["name"])["mtu"] == 1400
    b_ip = lab.result_ips(res_b)[0]
    assert lab.df_ping(a, b_ip, 1400) == "1400"  # container to container through the bridge, unfragmented
    assert lab.df_ping(a, GATEWAY, 1400) == "1400"
    assert "Message too long" in lab.df_ping(a, b_ip, 1401)
    for ctr in (a, b):
        assert cnitool.delete("cnte-mtu", ctr).rc == 0


def test_macspoofchk_drops_a_forged_source_mac(cnitool, host_ns, make_container_ns, tmp_path: Path):
    conf = lab.bridge_conflist("cnte-spoof", "cnte4", tmp_path / "ipam", subnets=SUBNETS, isGateway=True,
                               macspoofchk=True)
    (ctr,), (res,) = _add_containers(cnitool, make_container_ns, conf, 1)
    real_mac = res["interfaces"][2]["mac"]
    assert net.ping(ctr, GATEWAY)
    ctr.ip("link", "set", "eth0", "address", "0a:58:0a:4f:00:99")
    host_ns.ip("neigh", "flush", "dev", "cnte4")
    assert not net.ping(ctr, GATEWAY, count=2)
    ctr.ip("link", "set", "eth0", "address", real_mac)  # the genuine MAC passes again
    assert net.ping(ctr, GATEWAY)
    assert cnitool.delete("cnte-spoof", ctr).rc == 0
    assert "macspoofchk" not in host_ns.run(["nft", "list", "ruleset"]).stdout
