"""The light link decoder (:mod:`cni_common.netlink.ifinfo`) gives what pyroute2's full ``ifinfmsg`` decode gives,
on real kernel replies; and the link helpers look a link up only when the kernel may have changed it.

Links of several kinds are made in a throwaway namespace (``cnt-h<run>-host<n>``; the kernel of this VM has no
dummy or vlan links): a bridge, a veth pair with one end in the bridge, a vxlan, a macvlan and an ifb, with an
alias, a changed MTU and queue length, up and down.
"""

from __future__ import annotations

import errno
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cni_common import netlink as nl
from cni_common import record
from cni_common.errors import CNIError
from cni_common.netlink import consts, ifinfo, link, msg
from cni_common.netlink.conn import NetlinkError
from cni_common.netns import NetNS
from tests.helpers import nlattrs as attrs
from tests.helpers.netns import Netns, NetnsPool

_IFF_RUNNING = 0x40


def _pyroute2_link(body: bytes) -> nl.Link:
    """The oracle: a Link from pyroute2's full decode of the same body (the netlink layer's former reader)."""
    m = msg.parse("ifinfmsg", consts.RTM_NEWLINK, body)
    operstate = next((slot.nla["value"] for slot in m["attrs"] if slot.name == "IFLA_OPERSTATE"), 0)
    return nl.Link(
        index=m["index"],
        name=m.get_attr("IFLA_IFNAME", ""),
        mac=m.get_attr("IFLA_ADDRESS", ""),
        mtu=m.get_attr("IFLA_MTU", 0),
        kind=m.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND") or "",
        master=m.get_attr("IFLA_MASTER", 0),
        peer_index=m.get_attr("IFLA_LINK", 0),
        flags=m["flags"],
        operstate=operstate,
        txqlen=m.get_attr("IFLA_TXQLEN", 0),
        alias=m.get_attr("IFLA_IFALIAS", "") or "",
    )


@pytest.fixture
def links(host_ns: Netns) -> Iterator[tuple[Netns, nl.Conn]]:
    """``host_ns`` holding a link of each kind this kernel has, and a connection to it."""
    ns = host_ns
    ns.ip("link", "add", "cntbr0", "type", "bridge")
    ns.ip("link", "add", "cntva", "mtu", "1400", "type", "veth", "peer", "name", "cntvb")
    ns.ip("link", "set", "cntva", "master", "cntbr0", "up")
    ns.ip("link", "set", "cntbr0", "up", "alias", "cnt test bridge é")
    ns.ip("link", "add", "cntvx0", "type", "vxlan", "id", "42", "dstport", "4789", "local", "10.1.2.3")
    ns.ip("link", "add", "cntmv0", "link", "cntvb", "type", "macvlan", "mode", "bridge")
    ns.ip("link", "add", "cntifb0", "txqueuelen", "0", "type", "ifb")
    with NetNS(ns.path) as handle, nl.open_conn(handle) as conn:
        yield ns, conn


def _dump(conn: nl.Conn) -> list[bytes]:
    body = msg.build("ifinfmsg", [("IFLA_EXT_MASK", consts.RTEXT_FILTER_SKIP_STATS)])
    return [p for t, p in conn.dump(consts.RTM_GETLINK, body, "dump") if t == consts.RTM_NEWLINK]


def test_light_decode_matches_pyroute2_on_every_link_of_the_namespace(links):
    _, conn = links
    bodies = _dump(conn)
    decoded = {ifinfo.decode_link(body).name: ifinfo.decode_link(body) for body in bodies}
    assert set(decoded) == {"lo", "cntbr0", "cntva", "cntvb", "cntvx0", "cntmv0", "cntifb0"}
    for body in bodies:
        assert ifinfo.decode_link(body) == _pyroute2_link(body)
    # ... and what it reads is right, not only equal to pyroute2's.
    br, va, vb = decoded["cntbr0"], decoded["cntva"], decoded["cntvb"]
    assert (br.kind, br.up, br.alias) == ("bridge", True, "cnt test bridge é")
    assert (va.kind, va.mtu, va.master, va.peer_index, va.up) == ("veth", 1400, br.index, vb.index, True)
    assert (vb.peer_index, vb.up, vb.oper_up) == (va.index, False, False)
    assert decoded["cntmv0"].peer_index == vb.index and decoded["cntmv0"].kind == "macvlan"
    assert (decoded["cntifb0"].kind, decoded["cntifb0"].txqlen) == ("ifb", 0)
    assert decoded["lo"] == nl.Link(1, "lo", "00:00:00:00:00:00", 65536, "", 0, 0, decoded["lo"].flags,
                                    decoded["lo"].operstate, 1000, "")


