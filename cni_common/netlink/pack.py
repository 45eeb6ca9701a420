"""The rtnetlink requests a plugin call sends most, packed with :mod:`struct`: byte for byte what pyroute2's
classes make of them, for a fraction of the cost.

Why: a bridge ADD sends eleven requests and a DEL two. Through pyroute2 (:func:`.msg.build`) each one builds a tree
of message objects and walks its class tables: ~0.1 ms of CPU and ~13 page faults per request in a warm child
(docs/packaging.md, "The warm path": what the child touches of the warm process's memory is copied, ~3 µs a page
on a small VM), ~1.2 ms of a bridge ADD's ~7 ms of Python. Packed here: ~0.01 ms each.

Only the header fields and attributes in the tables below are packed here: links looked up, made (bridge, veth,
macvlan),
set up, given a master, an MTU, a MAC, bridge-port flags; addresses and routes. :func:`pack` answers None for
anything else (a vxlan's settings, VLANs, tc, neighbours, rules, an attribute not listed), and :func:`.msg.build`
then asks pyroute2, as before. Names and value forms are pyroute2's (``("IFLA_IFNAME", "eth0")``, MACs and IPs as
text, nested attributes as ``{"attrs": [...]}``, a third tuple item for NLA flags), so callers do not change.
tests/unit/test_netlink_pack.py holds both encoders to the same bytes.
"""

from __future__ import annotations

import socket
import struct
from typing import Any, Optional, Sequence

from .attrs import mac_to_bytes

_NLA = struct.Struct("=HH")
_U32 = struct.Struct("=I")
_U8 = struct.Struct("=B")
#: Header of each message kind: its struct and its fields in order (pyroute2's names).
_HEADERS: dict[str, tuple[struct.Struct, tuple[str, ...]]] = {
    "ifinfmsg": (struct.Struct("=BxHiII"), ("family", "ifi_type", "index", "flags", "change")),
    "ifaddrmsg": (struct.Struct("=BBBBI"), ("family", "prefixlen", "flags", "scope", "index")),
    "rtmsg": (struct.Struct("=BBBBBBBBI"),
              ("family", "dst_len", "src_len", "tos", "table", "proto", "scope", "type", "flags")),
}
# An attribute: name -> (kernel type, form). Forms: "z" NUL-terminated string, "I" u32, "B" u8, "mac" six bytes
# from text, "ip" an address of the message's family from text, "peer" a whole ifinfomsg (a veth's peer),
# "data" IFLA_INFO_DATA (its table depends on IFLA_INFO_KIND), or a table of nested attributes.
_Table = dict[str, tuple[int, Any]]
_BRIDGE_PORT: _Table = {"IFLA_BRPORT_MODE": (4, "B"), "IFLA_BRPORT_ISOLATED": (33, "B")}
_LINK_INFO: _Table = {"IFLA_INFO_KIND": (1, "z"), "IFLA_INFO_DATA": (2, "data")}
_INFO_DATA: dict[str, _Table] = {
    "veth": {"VETH_INFO_PEER": (1, "peer")},
    "bridge": {"IFLA_BR_VLAN_FILTERING": (7, "B")},
    # IFLA_MACVLAN_BC_QUEUE_LEN (Linux 5.11) is not in pyroute2's table, which drops it without a word: packed
    # here only (macvlan's ``bcqueuelen``; msg.build refuses a request that would lose it).
    "macvlan": {"IFLA_MACVLAN_MODE": (1, "I"), "IFLA_MACVLAN_BC_QUEUE_LEN": (7, "I")},
}
#: Attributes pyroute2 cannot encode: a request holding one is packed here or not sent (:func:`holds_packed_only`).
PACKED_ONLY = frozenset({"IFLA_MACVLAN_BC_QUEUE_LEN"})
_LINK: _Table = {
    "IFLA_ADDRESS": (1, "mac"), "IFLA_IFNAME": (3, "z"), "IFLA_MTU": (4, "I"), "IFLA_LINK": (5, "I"),
    "IFLA_MASTER": (10, "I"),
    "IFLA_PROTINFO": (12, _BRIDGE_PORT), "IFLA_TXQLEN": (13, "I"), "IFLA_LINKINFO": (18, _LINK_INFO),
    "IFLA_NET_NS_FD": (28, "I"), "IFLA_EXT_MASK": (29, "I"),
}
_ADDR: _Table = {"IFA_ADDRESS": (1, "ip"), "IFA_LOCAL": (2, "ip"), "IFA_BROADCAST": (4, "ip"), "IFA_FLAGS": (8, "I")}
_METRICS: _Table = {"RTAX_MTU": (2, "I"), "RTAX_ADVMSS": (8, "I")}
_ROUTE: _Table = {
    "RTA_DST": (1, "ip"), "RTA_OIF": (4, "I"), "RTA_GATEWAY": (5, "ip"), "RTA_PRIORITY": (6, "I"),
    "RTA_PREFSRC": (7, "ip"), "RTA_METRICS": (8, _METRICS), "RTA_TABLE": (15, "I"),
}
_ATTRS = {"ifinfmsg": _LINK, "ifaddrmsg": _ADDR, "rtmsg": _ROUTE}


