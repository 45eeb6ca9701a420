"""The netlink layer against a real kernel, checked with ``ip -j`` (namespaces ``cnt-l<run>-*``).

A "host" namespace stands in for the machine and a "ctr" namespace for the pod; the test process itself stays
in the root namespace and only reaches into them through sockets opened with :func:`netlink.open_conn`.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import re
import threading
from typing import Any, Iterator

import pytest

from cni_common import netlink as nl
from cni_common.errors import CNIError
from cni_common.netns import NetNS
from tests.helpers.netns import Netns, NetnsPool

ip_if = ipaddress.ip_interface
ip_net = ipaddress.ip_network
ip_addr = ipaddress.ip_address


@pytest.fixture
def host(pool: NetnsPool) -> Iterator[tuple[Netns, nl.Conn]]:
    ns = pool.create("host", lo_up=True)
    with NetNS(ns.path) as handle, nl.open_conn(handle) as conn:
        yield ns, conn


@pytest.fixture
def ctr(pool: NetnsPool) -> Iterator[tuple[Netns, nl.Conn]]:
    ns = pool.create("ctr")
    with NetNS(ns.path) as handle, nl.open_conn(handle) as conn:
        yield ns, conn


def ipj(ns: Netns, *args: str) -> Any:
    return json.loads(ns.ip("-j", *args).stdout or "[]")


def link_json(ns: Netns, name: str) -> dict[str, Any]:
    (entry,) = ipj(ns, "-d", "link", "show", "dev", name)
    return entry


def test_conn_is_bound_to_its_namespace(host, ctr):
    (_, hconn), (cns, cconn) = host, ctr
    cns.ip("link", "add", "cntonly", "type", "bridge")
    assert nl.find_link(cconn, "cntonly") is not None
    assert nl.find_link(hconn, "cntonly") is None
    assert {link.name for link in nl.list_links(cconn)} == {"lo", "cntonly"}


def test_ensure_bridge_creates_then_tolerates_existing(host):
    ns, conn = host
    br = nl.ensure_bridge(conn, "cntbr0", mtu=1400, promisc=True)
    assert (br.kind, br.mtu, br.up, br.promisc) == ("bridge", 1400, True, True)
    j = link_json(ns, "cntbr0")
    assert j["mtu"] == 1400 and "UP" in j["flags"] and "PROMISC" in j["flags"]
    assert j["linkinfo"]["info_kind"] == "bridge" and j["address"] == br.mac
    again = nl.ensure_bridge(conn, "cntbr0", mtu=9000)  # MTU only applies on creation, as upstream
    assert again.index == br.index and again.mtu == 1400


def test_a_created_bridge_keeps_its_mac_when_ports_come_and_go(host):
    """A bridge without a MAC of its own takes its lowest port MAC; ours is created with one and keeps it."""
    ns, conn = host
    br = nl.ensure_bridge(conn, "cntbr0")
    assert int(br.mac.split(":")[0], 16) & 0x03 == 0x02  # locally administered, unicast
    ns.ip("link", "add", "cntlow0", "address", "02:00:00:00:00:01", "type", "veth", "peer", "name", "cntlow1")
    ns.ip("link", "set", "cntlow0", "master", "cntbr0")
    assert link_json(ns, "cntbr0")["address"] == br.mac
    ns.ip("link", "del", "cntlow0")
    assert link_json(ns, "cntbr0")["address"] == br.mac


def test_ensure_bridge_refuses_a_non_bridge(host, ctr):
    (_, hconn), (_, cconn) = host, ctr
    host_veth, _ = nl.setup_veth(hconn, cconn, "eth0")
    with pytest.raises(CNIError, match=f"'{host_veth.name}' already exists but is not a bridge"):
        nl.ensure_bridge(hconn, host_veth.name)
    assert nl.get_link(hconn, host_veth.index).kind == "veth"  # left as it was, not replaced


def test_first_pods_racing_for_the_bridge_and_its_address_all_succeed(host):
    ns, _ = host
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def pod() -> None:
        try:
            with NetNS(ns.path) as handle, nl.open_conn(handle) as conn:
                barrier.wait()
                br = nl.ensure_bridge(conn, "cntrace0")
                nl.add_addr(conn, br.index, ip_if("10.77.0.1/24"), exist_ok=True)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=pod) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    addrs = [a["local"] for a in ipj(ns, "-4", "addr", "show", "dev", "cntrace0")[0]["addr_info"]]
    assert addrs == ["10.77.0.1"]


def test_setup_veth_places_both_ends(host, ctr):
    (hns, hconn), (cns, cconn) = host, ctr
    host_veth, cont_veth = nl.setup_veth(hconn, cconn, "eth0", mtu=1450, mac="0a:58:0a:f4:01:05")
    assert re.fullmatch(r"veth[0-9a-f]{8}", host_veth.name)
    assert cont_veth.name == "eth0" and cont_veth.mac == "0a:58:0a:f4:01:05"
    assert host_veth.peer_index == cont_veth.index and cont_veth.peer_index == host_veth.index
    assert host_veth.up and not cont_veth.up
    hj, cj = link_json(hns, host_veth.name), link_json(cns, "eth0")
    assert hj["mtu"] == cj["mtu"] == 1450 and cj["address"] == "0a:58:0a:f4:01:05"
    assert hj["linkinfo"]["info_kind"] == "veth" and "UP" in hj["flags"]
    assert nl.find_link(cconn, host_veth.name) is None and nl.find_link(hconn, "eth0") is None


def test_setup_veth_refuses_an_existing_container_ifname(host, ctr):
    (_, hconn), (_, cconn) = host, ctr
    nl.setup_veth(hconn, cconn, "eth0")
    before = {link.name for link in nl.list_links(hconn)}
    with pytest.raises(Exception, match="container veth name 'eth0' already exists"):
        nl.setup_veth(hconn, cconn, "eth0")
    assert {link.name for link in nl.list_links(hconn)} == before


def test_setup_veth_retries_a_clashing_host_name(host, ctr, monkeypatch):
    (hns, hconn), (_, cconn) = host, ctr
    hns.ip("link", "add", "veth00000000", "type", "bridge")
    draws = iter([b"\0\0\0\0", b"\0\0\0\1"])
    monkeypatch.setattr(nl.link.os, "urandom", lambda n: next(draws))
    host_veth, _ = nl.setup_veth(hconn, cconn, "eth0")
    assert host_veth.name == "veth00000001"


def test_bridge_port_master_hairpin_isolated(host, ctr):
    (hns, hconn), (_, cconn) = host, ctr
    br = nl.ensure_bridge(hconn, "cntbr0")
    host_veth, _ = nl.setup_veth(hconn, cconn, "eth0")
    nl.set_master(hconn, host_veth.index, br.index)
    nl.set_bridge_port(hconn, host_veth.index, hairpin=True, isolated=True)
    j = link_json(hns, host_veth.name)
    slave = j["linkinfo"]["info_slave_data"]
    assert j["master"] == "cntbr0" and slave["hairpin"] is True and slave["isolated"] is True
    assert nl.get_link(hconn, host_veth.index).master == br.index
    nl.set_bridge_port(hconn, host_veth.index, hairpin=False)
    slave = link_json(hns, host_veth.name)["linkinfo"]["info_slave_data"]
    assert slave["hairpin"] is False and slave["isolated"] is True


def test_addresses_add_list_delete(ctr):
    ns, conn = ctr
    ns.ip("link", "add", "cntbr0", "type", "bridge")
    index = nl.get_link(conn, "cntbr0").index
    assert nl.add_addr(conn, index, ip_if("10.1.2.3/24")) is True
    assert nl.add_addr(conn, index, ip_if("10.1.2.3/24"), exist_ok=True) is False
    with pytest.raises(nl.NetlinkError) as info:
        nl.add_addr(conn, index, ip_if("10.1.2.3/24"))
    assert info.value.errno == errno.EEXIST
    nl.add_addr(conn, index, ip_if("fd00:1::3/64"), nodad=True)
    (entry,) = ipj(ns, "addr", "show", "dev", "cntbr0")
    v4 = [a for a in entry["addr_info"] if a["family"] == "inet"][0]
    assert (v4["local"], v4["prefixlen"], v4["broadcast"]) == ("10.1.2.3", 24, "10.1.2.255")
    listed = {a.address: a for a in nl.list_addrs(conn, index)}
    assert set(listed) >= {ip_if("10.1.2.3/24"), ip_if("fd00:1::3/64")}
    assert not listed[ip_if("fd00:1::3/64")].tentative and listed[ip_if("10.1.2.3/24")].is_global_unicast
    assert [a.address for a in nl.list_addrs(conn, index, nl.AF_INET)] == [ip_if("10.1.2.3/24")]
    assert nl.del_addr(conn, index, ip_if("10.1.2.3/24")) is True
    assert nl.del_addr(conn, index, ip_if("10.1.2.3/24")) is False
    assert nl.list_addrs(conn, index, nl.AF_INET) == []


def test_routes_add_replace_list_delete(host, ctr):
    (_, hconn), (cns, cconn) = host, ctr
    _, veth = nl.setup_veth(hconn, cconn, "eth0")
    nl.add_addr(cconn, veth.index, ip_if("10.9.0.5/24"))
    nl.set_up(cconn, veth.index)
    default = nl.Route(ip_net("0.0.0.0/0"), ip_addr("10.9.0.1"))
    nl.add_route(cconn, default)
    nl.add_route(cconn, nl.Route(ip_net("192.168.0.0/16"), ip_addr("10.9.0.1"), priority=5, mtu=1300))
    routes = {r["dst"]: r for r in ipj(cns, "route", "show")}
    assert routes["default"]["gateway"] == "10.9.0.1" and routes["default"]["dev"] == "eth0"
    assert routes["192.168.0.0/16"]["metric"] == 5 and routes["192.168.0.0/16"]["metrics"][0]["mtu"] == 1300
    listed = {r.dst: r for r in nl.list_routes(cconn, nl.AF_INET)}
    assert listed[ip_net("0.0.0.0/0")].gateway == ip_addr("10.9.0.1")
    assert listed[ip_net("192.168.0.0/16")].priority == 5 and listed[ip_net("192.168.0.0/16")].mtu == 1300
    nl.add_route(cconn, nl.Route(ip_net("0.0.0.0/0"), ip_addr("10.9.0.2")), replace=True)
    assert [r["gateway"] for r in ipj(cns, "route", "show", "default")] == ["10.9.0.2"]
    assert nl.add_route_excl(cconn, nl.Route(ip_net("0.0.0.0/0"), ip_addr("10.9.0.3")), exist_ok=True) is False
    assert nl.del_route(cconn, nl.Route(ip_net("0.0.0.0/0"), ip_addr("10.9.0.2"))) is True
    assert nl.del_route(cconn, nl.Route(ip_net("0.0.0.0/0"), ip_addr("10.9.0.2"))) is False
    assert ipj(cns, "route", "show", "default") == []


def test_vxlan_neighbour_fdb_and_onlink_route(host):
    ns, conn = host
    local = ip_addr("192.0.2.10")
    ns.ip("link", "add", "cntul0", "type", "bridge")
    ns.ip("addr", "add", "192.0.2.10/24", "dev", "cntul0")
    dev = nl.get_link(conn, "cntul0").index
    vx = nl.ensure_vxlan(conn, "cntvx1", vni=1, local=local, dev_index=dev, mtu=1450, mac="0a:00:00:00:00:01")
    data = link_json(ns, "cntvx1")["linkinfo"]["info_data"]
    assert (data["id"], data["local"], data["port"], data["learning"]) == (1, "192.0.2.10", 8472, False)
    assert vx.mac == "0a:00:00:00:00:01" and vx.mtu == 1450
    same = nl.ensure_vxlan(conn, "cntvx1", vni=1, local=local, dev_index=dev)
    assert same.index == vx.index
    nl.set_up(conn, vx.index)
    peer_mac, peer_ip, peer_gw = "aa:bb:cc:00:00:02", ip_addr("192.0.2.20"), ip_addr("10.244.2.0")
    nl.replace_neigh(conn, vx.index, peer_gw, peer_mac)
    nl.replace_fdb(conn, vx.index, peer_mac, peer_ip)
    nl.add_route(conn, nl.Route(ip_net("10.244.2.0/24"), peer_gw, oif=vx.index, onlink=True), replace=True)
    (neigh,) = ipj(ns, "neigh", "show", "dev", "cntvx1")
    assert (neigh["dst"], neigh["lladdr"], neigh["state"]) == ("10.244.2.0", peer_mac, ["PERMANENT"])
    fdb = json.loads(ns.run(["bridge", "-j", "fdb", "show", "dev", "cntvx1"]).stdout)
    assert any(e["mac"] == peer_mac and e.get("dst") == "192.0.2.20" for e in fdb)
    (rt,) = ipj(ns, "route", "show", "10.244.2.0/24")
    assert rt["gateway"] == "10.244.2.0" and "onlink" in rt["flags"]
    assert nl.delete_neigh(conn, vx.index, peer_gw) is True
    assert nl.delete_fdb(conn, vx.index, peer_mac, peer_ip) is True
    assert nl.delete_neigh(conn, vx.index, peer_gw) is False
    assert nl.delete_fdb(conn, vx.index, peer_mac, peer_ip) is False
    other = nl.ensure_vxlan(conn, "cntvx1", vni=2, local=local, dev_index=dev, port=4789)
    data = link_json(ns, "cntvx1")["linkinfo"]["info_data"]
    assert (data["id"], data["port"]) == (2, 4789) and other.index != vx.index


def test_delete_link_tolerates_missing(host, ctr):
    (_, hconn), (_, cconn) = host, ctr
    host_veth, _ = nl.setup_veth(hconn, cconn, "eth0")
    assert nl.delete_link(cconn, "eth0") is True
    assert nl.find_link(hconn, host_veth.name) is None  # the peer goes with it
    assert nl.delete_link(cconn, "eth0") is False
    with pytest.raises(nl.LinkNotFound):
        nl.get_link(cconn, "eth0")


def test_kernel_errors_name_the_object(ctr):
    _, conn = ctr
    with pytest.raises(nl.NetlinkError, match="failed to add IP addr 10.0.0.1/24 to link 4242: No such device") as info:
        nl.add_addr(conn, 4242, ip_if("10.0.0.1/24"))
    assert info.value.errno == errno.ENODEV
