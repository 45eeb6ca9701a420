"""cni_common/netlink/pack.py packs the common rtnetlink requests itself: the bytes must be pyroute2's, and what it
does not know must fall back to pyroute2 (answer None), never be packed differently."""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from cni_common.netlink import addr, consts, link, msg, route
from cni_common.netlink.pack import pack

_PEER = {"attrs": [("IFLA_IFNAME", "veth01234567"), ("IFLA_MTU", 1400), ("IFLA_NET_NS_FD", 3)]}
#: (kind, header fields, attributes): every request of a bridge ADD and DEL, and the other forms packed.
SAMPLES: list[tuple[str, dict[str, int], list[tuple]]] = [
    ("ifinfmsg", {"index": 0}, [("IFLA_IFNAME", "cni0"), ("IFLA_EXT_MASK", consts.RTEXT_FILTER_SKIP_STATS)]),
    ("ifinfmsg", {"index": 7}, [("IFLA_EXT_MASK", consts.RTEXT_FILTER_SKIP_STATS)]),
    ("ifinfmsg", {}, [("IFLA_IFNAME", "eth0"), ("IFLA_MTU", 1400), ("IFLA_ADDRESS", "0a:58:0a:f4:01:05"),
                      link._linkinfo("veth", ("VETH_INFO_PEER", _PEER))]),
    ("ifinfmsg", {"flags": 0x101, "change": 0x101},
     [("IFLA_IFNAME", "cnt-bridge.100"), ("IFLA_ADDRESS", "02:00:00:00:00:01"), ("IFLA_MTU", 9000),
      link._linkinfo("bridge", ("IFLA_BR_VLAN_FILTERING", 1))]),
    ("ifinfmsg", {"index": 5, "flags": 1, "change": 1}, []),
    ("ifinfmsg", {"index": 5}, [("IFLA_MASTER", 3)]),
    ("ifinfmsg", {"index": 5}, [("IFLA_MASTER", 0), ("IFLA_TXQLEN", 1000)]),
    ("ifinfmsg", {"index": 5, "family": consts.AF_BRIDGE},
     [("IFLA_PROTINFO", {"attrs": [("IFLA_BRPORT_MODE", 1), ("IFLA_BRPORT_ISOLATED", 1)]}, consts.NLA_F_NESTED)]),
    ("ifinfmsg", {"index": -1, "ifi_type": 1}, [("IFLA_IFNAME", "é")]),
    ("ifinfmsg", {}, [("IFLA_IFNAME", "veth0a1b2c3d"), ("IFLA_LINK", 2), ("IFLA_NET_NS_FD", 3),
                      link._linkinfo("macvlan", ("IFLA_MACVLAN_MODE", 4))]),
    ("ifaddrmsg", {"family": consts.AF_INET}, []),
    ("ifaddrmsg", {"family": consts.AF_INET, "prefixlen": 24, "index": 5},
     [("IFA_LOCAL", "10.1.0.2"), ("IFA_ADDRESS", "10.1.0.2"), ("IFA_BROADCAST", "10.1.0.255")]),
    ("ifaddrmsg", {"family": consts.AF_INET6, "prefixlen": 64, "index": 5, "scope": 0},
     [("IFA_LOCAL", "fd00::2"), ("IFA_ADDRESS", "fd00::2"), ("IFA_FLAGS", 0x202)]),
    ("rtmsg", {"family": consts.AF_INET}, []),
    ("rtmsg", {"family": consts.AF_INET6, "dst_len": 64, "table": 254, "proto": 3, "scope": 0, "type": 1},
     [("RTA_TABLE", 254), ("RTA_DST", "fd00::"), ("RTA_GATEWAY", "fd00::1"), ("RTA_OIF", 5), ("RTA_PRIORITY", 9),
      ("RTA_PREFSRC", "fd00::2"), ("RTA_METRICS", {"attrs": [("RTAX_MTU", 1400), ("RTAX_ADVMSS", 1360)]},
                                   consts.NLA_F_NESTED)]),
]


def test_pack_makes_pyroute2s_bytes():
    for kind, fields, nlas in SAMPLES:
        assert pack(kind, nlas, fields) == msg.build_with_pyroute2(kind, nlas, **fields), (kind, fields, nlas)


