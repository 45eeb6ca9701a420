"""Routes: add (ECMP append, as upstream's ConfigureIface does), replace, list, delete."""

from __future__ import annotations

import errno
import ipaddress
import struct
from dataclasses import dataclass
from typing import Optional, Union

from . import attrs
from .conn import Conn, NetlinkError
from .consts import (
    AF_INET,
    AF_INET6,
    AF_UNSPEC,
    NLM_F_APPEND,
    NLM_F_CREATE,
    NLM_F_EXCL,
    NLM_F_REPLACE,
    RT_SCOPE_LINK,
    RT_SCOPE_UNIVERSE,
    RT_TABLE_MAIN,
    RTA_DST,
    RTA_GATEWAY,
    RTA_METRICS,
    RTA_OIF,
    RTA_PRIORITY,
    RTA_TABLE,
    RTAX_ADVMSS,
    RTAX_MTU,
    RTM_DELROUTE,
    RTM_GETROUTE,
    RTM_NEWROUTE,
    RTN_UNICAST,
    RTNH_F_ONLINK,
    RTPROT_BOOT,
)

IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
_RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, protocol, scope, type, flags


@dataclass(frozen=True)
class Route:
    """A unicast route as the plugins see it. ``scope`` None means: link when there is no gateway, else global."""

    dst: IPNetwork
    gateway: Optional[IPAddress] = None
    oif: int = 0
    priority: Optional[int] = None
    table: int = RT_TABLE_MAIN
    scope: Optional[int] = None
    mtu: int = 0
    advmss: int = 0
    onlink: bool = False


def _body(route: Route, with_type: bool = True) -> bytes:
    family = AF_INET if route.dst.version == 4 else AF_INET6
    scope = route.scope
    if scope is None:
        scope = RT_SCOPE_LINK if route.gateway is None else RT_SCOPE_UNIVERSE
    table = route.table if route.table < 256 else 0
    head = _RTMSG.pack(family, route.dst.prefixlen, 0, 0, table, RTPROT_BOOT if with_type else 0, scope,
                       RTN_UNICAST if with_type else 0, RTNH_F_ONLINK if route.onlink else 0)
    body = [head, attrs.u32(RTA_TABLE, route.table)]
    if route.dst.prefixlen:
        body.append(attrs.ip(RTA_DST, route.dst.network_address))
    if route.gateway is not None:
        body.append(attrs.ip(RTA_GATEWAY, route.gateway))
    if route.oif:
        body.append(attrs.u32(RTA_OIF, route.oif))
    if route.priority is not None:
        body.append(attrs.u32(RTA_PRIORITY, route.priority))
    metrics = []
    if route.mtu:
        metrics.append(attrs.u32(RTAX_MTU, route.mtu))
    if route.advmss:
        metrics.append(attrs.u32(RTAX_ADVMSS, route.advmss))
    if metrics:
        body.append(attrs.nested(RTA_METRICS, *metrics))
    return b"".join(body)


def add_route(conn: Conn, route: Route, *, replace: bool = False) -> None:
    """Add ``route``: with ECMP append semantics (an existing route to the same dst gains a next hop, as the
    Go plugins' RouteAddEcmp does), or with ``replace`` overwrite whatever route has that dst/table/priority.
    """
    flags = NLM_F_CREATE | (NLM_F_REPLACE if replace else NLM_F_APPEND)
    conn.request(RTM_NEWROUTE, _body(route), flags, f"failed to add route {_describe(route)}")


def add_route_excl(conn: Conn, route: Route, *, exist_ok: bool = False) -> bool:
    """Add ``route`` only if no route to its dst exists; False when one did and ``exist_ok`` is set."""
    try:
        conn.request(RTM_NEWROUTE, _body(route), NLM_F_CREATE | NLM_F_EXCL, f"failed to add route {_describe(route)}")
    except NetlinkError as exc:
        if exist_ok and exc.errno == errno.EEXIST:
            return False
        raise
    return True


def del_route(conn: Conn, route: Route) -> bool:
    """Delete ``route`` (matched on dst, table, and gateway/oif/priority when set); False when it was absent."""
    try:
        conn.request(RTM_DELROUTE, _body(route, with_type=False), 0, f"failed to delete route {_describe(route)}")
    except NetlinkError as exc:
        if exc.errno == errno.ESRCH:
            return False
        raise
    return True


def list_routes(conn: Conn, family: int = AF_UNSPEC, *, oif: int = 0, table: int | None = RT_TABLE_MAIN) -> list[Route]:
    """Unicast routes of one family or both, optionally of one output link; ``table`` None means all tables.

    Multipath routes are listed without their next hops (the plugins never create them).
    """
    out: list[Route] = []
    body = _RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0)
    for mtype, payload in conn.dump(RTM_GETROUTE, body, "failed to list routes"):
        if mtype != RTM_NEWROUTE:
            continue
        fam, dst_len, _src, _tos, rtm_table, _proto, scope, rtype, rflags = _RTMSG.unpack_from(payload)
        if rtype != RTN_UNICAST or fam not in (AF_INET, AF_INET6):
            continue
        nla = attrs.parse(payload, _RTMSG.size)
        rt_table = attrs.get_u32(nla, RTA_TABLE, rtm_table)
        rt_oif = attrs.get_u32(nla, RTA_OIF)
        if (table is not None and rt_table != table) or (oif and rt_oif != oif):
            continue
        any_ip = ipaddress.IPv4Address(0) if fam == AF_INET else ipaddress.IPv6Address(0)
        dst_ip = attrs.get_ip(nla, RTA_DST) or any_ip
        metrics = attrs.parse(nla.get(RTA_METRICS, b""))
        out.append(Route(
            dst=ipaddress.ip_network(f"{dst_ip}/{dst_len}", strict=False),
            gateway=attrs.get_ip(nla, RTA_GATEWAY),
            oif=rt_oif,
            priority=attrs.get_u32(nla, RTA_PRIORITY) if RTA_PRIORITY in nla else None,
            table=rt_table,
            scope=scope,
            mtu=attrs.get_u32(metrics, RTAX_MTU),
            advmss=attrs.get_u32(metrics, RTAX_ADVMSS),
            onlink=bool(rflags & RTNH_F_ONLINK),
        ))
    return out


def _describe(route: Route) -> str:
    via = f" via {route.gateway}" if route.gateway is not None else ""
    dev = f" dev {route.oif}" if route.oif else ""
    return f"{route.dst}{via}{dev}"
