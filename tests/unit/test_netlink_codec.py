"""Pure tests of the netlink layer: attribute codec, message framing, error and dump handling."""

from __future__ import annotations

import errno
import ipaddress
import struct

import pytest

from cni_common.netlink import conn, consts, ifinfo, route
from tests.helpers import nlattrs as attrs

_HDR = struct.Struct("=IHHII")


def test_attr_is_padded_to_four_bytes():
    encoded = attrs.string(consts.IFLA_IFNAME, "eth0")
    assert encoded == struct.pack("=HH", 9, 3) + b"eth0\0" + b"\0\0\0"


def test_nested_sets_flag_and_parse_strips_it():
    encoded = attrs.nested(consts.IFLA_LINKINFO, attrs.string(consts.IFLA_INFO_KIND, "bridge"))
    assert struct.unpack_from("=HH", encoded)[1] == consts.IFLA_LINKINFO | attrs.NLA_F_NESTED
    (kind, payload), = attrs.iterate(encoded)
    assert kind == consts.IFLA_LINKINFO
    assert attrs.get_str(attrs.parse(payload), consts.IFLA_INFO_KIND) == "bridge"


def test_round_trip_of_scalar_attributes():
    buf = (attrs.u8(1, 7) + attrs.u16(2, 513) + attrs.u32(3, 70000) + attrs.be16(4, 8472)
           + attrs.ip(5, ipaddress.ip_address("fd00::1")))
    parsed = attrs.parse(buf)
    assert attrs.get_u8(parsed, 1) == 7
    assert attrs.get_u16(parsed, 2) == 513
    assert attrs.get_u32(parsed, 3) == 70000
    assert attrs.get_be16(parsed, 4) == 8472
    assert attrs.get_ip(parsed, 5) == ipaddress.ip_address("fd00::1")
    assert attrs.get_u32(parsed, 99, 5) == 5 and attrs.get_ip(parsed, 99) is None


def test_iterate_keeps_repeated_attributes_and_stops_on_truncation():
    buf = attrs.u16(2, 10) + attrs.u16(2, 20) + b"\x08\x00"
    assert [attrs.get_u16({k: v}, k) for k, v in attrs.iterate(buf)] == [10, 20]


@pytest.mark.parametrize("mac", ["0a:58:0a:f4:01:05", "0A:58:0A:F4:01:05"])
def test_mac_round_trip(mac):
    assert attrs.mac_to_str(attrs.mac_to_bytes(mac)) == mac.lower()


@pytest.mark.parametrize("bad", ["", "0a:58:0a:f4:01", "0a:58:0a:f4:01:05:06", "zz:58:0a:f4:01:05", "0a580af40105"])
def test_bad_mac_is_rejected(bad):
    with pytest.raises(ValueError):
        attrs.mac_to_bytes(bad)


_IFINFOMSG = struct.Struct("=BxHiII")  # family, pad, type, index, flags, change
_RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, protocol, scope, type, flags


def test_decode_link_reads_kind_master_and_peer():
    # Wire bytes as the kernel sends them, built with our own TLV codec (tests/unit/test_link_decode.py holds the
    # decoder to pyroute2's answers on real kernel replies).
    payload = _IFINFOMSG.pack(0, 1, 7, consts.IFF_UP | consts.IFF_PROMISC, 0)
    payload += attrs.string(consts.IFLA_IFNAME, "veth1234abcd") + attrs.u32(consts.IFLA_MTU, 1450)
    payload += attrs.attr(consts.IFLA_ADDRESS, bytes.fromhex("0a580af40105"))
    payload += attrs.u32(consts.IFLA_MASTER, 3) + attrs.u32(consts.IFLA_LINK, 2)
    payload += attrs.u8(consts.IFLA_OPERSTATE, consts.IF_OPER_UP)
    payload += attrs.nested(consts.IFLA_LINKINFO, attrs.string(consts.IFLA_INFO_KIND, "veth"))
    decoded = ifinfo.decode_link(payload)
    assert decoded == ifinfo.Link(7, "veth1234abcd", "0a:58:0a:f4:01:05", 1450, "veth", 3, 2,
                                consts.IFF_UP | consts.IFF_PROMISC, consts.IF_OPER_UP)
    assert decoded.up and decoded.promisc and not decoded.oper_up  # no IFF_LOWER_UP


def test_route_body_encodes_default_route_without_dst():
    body = route._body(route.Route(ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_address("10.0.0.1"), oif=2))
    head = _RTMSG.unpack_from(body)
    assert head[1] == 0 and head[6] == consts.RT_SCOPE_UNIVERSE
    nla = attrs.parse(body, _RTMSG.size)
    assert consts.RTA_DST not in nla and attrs.get_ip(nla, consts.RTA_GATEWAY) == ipaddress.ip_address("10.0.0.1")


