"""A link as the plugins see it (:class:`Link`), read straight from the kernel's RTM_NEWLINK reply.

Why not pyroute2's ``ifinfmsg`` here, when the rest of the netlink layer builds and reads messages with it: a
link's reply carries ~50 attributes (statistics, IFLA_AF_SPEC with every IPv4/IPv6 setting, IFLA_PROP_LIST...),
and pyroute2 decodes every one of them into objects to give back the ten scalars a :class:`Link` holds. That
cost ~0.8 ms of CPU per look-up, and a bridge ADD looked links up nine times (~7 ms of its ~18 ms of Python).
:func:`decode_link` reads the ifinfomsg header and those top-level attributes with :mod:`struct` (~0.02 ms).
What is specific to a link's kind (IFLA_INFO_DATA: a vxlan's VNI, a macvlan's mode) still goes through
pyroute2's decode, on demand (:func:`info_data`): only the calls that need it pay for it.
tests/unit/test_link_decode.py holds both decoders to the same answers on real kernel replies.
"""

from __future__ import annotations

import struct
from typing import Any

from ..record import record
from . import attrs, msg
from .consts import (
    IF_OPER_UP,
    IFF_ALLMULTI,
    IFF_LOWER_UP,
    IFF_PROMISC,
    IFF_UP,
    IFLA_ADDRESS,
    IFLA_IFALIAS,
    IFLA_IFNAME,
    IFLA_INFO_KIND,
    IFLA_LINK,
    IFLA_LINKINFO,
    IFLA_MASTER,
    IFLA_MTU,
    IFLA_OPERSTATE,
    IFLA_TXQLEN,
    RTM_NEWLINK,
)

#: struct ifinfomsg: family, pad, type, index, flags, change.
_IFINFOMSG = struct.Struct("=BxHiII")
_U32 = struct.Struct("=I")


@record(frozen=True)
class Link:
    """What the plugins need to know about a link."""

    index: int
    name: str
    mac: str
    mtu: int
    kind: str  # "bridge", "veth", "vxlan"...; "" for devices without rtnl link ops (lo, physical NICs)
    master: int  # index of the bridge it is a port of, 0 when none
    peer_index: int  # IFLA_LINK: for a veth, its peer's index (in the peer's namespace); else often = index
    flags: int  # IFF_* net_device flags
    operstate: int  # IF_OPER_*
    txqlen: int = 0  # IFLA_TXQLEN: the transmit queue length
    alias: str = ""  # IFLA_IFALIAS: free text a plugin marks its links with (bandwidth's ifbs; host-device keeps a
    #               lent device's host name here, as upstream does)

    @property
    def up(self) -> bool:
        return bool(self.flags & IFF_UP)

    @property
    def promisc(self) -> bool:
        return bool(self.flags & IFF_PROMISC)

    @property
    def allmulti(self) -> bool:
        return bool(self.flags & IFF_ALLMULTI)

    @property
    def oper_up(self) -> bool:
        """Carrier and operationally up (a bridge port has passed the forwarding-state checks)."""
        return self.operstate == IF_OPER_UP and bool(self.flags & IFF_LOWER_UP)


def decode_link(body: bytes) -> Link:
    """The Link described by an RTM_NEWLINK body (what follows the nlmsghdr)."""
    _, _, index, flags, _ = _IFINFOMSG.unpack_from(body)
    found = attrs.parse(body, _IFINFOMSG.size)
    linkinfo = found.get(IFLA_LINKINFO)
    operstate = found.get(IFLA_OPERSTATE)
    return Link(
        index=index,
        name=attrs.get_str(found, IFLA_IFNAME),
        mac=attrs.mac_to_str(found.get(IFLA_ADDRESS)),
        mtu=_u32(found, IFLA_MTU),
        kind=attrs.get_str(attrs.parse(linkinfo), IFLA_INFO_KIND) if linkinfo else "",
        master=_u32(found, IFLA_MASTER),
        peer_index=_u32(found, IFLA_LINK),
        flags=flags,
        operstate=operstate[0] if operstate else 0,
        txqlen=_u32(found, IFLA_TXQLEN),
        alias=attrs.get_str(found, IFLA_IFALIAS),
    )


def info_data(body: bytes) -> Any:
    """The IFLA_INFO_DATA of an RTM_NEWLINK body, decoded by pyroute2 (a nla: ``data.get_attr("IFLA_VXLAN_ID")``),
    or None for links of kinds without settings."""
    return msg.parse("ifinfmsg", RTM_NEWLINK, body).get_nested("IFLA_LINKINFO", "IFLA_INFO_DATA")


def _u32(found: dict[int, bytes], kind: int) -> int:
    value = found.get(kind)
    return _U32.unpack(value)[0] if value and len(value) == _U32.size else 0
