"""Permanent neighbour (ARP/NDP) and bridge FDB entries, as an overlay installs them per remote peer.

Messages are pyroute2's ``ndmsg`` (see :mod:`.msg`); MACs are checked by :func:`.attrs.mac_to_bytes` first.
"""

from __future__ import annotations

import errno
import ipaddress
from typing import Union

from . import attrs, msg
from .conn import Conn, NetlinkError
from .consts import (
    AF_BRIDGE,
    AF_INET,
    AF_INET6,
    NLM_F_CREATE,
    NLM_F_REPLACE,
    NTF_SELF,
    NUD_PERMANENT,
    RTM_DELNEIGH,
    RTM_NEWNEIGH,
)

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]


def _ip_family(ip: IPAddress) -> int:
    return AF_INET if ip.version == 4 else AF_INET6


def _mac(mac: str) -> tuple:
    return ("NDA_LLADDR", attrs.mac_to_str(attrs.mac_to_bytes(mac)))


def _body(family: int, index: int, *nlas: tuple, state: int = 0, flags: int = 0) -> bytes:
    return msg.build("ndmsg", nlas, family=family, ifindex=index, state=state, flags=flags)


def replace_neigh(conn: Conn, index: int, ip: IPAddress, mac: str) -> None:
    """``ip neigh replace <ip> lladdr <mac> dev <index> nud permanent``."""
    body = _body(_ip_family(ip), index, ("NDA_DST", str(ip)), _mac(mac), state=NUD_PERMANENT)
    conn.request(RTM_NEWNEIGH, body, NLM_F_CREATE | NLM_F_REPLACE, f"failed to set neighbour {ip} -> {mac}")


def delete_neigh(conn: Conn, index: int, ip: IPAddress) -> bool:
    """Remove the neighbour entry for ``ip`` on link ``index``; False when it was absent."""
    body = _body(_ip_family(ip), index, ("NDA_DST", str(ip)))
    return _delete(conn, body, f"failed to delete neighbour {ip}")


def replace_fdb(conn: Conn, index: int, mac: str, dst: IPAddress) -> None:
    """``bridge fdb replace <mac> dev <index> dst <dst> self permanent`` (the vxlan device's own FDB)."""
    body = _body(AF_BRIDGE, index, _mac(mac), ("NDA_DST", str(dst)), state=NUD_PERMANENT, flags=NTF_SELF)
    conn.request(RTM_NEWNEIGH, body, NLM_F_CREATE | NLM_F_REPLACE, f"failed to set fdb {mac} -> {dst}")


def delete_fdb(conn: Conn, index: int, mac: str, dst: IPAddress | None = None) -> bool:
    """Remove the FDB entry for ``mac`` (towards ``dst`` if given) on link ``index``; False when absent."""
    body = _body(AF_BRIDGE, index, _mac(mac), *([("NDA_DST", str(dst))] if dst is not None else []), flags=NTF_SELF)
    return _delete(conn, body, f"failed to delete fdb {mac}")


def _delete(conn: Conn, body: bytes, what: str) -> bool:
    try:
        conn.request(RTM_DELNEIGH, body, 0, what)
    except NetlinkError as exc:
        if exc.errno in (errno.ENOENT, errno.ESRCH):
            return False
        raise
    return True