def test_look_ups_by_name_and_index_match_pyroute2(links):
    _, conn = links
    for name in ("cntbr0", "cntva", "cntvx0", "cntmv0"):
        body = link._get_body(conn, name)
        assert nl.get_link(conn, name) == _pyroute2_link(body)
        assert nl.get_link(conn, nl.get_link(conn, name).index) == _pyroute2_link(body)


def test_kind_settings_still_come_from_pyroute2_on_demand(links):
    _, conn = links
    vx, settings = nl.get_link_data(conn, "cntvx0")
    assert vx == nl.get_link(conn, "cntvx0")
    assert settings["IFLA_VXLAN_ID"] == 42 and settings["IFLA_VXLAN_PORT"] == 4789
    assert settings["IFLA_VXLAN_LOCAL"] == "10.1.2.3"
    _, mv = nl.get_link_data(conn, "cntmv0")
    assert mv["IFLA_MACVLAN_MODE"] == "bridge"
    assert nl.get_link_data(conn, "cntifb0")[1] == {}


def test_ensure_vxlan_keeps_a_matching_device_and_remakes_another(links):
    ns, conn = links
    kept = nl.ensure_vxlan(conn, "cntvx0", vni=42, local=None, port=4789)  # local differs: remade
    assert kept.kind == "vxlan" and nl.get_link_data(conn, "cntvx0")[1].get("IFLA_VXLAN_LOCAL") is None
    again = nl.ensure_vxlan(conn, "cntvx0", vni=42, port=4789)
    assert again.index == kept.index
    made = nl.ensure_vxlan(conn, "cntvx1", vni=7, mtu=1450)
    assert made == nl.get_link(conn, "cntvx1") and (made.kind, made.mtu) == ("vxlan", 1450)


class _Counting:
    """A Conn that counts the requests of each message type it passes on."""

    def __init__(self, conn: nl.Conn) -> None:
        self.conn, self.netns, self.sent = conn, conn.netns, []

    def request(self, msg_type: int, body: bytes, flags: int, what: str) -> Any:
        self.sent.append(msg_type)
        return self.conn.request(msg_type, body, flags, what)

    def dump(self, msg_type: int, body: bytes, what: str) -> Any:
        self.sent.append(msg_type)
        return self.conn.dump(msg_type, body, what)


@pytest.fixture
def ctr(netns_pool: NetnsPool) -> Iterator[Netns]:
    ns = netns_pool.create("ctr")
    yield ns
    netns_pool.remove(ns)


def test_setup_veth_and_ensure_bridge_use_what_the_kernel_echoes(links, ctr):
    _, conn = links
    with NetNS(ctr.path) as handle, nl.open_conn(handle) as cconn:
        host, cont = _Counting(conn), _Counting(cconn)
        br = nl.ensure_bridge(host, "cntbr1", mtu=1450)  # type: ignore[arg-type]
        assert host.sent == [consts.RTM_GETLINK, consts.RTM_NEWLINK]  # not there; made up, echoed
        # The echo is the kernel's word at creation: the same link, up; its carrier (no ports: none) is settled
        # by the kernel's link watch a moment later.
        assert _settled(br) == _settled(nl.get_link(conn, "cntbr1")) and br.up and br.mtu == 1450
        host.sent.clear()
        assert nl.ensure_bridge(host, "cntbr1", found=br) == br  # type: ignore[arg-type]
        assert host.sent == []

        host_end, cont_end = nl.setup_veth(host, cont, "eth0", mtu=1450)  # type: ignore[arg-type]
        assert cont.sent == [consts.RTM_NEWLINK]
        assert host.sent == [consts.RTM_SETLINK, consts.RTM_GETLINK]  # the host end up, then read once
        assert _settled(cont_end) == _settled(nl.get_link(cconn, "eth0")) and not cont_end.up
        assert host_end == nl.get_link(conn, host_end.name) and host_end.up
        assert (cont_end.peer_index, host_end.peer_index) == (host_end.index, cont_end.index)

        with pytest.raises(CNIError, match="container veth name 'eth0' already exists"):
            nl.setup_veth(conn, cconn, "eth0")
        assert {x.name for x in nl.list_links(conn)} == {"lo", "cntbr0", "cntva", "cntvb", "cntvx0", "cntmv0",
                                                          "cntifb0", "cntbr1", host_end.name}