def test_the_plugins_bodies_are_packed():
    """What link, addr and route build for a bridge ADD and DEL is packed (not left to pyroute2)."""
    assert pack("ifinfmsg", [("IFLA_IFNAME", "eth0"), ("IFLA_EXT_MASK", consts.RTEXT_FILTER_SKIP_STATS)],
                {"index": 0, "family": 0, "flags": 0, "change": 0}) is not None
    assert link._key_body("eth0") == msg.build_with_pyroute2("ifinfmsg", [("IFLA_IFNAME", "eth0")])
    ip = ipaddress.ip_interface("10.1.0.2/24")
    assert addr._body(5, ip) == msg.build_with_pyroute2(
        "ifaddrmsg", [("IFA_LOCAL", "10.1.0.2"), ("IFA_ADDRESS", "10.1.0.2")], family=consts.AF_INET,
        prefixlen=24, flags=0, scope=0, index=5)
    r = route.Route(ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_address("10.1.0.1"), oif=5)
    assert pack("rtmsg", [("RTA_TABLE", 254), ("RTA_GATEWAY", "10.1.0.1"), ("RTA_OIF", 5)],
                {"family": 2, "dst_len": 0, "table": 254, "proto": 3, "scope": 0, "type": 1, "flags": 0}) == \
        route._body(r)


def test_what_it_does_not_know_is_left_to_pyroute2():
    unknown = [
        ("ndmsg", {"family": 7}, []),  # a kind it does not pack
        ("ifinfmsg", {}, [("IFLA_OPERSTATE", 6)]),  # an attribute not in its tables
        ("ifinfmsg", {}, [link._linkinfo("vxlan", ("IFLA_VXLAN_ID", 42))]),  # a link kind's settings it does not know
        ("ifinfmsg", {"parent": 1}, []),  # a field the header has not
        ("ifinfmsg", {}, [("IFLA_ADDRESS", "not a mac")]),  # pyroute2 encodes this its own way
        ("ifinfmsg", {}, [("IFLA_ADDRESS", "02-00-00-00-00-01")]),  # or refuses it
        ("rtmsg", {"family": 0}, [("RTA_DST", "10.0.0.0")]),  # an address of no family
        ("ifinfmsg", {}, [("IFLA_MTU", -1)]),
    ]
    for kind, fields, nlas in unknown:
        assert pack(kind, nlas, fields) is None, (kind, fields, nlas)
    body = msg.build("ifinfmsg", [link._linkinfo("vxlan", ("IFLA_VXLAN_ID", 42))])
    assert body == msg.build_with_pyroute2("ifinfmsg", [link._linkinfo("vxlan", ("IFLA_VXLAN_ID", 42))])


_NAMES = st.text(st.characters(min_codepoint=33, max_codepoint=0x2FF), min_size=1, max_size=15)
_U32 = st.integers(0, 2 ** 32 - 1)
_LINK_ATTRS = st.lists(st.one_of(
    st.tuples(st.sampled_from(["IFLA_IFNAME"]), _NAMES),
    st.tuples(st.sampled_from(["IFLA_MTU", "IFLA_MASTER", "IFLA_TXQLEN", "IFLA_NET_NS_FD", "IFLA_EXT_MASK"]), _U32),
    st.tuples(st.just("IFLA_ADDRESS"), st.binary(min_size=6, max_size=6).map(lambda b: b.hex(":"))),
), max_size=6)


@settings(max_examples=200, deadline=None)
@given(index=st.integers(-(2 ** 31), 2 ** 31 - 1), flags=_U32, change=_U32, nlas=_LINK_ATTRS,
       kind=st.sampled_from(["", "veth", "bridge"]))
def test_pack_matches_pyroute2_on_any_link_request(index, flags, change, nlas, kind):
    if kind == "veth":
        nlas = [*nlas, link._linkinfo("veth", ("VETH_INFO_PEER", {"attrs": list(nlas)}))]
    elif kind == "bridge":
        nlas = [*nlas, link._linkinfo("bridge")]
    fields = {"index": index, "flags": flags, "change": change}
    assert pack("ifinfmsg", nlas, fields) == msg.build_with_pyroute2("ifinfmsg", nlas, **fields)


@settings(max_examples=200, deadline=None)
@given(ip=st.ip_addresses(), prefix=st.integers(0, 128), oif=_U32, table=st.integers(0, 255), priority=_U32)
def test_pack_matches_pyroute2_on_any_address_and_route(ip, prefix, oif, table, priority):
    family = consts.AF_INET if ip.version == 4 else consts.AF_INET6
    prefix = min(prefix, ip.max_prefixlen)
    nlas = [("IFA_LOCAL", str(ip)), ("IFA_ADDRESS", str(ip)), ("IFA_FLAGS", priority)]
    fields = {"family": family, "prefixlen": prefix, "index": oif}
    assert pack("ifaddrmsg", nlas, fields) == msg.build_with_pyroute2("ifaddrmsg", nlas, **fields)
    nlas = [("RTA_TABLE", table), ("RTA_DST", str(ip)), ("RTA_GATEWAY", str(ip)), ("RTA_OIF", oif),
            ("RTA_PRIORITY", priority)]
    fields = {"family": family, "dst_len": prefix, "table": table, "type": 1}
    assert pack("rtmsg", nlas, fields) == msg.build_with_pyroute2("rtmsg", nlas, **fields)


