"""Routes: add (ECMP append, as upstream's ConfigureIface does), replace, list, delete, and ``ip route get``
(pyroute2's ``rtmsg``)."""

from __future__ import annotations

import errno
import ipaddress
from typing import Optional, Union

from ..record import record
from . import msg
from .conn import Conn, NetlinkError, request_unless
from .consts import (
    AF_INET,
    AF_INET6,
    AF_UNSPEC,
    NLM_F_APPEND,
    NLM_F_CREATE,
    NLM_F_EXCL,
    NLM_F_REPLACE,
    RT_SCOPE_LINK,
    RT_SCOPE_NOWHERE,
    RT_SCOPE_UNIVERSE,
    RT_TABLE_MAIN,
    RTM_DELROUTE,
    RTM_GETROUTE,
    RTM_NEWROUTE,
    RTN_UNICAST,
    RTNH_F_ONLINK,
    RTPROT_BOOT,
)

IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]


@record(frozen=True)
class Route:
    """A unicast route as the plugins see it. ``scope`` None means: link when there is no gateway, else global
    (on delete: any scope)."""

    dst: IPNetwork
    gateway: Optional[IPAddress] = None
    oif: int = 0
    priority: Optional[int] = None
    table: int = RT_TABLE_MAIN
    scope: Optional[int] = None
    mtu: int = 0
    advmss: int = 0
    onlink: bool = False
    prefsrc: Optional[IPAddress] = None  # the source address the kernel picks for traffic along the route


def _body(route: Route, delete: bool = False) -> bytes:
    """An add request, or with ``delete`` a delete request: no type or protocol, and scope "nowhere" unless one
    is given, which the kernel reads as "any" (a scope of link would match no route through a gateway)."""
    family = AF_INET if route.dst.version == 4 else AF_INET6
    scope = route.scope
    if scope is None and delete:
        scope = RT_SCOPE_NOWHERE
    elif scope is None:
        scope = RT_SCOPE_LINK if route.gateway is None else RT_SCOPE_UNIVERSE
    nlas: list[tuple] = [("RTA_TABLE", route.table)]
    if route.dst.prefixlen:
        nlas.append(("RTA_DST", str(route.dst.network_address)))
    if route.gateway is not None:
        nlas.append(("RTA_GATEWAY", str(route.gateway)))
    if route.oif:
        nlas.append(("RTA_OIF", route.oif))
    if route.prefsrc is not None:
        nlas.append(("RTA_PREFSRC", str(route.prefsrc)))
    if route.priority is not None:
        nlas.append(("RTA_PRIORITY", route.priority))
    metrics = []
    if route.mtu:
        metrics.append(("RTAX_MTU", route.mtu))
    if route.advmss:
        metrics.append(("RTAX_ADVMSS", route.advmss))
    if metrics:
        nlas.append(("RTA_METRICS", {"attrs": metrics}, msg.NLA_F_NESTED))
    return msg.build("rtmsg", nlas, family=family, dst_len=route.dst.prefixlen,
                     table=route.table if route.table < 256 else 0, proto=0 if delete else RTPROT_BOOT,
                     scope=scope, type=0 if delete else RTN_UNICAST, flags=RTNH_F_ONLINK if route.onlink else 0)


def add_route(conn: Conn, route: Route, *, replace: bool = False) -> None:
    """Add ``route``: with ECMP append semantics (an existing route to the same dst gains a next hop, as the
    Go plugins' RouteAddEcmp does), or with ``replace`` overwrite whatever route has that dst/table/priority.
    """
    flags = NLM_F_CREATE | (NLM_F_REPLACE if replace else NLM_F_APPEND)
    conn.request(RTM_NEWROUTE, _body(route), flags, f"failed to add route {_describe(route)}")


def add_route_excl(conn: Conn, route: Route, *, exist_ok: bool = False) -> bool:
    """Add ``route`` only if no route to its dst exists; False when one did and ``exist_ok`` is set."""
    return request_unless(conn, RTM_NEWROUTE, _body(route), NLM_F_CREATE | NLM_F_EXCL,
                          f"failed to add route {_describe(route)}", (errno.EEXIST,) if exist_ok else ())