class _NotHere(Exception):
    """Something this module does not pack: the caller falls back to pyroute2."""


def pack(kind: str, nlas: Sequence[tuple], fields: dict[str, int]) -> Optional[bytes]:
    """The body of a ``kind`` message (what follows the nlmsghdr), or None when this module does not know all of
    it (then pyroute2 encodes it)."""
    if kind not in _HEADERS:
        return None
    try:
        return _message(kind, nlas, fields)
    except (_NotHere, ValueError, TypeError, AttributeError, OSError, struct.error):
        return None  # a value pyroute2 may encode its own way (a malformed MAC or IP, an int out of range)


def _message(kind: str, nlas: Sequence[tuple], fields: dict[str, int]) -> bytes:
    header, names = _HEADERS[kind]
    if not fields.keys() <= set(names):
        raise _NotHere
    family = fields.get("family", 0)
    return header.pack(*(fields.get(name, 0) for name in names)) + _attrs(nlas, _ATTRS[kind], family)


def _attrs(nlas: Sequence[tuple], table: _Table, family: int) -> bytes:
    out = b""
    kind = ""
    for nla in nlas:
        name, value = nla[0], nla[1]
        flags = nla[2] if len(nla) > 2 else 0
        spec = table.get(name)
        if spec is None:
            raise _NotHere
        number, form = spec
        if form == "z":
            payload = value.encode() + b"\0"
            if name == "IFLA_INFO_KIND":
                kind = value
        elif form == "I":
            payload = _U32.pack(value)
        elif form == "B":
            payload = _U8.pack(value)
        elif form == "mac":
            if "-" in value:  # pyroute2 reads colons only: such a MAC is its to refuse
                raise _NotHere
            payload = mac_to_bytes(value)
        elif form == "ip":
            if family not in (socket.AF_INET, socket.AF_INET6):
                raise _NotHere
            payload = socket.inet_pton(family, value)
        elif form == "peer":
            payload = _message("ifinfmsg", value.get("attrs", ()), {k: v for k, v in value.items() if k != "attrs"})
        else:
            nested = _INFO_DATA.get(kind) if form == "data" else form
            if nested is None or not isinstance(value, dict) or value.keys() != {"attrs"}:
                raise _NotHere
            payload = _attrs(value["attrs"], nested, family)
        out += _NLA.pack(_NLA.size + len(payload), number | flags) + payload + b"\0" * (-len(payload) % 4)
    return out


def holds_packed_only(nlas: Sequence[tuple]) -> bool:
    """Whether ``nlas`` (nested ones too) hold an attribute of :data:`PACKED_ONLY`."""
    for nla in nlas:
        if nla[0] in PACKED_ONLY:
            return True
        value = nla[1]
        if isinstance(value, dict) and holds_packed_only(value.get("attrs", ())):
            return True
    return False
