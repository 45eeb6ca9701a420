"""The netlink layer's reads (neighbours, FDB, ``ip route get``) and route deletes, against a real kernel and
checked with iproute2 (namespaces ``cnt-v<run>-*``)."""

from __future__ import annotations

import errno
import ipaddress
import json
from typing import Iterator

import pytest

from cni_common import netlink as nl
from cni_common.netns import NetNS
from tests.helpers.netns import Netns, NetnsPool, serve_pool

A = ipaddress.ip_address
N = ipaddress.ip_network
PEER_MAC = "aa:bb:cc:00:00:02"


@pytest.fixture
def host() -> Iterator[tuple[Netns, nl.Conn]]:
    for pool in serve_pool(NetnsPool(tag="v"), strict=False):
        ns = pool.create("host", lo_up=True)
        with NetNS(ns.path) as handle, nl.open_conn(handle) as conn:
            yield ns, conn


def _uplink(ns: Netns) -> int:
    """A veth pair with carrier, ``cntva`` holding 192.0.2.10/24 and fd00:7b::10/64; returns cntva's index."""
    ns.ip("link", "add", "cntva", "type", "veth", "peer", "name", "cntvb")
    ns.ip("addr", "add", "192.0.2.10/24", "dev", "cntva")
    ns.ip("addr", "add", "fd00:7b::10/64", "dev", "cntva", "nodad")
    for name in ("cntva", "cntvb"):
        ns.ip("link", "set", name, "up")
    return int(json.loads(ns.ip("-j", "link", "show", "cntva").stdout)[0]["ifindex"])


def test_neighbours_and_fdb_of_a_vxlan_device(host):
    ns, conn = host
    uplink = _uplink(ns)
    vx = nl.ensure_vxlan(conn, "cntvx1", vni=1, local=A("192.0.2.10"), dev_index=uplink, learning=False)
    nl.set_up(conn, vx.index)
    nl.replace_neigh(conn, vx.index, A("10.244.2.0"), PEER_MAC)
    nl.replace_neigh(conn, vx.index, A("fd00:f4:2::"), PEER_MAC)
    nl.replace_neigh(conn, uplink, A("192.0.2.99"), "aa:bb:cc:00:00:99")  # another link's
    nl.replace_fdb(conn, vx.index, PEER_MAC, A("192.0.2.20"))
    ns.run(["bridge", "fdb", "append", "00:00:00:00:00:00", "dev", "cntvx1", "dst", "192.0.2.30"])

    neighbours = {n.ip: n for n in nl.list_neighbours(conn, vx.index)}
    assert set(neighbours) == {A("10.244.2.0"), A("fd00:f4:2::")}
    assert all(n.mac == PEER_MAC and n.permanent and n.index == vx.index for n in neighbours.values())
    shown = {e["dst"] for e in json.loads(ns.ip("-j", "neigh", "show", "dev", "cntvx1").stdout)}
    assert shown == {str(ip) for ip in neighbours}

    fdb = {(e.mac, e.dst) for e in nl.list_fdb(conn, vx.index)}
    assert {(PEER_MAC, A("192.0.2.20")), ("00:00:00:00:00:00", A("192.0.2.30"))} <= fdb
    shown_fdb = json.loads(ns.run(["bridge", "-j", "fdb", "show", "dev", "cntvx1"]).stdout)
    shown = {(e["mac"], e.get("dst")) for e in shown_fdb}
    assert {(mac, str(dst) if dst else None) for mac, dst in fdb} == shown
    assert nl.list_neighbours(conn, 4242) == [] and nl.list_fdb(conn, 4242) == []


def test_route_get_gives_output_link_source_and_gateway(host):
    ns, conn = host
    uplink = _uplink(ns)
    ns.ip("route", "add", "10.9.0.0/16", "via", "192.0.2.1")
    assert nl.route_get(conn, A("192.0.2.50")) == nl.RouteLookup(uplink, A("192.0.2.10"), None)
    assert nl.route_get(conn, A("10.9.1.1")) == nl.RouteLookup(uplink, A("192.0.2.10"), A("192.0.2.1"))
    v6 = nl.route_get(conn, A("fd00:7b::50"))
    assert v6.oif == uplink and v6.gateway is None
    with pytest.raises(nl.NetlinkError) as info:
        nl.route_get(conn, A("198.51.100.1"))  # no default route in this namespace
    assert info.value.errno == errno.ENETUNREACH and "198.51.100.1" in info.value.msg


def test_delete_without_the_gateway_removes_a_gateway_route(host):
    """The kernel matches a delete's scope unless it is "nowhere": a gateway route (scope global) must go when
    only its dst and link are given, as with ``ip route del``."""
    ns, conn = host
    uplink = _uplink(ns)
    nl.add_route(conn, nl.Route(N("10.9.0.0/16"), A("192.0.2.1"), oif=uplink))
    nl.add_route(conn, nl.Route(N("10.244.2.0/24"), A("10.244.2.0"), oif=uplink, onlink=True))
    nl.add_route(conn, nl.Route(N("10.8.0.0/16"), oif=uplink))  # scope link
    link_scope = nl.Route(N("10.9.0.0/16"), oif=uplink, scope=253)  # what deletes used to send: matches nothing
    assert nl.del_route(conn, link_scope) is False
    for dst in ("10.9.0.0/16", "10.244.2.0/24", "10.8.0.0/16"):
        assert nl.del_route(conn, nl.Route(N(dst), oif=uplink)) is True
        assert nl.del_route(conn, nl.Route(N(dst), oif=uplink)) is False
    routes = {r["dst"] for r in json.loads(ns.ip("-j", "route", "show").stdout)}
    assert routes == {"192.0.2.0/24"}