def _pyroute2_addr(body: bytes) -> addr.Addr | None:
    """The oracle: an Addr from pyroute2's decode of the same body (the former reader of list_addrs)."""
    m = msg.parse("ifaddrmsg", consts.RTM_NEWADDR, body)
    ip = m.get_attr("IFA_LOCAL") or m.get_attr("IFA_ADDRESS")
    if ip is None:
        return None
    return addr.Addr(m["index"], ipaddress.ip_interface(f"{ip}/{m['prefixlen']}"), m["scope"],
                     m.get_attr("IFA_FLAGS", m["flags"]))


@settings(max_examples=200, deadline=None)
@given(local=st.none() | st.ip_addresses(v=4), peer=st.none() | st.ip_addresses(v=4),
       v6=st.none() | st.ip_addresses(v=6), prefix=st.integers(0, 32), flags=st.integers(0, 255),
       scope=st.sampled_from([0, 253, 254]),
       index=_U32, ifa_flags=st.none() | _U32)
def test_address_decode_matches_pyroute2(local, peer, v6, prefix, flags, scope, index, ifa_flags):
    if v6 is not None:
        family, nlas = consts.AF_INET6, [("IFA_ADDRESS", str(v6))]
    else:
        family = consts.AF_INET
        nlas = [("IFA_ADDRESS", str(peer))] if peer is not None else []
        nlas += [("IFA_LOCAL", str(local))] if local is not None else []
    nlas += [("IFA_FLAGS", ifa_flags)] if ifa_flags is not None else []
    body = msg.build_with_pyroute2("ifaddrmsg", nlas, family=family, prefixlen=prefix, flags=flags, scope=scope,
                                   index=index)
    assert addr.decode_addr(body) == _pyroute2_addr(body)


def test_address_decode_matches_pyroute2_on_kernel_replies(host_ns):
    """IPv4 and IPv6, global, link-local and host scope, tentative and not, on a throwaway namespace's links."""
    from cni_common import netlink as nl
    from cni_common.netns import NetNS

    host_ns.ip("link", "add", "cntpca", "type", "veth", "peer", "name", "cntpcb")
    host_ns.ip("addr", "add", "10.77.0.1/24", "dev", "cntpca")
    host_ns.ip("addr", "add", "10.77.1.1", "peer", "10.77.1.2/32", "dev", "cntpca")
    host_ns.ip("addr", "add", "fd77::1/64", "dev", "cntpca")
    host_ns.ip("link", "set", "cntpca", "up")
    with NetNS(host_ns.path) as handle, nl.open_conn(handle) as conn:
        bodies = [p for t, p in conn.dump(consts.RTM_GETADDR, msg.build("ifaddrmsg"), "dump")
                  if t == consts.RTM_NEWADDR]
    assert len(bodies) >= 3  # the three above (and lo's, a link-local one)
    for body in bodies:
        assert addr.decode_addr(body) == _pyroute2_addr(body)


def test_an_attribute_pyroute2_would_drop_is_packed_or_refused():
    """IFLA_MACVLAN_BC_QUEUE_LEN (macvlan's bcqueuelen) is not in pyroute2's tables, which drop it silently:
    packed here (the kernel's bytes: type 7, u32), and a request pack.py refuses is not sent without it."""
    import pytest

    data = link._linkinfo("macvlan", ("IFLA_MACVLAN_MODE", 4), ("IFLA_MACVLAN_BC_QUEUE_LEN", 2000))
    body = msg.build("ifinfmsg", [("IFLA_IFNAME", "eth0"), data])
    assert bytes.fromhex("08000700") + (2000).to_bytes(4, "little") in body  # length 8, type 7, the value
    assert msg.build_with_pyroute2("ifinfmsg", [("IFLA_IFNAME", "eth0"), data]) != body  # pyroute2 drops it
    with pytest.raises(ValueError):
        msg.build("ifinfmsg", [("IFLA_OPERSTATE", 6), data])  # an attribute pack.py does not know
