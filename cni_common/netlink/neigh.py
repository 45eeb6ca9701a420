"""Permanent neighbour (ARP/NDP) and bridge FDB entries, as an overlay installs them per remote peer, and the
listings an overlay compares them with (``ip neigh show dev``, ``bridge fdb show dev``).

Messages are pyroute2's ``ndmsg`` (see :mod:`.msg`); MACs are checked by :func:`.attrs.mac_to_bytes` first.
"""

from __future__ import annotations

import errno
import ipaddress
import struct
from typing import Optional, Union

from ..record import record
from . import attrs, msg
from .conn import Conn, request_unless
from .consts import (
    AF_BRIDGE,
    AF_INET,
    AF_INET6,
    AF_UNSPEC,
    NLM_F_CREATE,
    NLM_F_REPLACE,
    NTF_SELF,
    NUD_PERMANENT,
    RTM_DELNEIGH,
    RTM_GETNEIGH,
    RTM_NEWNEIGH,
)

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
_IFINDEX = struct.Struct("=i")  # ndm_ifindex, at offset 4 of the ndmsg header


@record(frozen=True)
class Neighbour:
    """An ARP (IPv4) or NDP (IPv6) entry of one link; ``mac`` is "" while unresolved."""

    index: int
    ip: IPAddress
    mac: str
    state: int

    @property
    def permanent(self) -> bool:
        return bool(self.state & NUD_PERMANENT)


@record(frozen=True)
class FdbEntry:
    """A bridge or VXLAN forwarding entry; ``dst`` is the remote VTEP's underlay address (VXLAN only)."""

    index: int
    mac: str
    dst: Optional[IPAddress]
    state: int
    flags: int


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
    return request_unless(conn, RTM_DELNEIGH, body, 0, what, (errno.ENOENT, errno.ESRCH))


def list_neighbours(conn: Conn, index: int) -> list[Neighbour]:
    """``ip neigh show dev <index>``: the unicast ARP and NDP entries of link ``index``, in the kernel's order.

    Multicast entries (``ff02::16`` appears once the link sends its first MLD report) are the kernel's own
    NOARP bookkeeping: nobody programs them, so a reconcile must neither count nor remove them.
    """
    out: list[Neighbour] = []
    for m in _dump(conn, AF_UNSPEC, index, "failed to list neighbours"):
        dst = m.get_attr("NDA_DST")
        if m["family"] not in (AF_INET, AF_INET6) or not dst:
            continue
        ip = ipaddress.ip_address(dst)
        if not ip.is_multicast:
            out.append(Neighbour(index, ip, m.get_attr("NDA_LLADDR") or "", m["state"]))
    return out


def list_fdb(conn: Conn, index: int) -> list[FdbEntry]:
    """``bridge fdb show dev <index>``: the forwarding entries of link ``index`` (all-zero MACs, the
    flood entries of a VXLAN device, included)."""
    out: list[FdbEntry] = []
    for m in _dump(conn, AF_BRIDGE, index, "failed to list fdb"):
        mac, dst = m.get_attr("NDA_LLADDR"), m.get_attr("NDA_DST")
        if mac:
            out.append(FdbEntry(index, mac, ipaddress.ip_address(dst) if dst else None, m["state"], m["flags"]))
    return out


def _dump(conn: Conn, family: int, index: int, what: str) -> list:
    """The RTM_NEWNEIGH messages of one family (AF_UNSPEC: ARP and NDP) that belong to link ``index``."""
    out = []
    for mtype, payload in conn.dump(RTM_GETNEIGH, _body(family, 0), what):
        # Other links' entries are skipped before a full decode.
        if mtype == RTM_NEWNEIGH and _IFINDEX.unpack_from(payload, 4)[0] == index:
            out.append(msg.parse("ndmsg", mtype, payload))
    return out