def _settled(found: nl.Link) -> nl.Link:
    return record.replace(found, flags=found.flags & ~(consts.IFF_LOWER_UP | _IFF_RUNNING), operstate=0)


def test_without_the_echo_the_created_links_are_looked_up(links, ctr, monkeypatch):
    """A kernel that sends no notification back (before NLM_F_ECHO support for new links): the same answers."""
    _, conn = links
    monkeypatch.setattr(link, "NLM_F_ECHO", 0)
    with NetNS(ctr.path) as handle, nl.open_conn(handle) as cconn:
        host, cont = _Counting(conn), _Counting(cconn)
        br = nl.ensure_bridge(host, "cntbr2")  # type: ignore[arg-type]
        assert host.sent == [consts.RTM_GETLINK, consts.RTM_NEWLINK, consts.RTM_GETLINK]
        assert br == nl.get_link(conn, "cntbr2") and br.up
        host_end, cont_end = nl.setup_veth(host, cont, "eth0")  # type: ignore[arg-type]
        assert cont.sent == [consts.RTM_NEWLINK, consts.RTM_GETLINK]
        assert cont_end == nl.get_link(cconn, "eth0") and host_end == nl.get_link(conn, host_end.name)
        assert cont_end.peer_index == host_end.index and host_end.up


class _Replay:
    """A Conn that answers each request with the next queued replies (a list, or an errno to raise)."""

    def __init__(self, *answers: Any) -> None:
        self.answers, self.sent = list(answers), []

    def request(self, msg_type: int, body: bytes, flags: int, what: str) -> Any:
        self.sent.append((msg_type, flags))
        answer = self.answers.pop(0)
        if isinstance(answer, int):
            raise NetlinkError(answer, what)
        return answer


def _newlink(index: int, name: str, kind: str) -> tuple[int, bytes]:
    body = (ifinfo._IFINFOMSG.pack(0, 1, index, consts.IFF_UP, 0)
            + attrs.attr(consts.IFLA_IFNAME, name.encode() + b"\0")
            + attrs.nested(consts.IFLA_LINKINFO, attrs.attr(consts.IFLA_INFO_KIND, kind.encode() + b"\0")))
    return consts.RTM_NEWLINK, body


def test_a_kernel_that_echoes_nothing_gets_a_look_up():
    """Kernels before NLM_F_ECHO support for new links send only the ACK."""
    conn = _Replay([], [_newlink(7, "cntbr9", "bridge")])
    br = link._create_bridge(conn, "cntbr9", 0, False, False)  # type: ignore[arg-type]
    assert (br.index, br.name, br.kind, br.up) == (7, "cntbr9", "bridge", True)
    assert conn.sent == [(consts.RTM_NEWLINK, consts.NLM_F_CREATE | consts.NLM_F_EXCL | consts.NLM_F_ECHO),
                         (consts.RTM_GETLINK, 0)]


def test_a_bridge_made_meanwhile_by_another_call_is_looked_up():
    conn = _Replay(errno.EEXIST, [_newlink(8, "cntbr9", "bridge")])
    br = link._create_bridge(conn, "cntbr9", 0, False, False)  # type: ignore[arg-type]
    assert br.index == 8 and [t for t, _ in conn.sent] == [consts.RTM_NEWLINK, consts.RTM_GETLINK]


