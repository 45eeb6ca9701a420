"""The netlink layer's reads an overlay relies on (neighbours, FDB, ``ip route get``) and the delete scope, at the
byte level: replies are built as the kernel sends them with our own TLV codec, requests are checked with it."""

from __future__ import annotations

import errno
import ipaddress
import struct

import pytest

from cni_common.netlink import consts, neigh, route
from cni_common.netlink.conn import NetlinkError
from tests.helpers import nlattrs as attrs

_NDMSG = struct.Struct("=BxxxiHBB")  # family, ifindex, state, flags, type
_RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, proto, scope, type, flags
A = ipaddress.ip_address
N = ipaddress.ip_network
MAC = "0a:58:0a:f4:01:05"


class _Conn:
    """Records each request and answers it with the queued (type, body) replies."""

    def __init__(self, replies):
        self.replies = replies
        self.sent: list[tuple[int, bytes, int]] = []

    def dump(self, msg_type, body, what):
        self.sent.append((msg_type, body, -1))
        return self.replies

    def request(self, msg_type, body, flags, what):
        self.sent.append((msg_type, body, flags))
        return self.replies


def _nd(family: int, index: int, *nlas: bytes, state: int = 0, flags: int = 0) -> tuple[int, bytes]:
    return consts.RTM_NEWNEIGH, _NDMSG.pack(family, index, state, flags, 0) + b"".join(nlas)


def _mac(mac: str = MAC) -> bytes:
    return attrs.attr(consts.NDA_LLADDR, attrs.mac_to_bytes(mac))


def test_list_neighbours_keeps_one_link_both_families_and_unresolved_entries():
    conn = _Conn([
        _nd(consts.AF_INET, 5, attrs.ip(consts.NDA_DST, A("10.244.1.0")), _mac(), state=consts.NUD_PERMANENT),
        _nd(consts.AF_INET, 6, attrs.ip(consts.NDA_DST, A("10.244.2.0")), _mac(), state=consts.NUD_PERMANENT),
        _nd(consts.AF_INET6, 5, attrs.ip(consts.NDA_DST, A("fd00::1")), state=0x01),  # NUD_INCOMPLETE, no MAC
        (consts.RTM_DELNEIGH, _NDMSG.pack(consts.AF_INET, 5, 0, 0, 0)),
    ])
    got = neigh.list_neighbours(conn, 5)
    assert got == [neigh.Neighbour(5, A("10.244.1.0"), MAC, consts.NUD_PERMANENT),
                   neigh.Neighbour(5, A("fd00::1"), "", 0x01)]
    assert got[0].permanent and not got[1].permanent
    (mtype, body, _flags), = conn.sent
    assert mtype == consts.RTM_GETNEIGH and _NDMSG.unpack_from(body) == (consts.AF_UNSPEC, 0, 0, 0, 0)


def test_list_fdb_reads_the_remote_vtep_of_each_entry():
    conn = _Conn([
        _nd(consts.AF_BRIDGE, 9, _mac(), attrs.ip(consts.NDA_DST, A("192.0.2.9")), state=consts.NUD_PERMANENT,
            flags=consts.NTF_SELF),
        _nd(consts.AF_BRIDGE, 9, _mac("00:00:00:00:00:00"), attrs.ip(consts.NDA_DST, A("fd00:7b::2"))),
        _nd(consts.AF_BRIDGE, 9, _mac("0a:00:00:00:00:01"), state=consts.NUD_PERMANENT),  # a bridge port's own
        _nd(consts.AF_BRIDGE, 4, _mac(), attrs.ip(consts.NDA_DST, A("192.0.2.4"))),
    ])
    assert neigh.list_fdb(conn, 9) == [
        neigh.FdbEntry(9, MAC, A("192.0.2.9"), consts.NUD_PERMANENT, consts.NTF_SELF),
        neigh.FdbEntry(9, "00:00:00:00:00:00", A("fd00:7b::2"), 0, 0),
        neigh.FdbEntry(9, "0a:00:00:00:00:01", None, consts.NUD_PERMANENT, 0),
    ]
    assert _NDMSG.unpack_from(conn.sent[0][1])[0] == consts.AF_BRIDGE


def _rt_reply(*nlas: bytes) -> tuple[int, bytes]:
    head = _RTMSG.pack(consts.AF_INET, 32, 0, 0, consts.RT_TABLE_MAIN, 0, 0, consts.RTN_UNICAST, 0)
    return consts.RTM_NEWROUTE, head + b"".join(nlas)


def test_route_get_asks_for_one_host_and_reads_oif_source_and_gateway():
    conn = _Conn([_rt_reply(attrs.ip(consts.RTA_DST, A("10.9.9.9")), attrs.u32(consts.RTA_OIF, 3),
                            attrs.ip(consts.RTA_PREFSRC, A("10.123.0.1")),
                            attrs.ip(consts.RTA_GATEWAY, A("10.123.0.254")))])
    assert route.route_get(conn, A("10.9.9.9")) == route.RouteLookup(3, A("10.123.0.1"), A("10.123.0.254"))
    (mtype, body, flags), = conn.sent
    assert mtype == consts.RTM_GETROUTE and flags == 0  # a lookup, not a dump
    head = _RTMSG.unpack_from(body)
    assert head[0] == consts.AF_INET and head[1] == 32
    assert attrs.get_ip(attrs.parse(body, _RTMSG.size), consts.RTA_DST) == A("10.9.9.9")

    v6 = _Conn([_rt_reply(attrs.u32(consts.RTA_OIF, 4))])
    assert route.route_get(v6, A("fd00::9")) == route.RouteLookup(4, None, None)
    assert _RTMSG.unpack_from(v6.sent[0][1])[:2] == (consts.AF_INET6, 128)


def test_route_get_without_an_answer_is_a_netlink_error():
    with pytest.raises(NetlinkError) as info:
        route.route_get(_Conn([]), A("10.9.9.9"))
    assert info.value.errno == errno.ENETUNREACH and "10.9.9.9" in info.value.msg


@pytest.mark.parametrize("gateway", [None, A("10.0.0.1")])
def test_delete_matches_any_scope_and_type(gateway):
    """iproute2 sends scope "nowhere" on delete: a route through a gateway (scope global) must match too."""
    conn = _Conn([])
    assert route.del_route(conn, route.Route(N("10.9.0.0/16"), gateway, oif=2)) is True
    (mtype, body, _flags), = conn.sent
    _fam, dst_len, _src, _tos, _table, proto, scope, rtype, _fl = _RTMSG.unpack_from(body)
    assert mtype == consts.RTM_DELROUTE and dst_len == 16
    assert (scope, rtype, proto) == (consts.RT_SCOPE_NOWHERE, 0, 0)


def test_delete_keeps_an_explicit_scope_and_add_keeps_its_defaults():
    explicit = route._body(route.Route(N("10.9.0.0/16"), scope=consts.RT_SCOPE_LINK), delete=True)
    assert _RTMSG.unpack_from(explicit)[6] == consts.RT_SCOPE_LINK
    add = _RTMSG.unpack_from(route._body(route.Route(N("10.9.0.0/16"), A("10.0.0.1"))))
    assert (add[5], add[6], add[7]) == (consts.RTPROT_BOOT, consts.RT_SCOPE_UNIVERSE, consts.RTN_UNICAST)