def del_route(conn: Conn, route: Route) -> bool:
    """Delete ``route`` (matched on dst, table, and gateway/oif/priority/scope when set); False when it was absent."""
    return request_unless(conn, RTM_DELROUTE, _body(route, delete=True), 0,
                          f"failed to delete route {_describe(route)}", (errno.ESRCH,))


def list_routes(conn: Conn, family: int = AF_UNSPEC, *, oif: int = 0, table: int | None = RT_TABLE_MAIN) -> list[Route]:
    """Unicast routes of one family or both, optionally of one output link; ``table`` None means all tables.

    Multipath routes are listed without their next hops (the plugins never create them).
    """
    out: list[Route] = []
    body = msg.build("rtmsg", family=family)
    for mtype, payload in conn.dump(RTM_GETROUTE, body, "failed to list routes"):
        # rtm_family is byte 0 and rtm_type byte 7: other routes are skipped before a full decode.
        if mtype != RTM_NEWROUTE or payload[7] != RTN_UNICAST or payload[0] not in (AF_INET, AF_INET6):
            continue
        m = msg.parse("rtmsg", mtype, payload)
        rt_table = m.get_attr("RTA_TABLE", m["table"])
        rt_oif = m.get_attr("RTA_OIF", 0)
        if (table is not None and rt_table != table) or (oif and rt_oif != oif):
            continue
        dst_ip = m.get_attr("RTA_DST") or ("0.0.0.0" if m["family"] == AF_INET else "::")
        gateway = m.get_attr("RTA_GATEWAY")
        prefsrc = m.get_attr("RTA_PREFSRC")
        metrics = m.get_attr("RTA_METRICS")
        out.append(Route(
            dst=ipaddress.ip_network(f"{dst_ip}/{m['dst_len']}", strict=False),
            gateway=ipaddress.ip_address(gateway) if gateway else None,
            oif=rt_oif,
            priority=m.get_attr("RTA_PRIORITY"),
            table=rt_table,
            scope=m["scope"],
            mtu=metrics.get_attr("RTAX_MTU", 0) if metrics is not None else 0,
            advmss=metrics.get_attr("RTAX_ADVMSS", 0) if metrics is not None else 0,
            onlink=bool(m["flags"] & RTNH_F_ONLINK),
            prefsrc=ipaddress.ip_address(prefsrc) if prefsrc else None,
        ))
    return out


@record(frozen=True)
class RouteLookup:
    """Where the kernel would send a packet: output link, preferred source and next hop (None: on link)."""

    oif: int
    prefsrc: Optional[IPAddress]
    gateway: Optional[IPAddress]


def route_get(conn: Conn, dst: IPAddress) -> RouteLookup:
    """``ip route get <dst>``: a FIB lookup, nothing is sent; NetlinkError (ENETUNREACH...) when no route."""
    family = AF_INET if dst.version == 4 else AF_INET6
    body = msg.build("rtmsg", [("RTA_DST", str(dst))], family=family, dst_len=dst.max_prefixlen)
    replies = conn.request(RTM_GETROUTE, body, 0, f"no route to {dst}")
    m = next((msg.parse("rtmsg", mtype, payload) for mtype, payload in replies if mtype == RTM_NEWROUTE), None)
    if m is None:
        raise NetlinkError(errno.ENETUNREACH, f"no route to {dst}", "no answer to the route lookup")
    src, gateway = m.get_attr("RTA_PREFSRC"), m.get_attr("RTA_GATEWAY")
    return RouteLookup(m.get_attr("RTA_OIF", 0), ipaddress.ip_address(src) if src else None,
                       ipaddress.ip_address(gateway) if gateway else None)


def _describe(route: Route) -> str:
    via = f" via {route.gateway}" if route.gateway is not None else ""
    dev = f" dev {route.oif}" if route.oif else ""
    return f"{route.dst}{via}{dev}"