def test_decode_survives_short_and_odd_attributes():
    header = ifinfo._IFINFOMSG.pack(0, 1, 3, 0, 0)
    odd = (attrs.attr(consts.IFLA_MTU, b"\x01\x02")  # not 4 bytes: ignored
           + attrs.attr(consts.IFLA_IFNAME, b"cnt\xffx\0")  # not UTF-8: replaced, never raised
           + attrs.attr(consts.IFLA_OPERSTATE, b""))
    got = ifinfo.decode_link(header + odd + b"\x08\x00")  # a torn trailing attribute
    assert (got.index, got.name, got.mtu, got.operstate, got.kind) == (3, "cnt\ufffdx", 0, 0, "")


_HOT_MESSAGES = """
import ipaddress
from cni_common.netlink import addr, consts, link, msg, route
msg.compile_tables()
import pyroute2.netlink as base
def refuse(self):
    raise AssertionError(f"{type(self).__name__}: its table was not compiled beforehand")
base.nlmsg_base.compile_nla_table = refuse
peer = {"attrs": [("IFLA_IFNAME", "veth01234567"), ("IFLA_MTU", 1400), ("IFLA_NET_NS_FD", 3)]}
bodies = [
    (16, link._key_body("eth0", ("IFLA_EXT_MASK", consts.RTEXT_FILTER_SKIP_STATS))),
    (16, link._ifinfo(0, ("IFLA_IFNAME", "eth0"), ("IFLA_MTU", 1400),
                      link._linkinfo("veth", ("VETH_INFO_PEER", peer)))),
    (16, link._ifinfo(0, ("IFLA_IFNAME", "cni0"), ("IFLA_ADDRESS", "02:00:00:00:00:01"), link._linkinfo("bridge"),
                      flags=1, change=1)),
    (16, link._ifinfo(5, ("IFLA_MASTER", 3))),
    (16, link._ifinfo(5, ("IFLA_PROTINFO", {"attrs": [("IFLA_BRPORT_MODE", 1)]}, msg.NLA_F_NESTED), family=7)),
    (20, addr._body(5, ipaddress.ip_interface("10.1.0.2/24"), 0, ("IFA_BROADCAST", "10.1.0.255"))),
    (24, route._body(route.Route(ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_address("10.1.0.1"), oif=5))),
]
for msg_type, body in bodies:
    msg.parse({16: "ifinfmsg", 20: "ifaddrmsg", 24: "rtmsg"}[msg_type], msg_type, body)
"""


def test_compile_tables_covers_the_messages_of_a_bridge_add_and_del():
    """What a warm process compiles before it forks is all a bridge ADD or DEL builds and reads (a fresh
    interpreter: this one has compiled tables already)."""
    done = subprocess.run([sys.executable, "-c", _HOT_MESSAGES], capture_output=True, text=True, timeout=60,
                          cwd=str(Path(__file__).resolve().parents[2]))
    assert done.returncode == 0, done.stderr


_ATTRS = st.lists(st.tuples(st.integers(0, 40) | st.sampled_from([consts.IFLA_LINKINFO | consts.NLA_F_NESTED]),
                            st.binary(max_size=24)), max_size=12)


@settings(max_examples=300, deadline=None)
@given(index=st.integers(-(2 ** 31), 2 ** 31 - 1), flags=st.integers(0, 2 ** 32 - 1), nlas=_ATTRS,
       tail=st.binary(max_size=6))
def test_decode_takes_any_attributes_without_raising(index, flags, nlas, tail):
    """Whatever attributes follow the header (odd lengths, bytes that are not text, a torn last one), the decoder
    answers from what it can read: a reply it does not understand never turns into a traceback."""
    body = ifinfo._IFINFOMSG.pack(0, 1, index, flags, 0) + b"".join(attrs.attr(k, v) for k, v in nlas) + tail
    got = ifinfo.decode_link(body)
    assert (got.index, got.flags) == (index, flags)
    assert isinstance(got.name, str) and isinstance(got.kind, str) and got.mtu >= 0
