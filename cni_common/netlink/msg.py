"""Message bodies built and read with pyroute2's rtnetlink classes, for :class:`~.conn.Conn` to carry.

:class:`~.conn.Conn` sends and receives bodies: what follows the 16-byte ``nlmsghdr`` (it writes and checks the
headers itself: sequence numbers, ACKs, errors, dumps). pyroute2's classes encode and decode whole messages,
header first; these two functions convert between the two. Attribute names and value forms are pyroute2's
(``("IFLA_IFNAME", "eth0")``, MACs and IPs as strings); nested attributes are ``{"attrs": [...]}``, and a third
tuple item adds NLA flags (``NLA_F_NESTED`` where the kernel insists on it).
"""

from __future__ import annotations

import struct
from typing import Any, Sequence

from .consts import AF_BRIDGE, AF_INET, NLA_F_NESTED, RTM_NEWADDR, RTM_NEWLINK, RTM_NEWROUTE
from .pack import holds_packed_only, pack
from .pyroute2_light import message_class

__all__ = ["NLA_F_NESTED", "build", "build_with_pyroute2", "compile_tables", "parse"]
_NLMSGHDR = struct.Struct("=IHHII")


def build(kind: str, nlas: Sequence[tuple] = (), **fields: Any) -> bytes:
    """The body of a ``kind`` message ("ifinfmsg", "ifaddrmsg", "rtmsg", "ndmsg") with these header fields
    (``index=3``, ``family=AF_INET``...; unset ones are 0) and attributes. The common requests are packed by
    :mod:`.pack` (the same bytes, ~10 times cheaper); pyroute2 encodes the rest."""
    packed = pack(kind, nlas, fields)
    if packed is not None:
        return packed
    if holds_packed_only(nlas):  # pyroute2 would send the request without it
        raise ValueError(f"a {kind} request with an attribute only netlink/pack.py encodes, which it refused")
    return build_with_pyroute2(kind, nlas, **fields)


def build_with_pyroute2(kind: str, nlas: Sequence[tuple] = (), **fields: Any) -> bytes:
    """:func:`build` through pyroute2's classes, whatever the message."""
    msg = message_class(kind)()
    for name, value in fields.items():
        msg[name] = value
    msg["attrs"] = list(nlas)
    msg.encode()
    return bytes(msg.data[_NLMSGHDR.size : msg["header"]["length"]])


def parse(kind: str, msg_type: int, body: bytes) -> Any:
    """A received body decoded as a ``kind`` message (a pyroute2 nlmsg: ``m["index"]``, ``m.get_attr(...)``)."""
    msg = message_class(kind)(_NLMSGHDR.pack(_NLMSGHDR.size + len(body), msg_type, 0, 0, 0) + body)
    msg.decode()
    return msg


def compile_tables() -> None:
    """Build and read back one message of each kind a plugin call uses, so that pyroute2 compiles the attribute
    tables of those classes now (it does so per class, on its first message).

    For a warm process (docs/packaging.md) to call before it forks: its children then share the compiled tables
    instead of each compiling them again, ~1 ms of CPU per bridge ADD+DEL. The tables depend only on pyroute2's
    code, never on a call. An exec'd call never calls this (it compiles only what it uses).
    """
    for kind, msg_type, fields, nlas in _samples():
        parse(kind, msg_type, build_with_pyroute2(kind, nlas, **fields))


def _samples() -> list[tuple[str, int, dict[str, int], list[tuple]]]:
    """(kind, the type of its kernel replies, header fields, attributes): a message of each kind the plugin calls
    build and read, with the nested attributes that have tables of their own (link kinds, the veth peer,
    bridge-port flags, route metrics)."""
    link: list[tuple] = [("IFLA_IFNAME", "eth0"), ("IFLA_ADDRESS", "02:00:00:00:00:01"), ("IFLA_MTU", 1500),
                         ("IFLA_MASTER", 1), ("IFLA_EXT_MASK", 8)]
    kinds: list[tuple[str, list[tuple]]] = [
        ("veth", [("VETH_INFO_PEER", {"attrs": [("IFLA_IFNAME", "veth0"), ("IFLA_NET_NS_FD", 0)]})]),
        ("bridge", [("IFLA_BR_VLAN_FILTERING", 1)]),
        ("vxlan", [("IFLA_VXLAN_ID", 1), ("IFLA_VXLAN_LOCAL", "192.0.2.1"), ("IFLA_VXLAN_PORT", 8472)]),
    ]
    samples: list[tuple[str, int, dict[str, int], list[tuple]]] = [
        ("ifinfmsg", RTM_NEWLINK, {},
         [*link, ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", kind), ("IFLA_INFO_DATA", {"attrs": data})]})])
        for kind, data in kinds]
    samples.append(("ifinfmsg", RTM_NEWLINK, {"family": AF_BRIDGE},
                    [("IFLA_PROTINFO", {"attrs": [("IFLA_BRPORT_MODE", 1)]}, NLA_F_NESTED)]))
    samples.append(("ifaddrmsg", RTM_NEWADDR, {"family": AF_INET},
                    [("IFA_LOCAL", "192.0.2.1"), ("IFA_ADDRESS", "192.0.2.1"), ("IFA_FLAGS", 0x200),
                     ("IFA_BROADCAST", "192.0.2.255")]))
    samples.append(("rtmsg", RTM_NEWROUTE, {"family": AF_INET},
                    [("RTA_TABLE", 254), ("RTA_DST", "192.0.2.0"), ("RTA_GATEWAY", "192.0.2.1"), ("RTA_OIF", 1),
                     ("RTA_PRIORITY", 1), ("RTA_METRICS", {"attrs": [("RTAX_MTU", 1400)]})]))
    return samples
