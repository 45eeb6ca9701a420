"""Permanent neighbour (ARP/NDP) and bridge FDB entries, as an overlay installs them per remote peer."""

from __future__ import annotations

import errno
import ipaddress
import struct
from typing import Union

from . import attrs
from .conn import Conn, NetlinkError
from .consts import (
    AF_BRIDGE,
    AF_INET,
    AF_INET6,
    NDA_DST,
    NDA_LLADDR,
    NLM_F_CREATE,
    NLM_F_REPLACE,
    NTF_SELF,
    NUD_PERMANENT,
    RTM_DELNEIGH,
    RTM_NEWNEIGH,
)

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
_NDMSG = struct.Struct("=BxxxiHBB")  # family, pad, index, state, flags, type


def _ip_family(ip: IPAddress) -> int:
    return AF_INET if ip.version == 4 else AF_INET6


def _mac(mac: str) -> bytes:
    return attrs.attr(NDA_LLADDR, attrs.mac_to_bytes(mac))


def replace_neigh(conn: Conn, index: int, ip: IPAddress, mac: str) -> None:
    """``ip neigh replace <ip> lladdr <mac> dev <index> nud permanent``."""
    body = _NDMSG.pack(_ip_family(ip), index, NUD_PERMANENT, 0, 0) + attrs.ip(NDA_DST, ip) + _mac(mac)
    conn.request(RTM_NEWNEIGH, body, NLM_F_CREATE | NLM_F_REPLACE, f"failed to set neighbour {ip} -> {mac}")


def delete_neigh(conn: Conn, index: int, ip: IPAddress) -> bool:
    """Remove the neighbour entry for ``ip`` on link ``index``; False when it was absent."""
    body = _NDMSG.pack(_ip_family(ip), index, 0, 0, 0) + attrs.ip(NDA_DST, ip)
    return _delete(conn, body, f"failed to delete neighbour {ip}")


def replace_fdb(conn: Conn, index: int, mac: str, dst: IPAddress) -> None:
    """``bridge fdb replace <mac> dev <index> dst <dst> self permanent`` (the vxlan device's own FDB)."""
    body = _NDMSG.pack(AF_BRIDGE, index, NUD_PERMANENT, NTF_SELF, 0) + _mac(mac) + attrs.ip(NDA_DST, dst)
    conn.request(RTM_NEWNEIGH, body, NLM_F_CREATE | NLM_F_REPLACE, f"failed to set fdb {mac} -> {dst}")


def delete_fdb(conn: Conn, index: int, mac: str, dst: IPAddress | None = None) -> bool:
    """Remove the FDB entry for ``mac`` (towards ``dst`` if given) on link ``index``; False when absent."""
    body = _NDMSG.pack(AF_BRIDGE, index, 0, NTF_SELF, 0) + _mac(mac)
    if dst is not None:
        body += attrs.ip(NDA_DST, dst)
    return _delete(conn, body, f"failed to delete fdb {mac}")


def _delete(conn: Conn, body: bytes, what: str) -> bool:
    try:
        conn.request(RTM_DELNEIGH, body, 0, what)
    except NetlinkError as exc:
        if exc.errno in (errno.ENOENT, errno.ESRCH):
            return False
        raise
    return True