def test_route_without_gateway_defaults_to_link_scope():
    body = route._body(route.Route(ipaddress.ip_network("10.1.0.0/16"), mtu=1400))
    assert _RTMSG.unpack_from(body)[6] == consts.RT_SCOPE_LINK
    metrics = attrs.parse(attrs.parse(body, _RTMSG.size)[consts.RTA_METRICS])
    assert attrs.get_u32(metrics, consts.RTAX_MTU) == 1400


class FakeSocket:
    """Stands in for the kernel: each recv returns the next queued datagram."""

    def __init__(self, datagrams):
        self.datagrams = list(datagrams)
        self.sent = []

    def send(self, data):
        self.sent.append(data)
        return len(data)

    def recv(self, size):
        data = self.datagrams.pop(0)
        assert len(data) <= size
        return data

    def close(self):
        pass


def _msg(mtype, seq, payload=b"", flags=0):
    return _HDR.pack(_HDR.size + len(payload), mtype, flags, seq, 0) + payload


def _error(seq, err, ext_msg=""):
    payload = struct.pack("=i", -err) + _HDR.pack(36, consts.RTM_NEWLINK, 0, seq, 0)
    flags = consts.NLM_F_CAPPED
    if ext_msg:
        payload += attrs.string(consts.NLMSGERR_ATTR_MSG, ext_msg)
        flags |= consts.NLM_F_ACK_TLVS
    return _msg(consts.NLMSG_ERROR, seq, payload, flags)


@pytest.fixture
def fake_conn():
    c = conn.Conn.__new__(conn.Conn)
    c._seq = 0
    return c


def test_request_returns_replies_before_the_ack(fake_conn):
    fake_conn._sock = FakeSocket([_msg(consts.RTM_NEWLINK, 1, b"abcd") + _error(1, 0)])
    assert fake_conn.request(consts.RTM_GETLINK, b"", 0, "get") == [(consts.RTM_NEWLINK, b"abcd")]
    sent_flags = _HDR.unpack_from(fake_conn._sock.sent[0])[2]
    assert sent_flags == consts.NLM_F_REQUEST | consts.NLM_F_ACK


def test_error_carries_errno_and_extended_ack_text(fake_conn):
    fake_conn._sock = FakeSocket([_error(1, errno.EOPNOTSUPP, "vlan filtering not built in")])
    with pytest.raises(conn.NetlinkError) as info:
        fake_conn.request(consts.RTM_NEWLINK, b"", 0, "could not add bridge 'cni0'")
    assert info.value.errno == errno.EOPNOTSUPP
    assert info.value.code == 102
    assert info.value.msg == "could not add bridge 'cni0': Operation not supported (vlan filtering not built in)"


def test_dump_spans_datagrams_and_skips_foreign_sequence_numbers(fake_conn):
    fake_conn._sock = FakeSocket([
        _msg(consts.RTM_NEWADDR, 99, b"old!") + _msg(consts.RTM_NEWADDR, 1, b"one!", consts.NLM_F_MULTI),
        _msg(consts.RTM_NEWADDR, 1, b"two!", consts.NLM_F_MULTI) + _msg(consts.NLMSG_DONE, 1, b"\0\0\0\0"),
    ])
    replies = fake_conn.dump(consts.RTM_GETADDR, b"", "dump")
    assert [p for _, p in replies] == [b"one!", b"two!"]
    assert _HDR.unpack_from(fake_conn._sock.sent[0])[2] == consts.NLM_F_REQUEST | consts.NLM_F_DUMP


def test_interrupted_dump_is_retried(fake_conn):
    fake_conn._sock = FakeSocket([
        _msg(consts.RTM_NEWLINK, 1, b"stal", consts.NLM_F_MULTI | consts.NLM_F_DUMP_INTR)
        + _msg(consts.NLMSG_DONE, 1, b"\0\0\0\0"),
        _msg(consts.RTM_NEWLINK, 2, b"good", consts.NLM_F_MULTI) + _msg(consts.NLMSG_DONE, 2, b"\0\0\0\0"),
    ])
    assert fake_conn.dump(consts.RTM_GETLINK, b"", "dump") == [(consts.RTM_NEWLINK, b"good")]
    assert len(fake_conn._sock.sent) == 2


def test_netlink_module_imports_nothing_heavy():
    import subprocess
    import sys

    code = ("import sys; import cni_common.netlink, cni_common.netns, cni_common.sysctl; "
            "bad = [m for m in ('pyroute2', 'netaddr', 'asyncio', 'multiprocessing', 'ctypes') if m in sys.modules]; "
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
