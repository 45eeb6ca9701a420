"""Interface addresses: add (optionally tolerating an existing one), list, delete."""

from __future__ import annotations

import errno
import ipaddress
import struct
from dataclasses import dataclass
from typing import Union

from . import attrs
from .conn import Conn, NetlinkError
from .consts import (
    AF_INET,
    AF_INET6,
    AF_UNSPEC,
    IFA_ADDRESS,
    IFA_BROADCAST,
    IFA_F_DADFAILED,
    IFA_F_NODAD,
    IFA_F_TENTATIVE,
    IFA_FLAGS,
    IFA_LOCAL,
    NLM_F_CREATE,
    NLM_F_EXCL,
    RT_SCOPE_UNIVERSE,
    RTM_DELADDR,
    RTM_GETADDR,
    RTM_NEWADDR,
)

IPInterface = Union[ipaddress.IPv4Interface, ipaddress.IPv6Interface]
_IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index


@dataclass(frozen=True)
class Addr:
    """An address on a link; ``flags`` are IFA_F_* (tentative, dadfailed, ...)."""

    index: int
    address: IPInterface
    scope: int
    flags: int

    @property
    def tentative(self) -> bool:
        return bool(self.flags & IFA_F_TENTATIVE)

    @property
    def dad_failed(self) -> bool:
        return bool(self.flags & IFA_F_DADFAILED)

    @property
    def is_global_unicast(self) -> bool:
        """What upstream's DEL collects for the masquerade teardown (no link-local, loopback, multicast)."""
        ip = self.address.ip
        return self.scope == RT_SCOPE_UNIVERSE and not (ip.is_link_local or ip.is_loopback or ip.is_multicast)


def _family(address: IPInterface) -> int:
    return AF_INET if address.version == 4 else AF_INET6


def _body(index: int, address: IPInterface, flags: int = 0) -> bytes:
    body = _IFADDRMSG.pack(_family(address), address.network.prefixlen, flags & 0xFF, RT_SCOPE_UNIVERSE, index)
    body += attrs.ip(IFA_LOCAL, address.ip) + attrs.ip(IFA_ADDRESS, address.ip)
    if flags > 0xFF:
        body += attrs.u32(IFA_FLAGS, flags)
    return body


def add_addr(conn: Conn, index: int, address: IPInterface, *, exist_ok: bool = False, nodad: bool = False) -> bool:
    """Add ``address`` to link ``index``; returns False when it was already there and ``exist_ok`` is set.

    IPv4 addresses get the subnet's broadcast address, as the Go netlink library sets it.
    """
    body = _body(index, address, IFA_F_NODAD if nodad else 0)
    net = address.network
    if address.version == 4 and net.prefixlen < 31:
        body += attrs.ip(IFA_BROADCAST, net.broadcast_address)
    try:
        conn.request(RTM_NEWADDR, body, NLM_F_CREATE | NLM_F_EXCL, f"failed to add IP addr {address} to link {index}")
    except NetlinkError as exc:
        if exist_ok and exc.errno == errno.EEXIST:
            return False
        raise
    return True


def list_addrs(conn: Conn, index: int = 0, family: int = AF_UNSPEC) -> list[Addr]:
    """Addresses of link ``index`` (0: all links), of one family or both."""
    out: list[Addr] = []
    body = _IFADDRMSG.pack(family, 0, 0, 0, 0)
    for mtype, payload in conn.dump(RTM_GETADDR, body, f"failed to list addresses of link {index}"):
        if mtype != RTM_NEWADDR:
            continue
        fam, prefixlen, flags, scope, ifindex = _IFADDRMSG.unpack_from(payload)
        if index and ifindex != index:
            continue
        nla = attrs.parse(payload, _IFADDRMSG.size)
        # IFA_LOCAL is the address itself; IFA_ADDRESS is the peer on point-to-point links (IPv4 only).
        ip = attrs.get_ip(nla, IFA_LOCAL) or attrs.get_ip(nla, IFA_ADDRESS)
        if ip is None:
            continue
        flags = attrs.get_u32(nla, IFA_FLAGS, flags)
        out.append(Addr(ifindex, ipaddress.ip_interface(f"{ip}/{prefixlen}"), scope, flags))
    return out


def del_addr(conn: Conn, index: int, address: IPInterface) -> bool:
    """Remove ``address`` from link ``index``; False when it was not there."""
    try:
        conn.request(RTM_DELADDR, _body(index, address), 0, f"failed to delete IP addr {address} from link {index}")
    except NetlinkError as exc:
        if exc.errno in (errno.EADDRNOTAVAIL, errno.ENODEV):
            return False
        raise
    return True
