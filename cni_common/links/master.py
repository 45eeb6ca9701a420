"""Which link a child (macvlan, ipvlan, vlan) hangs off: ``master``, else the default route's link, else (ipvlan
chained) the previous result's one interface."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from ..errors import CNIError, ErrorCode

if TYPE_CHECKING:
    from ..netlink import Conn, Link
    from ..types import Result


def default_route_link(conn: Conn) -> str:
    """The link of the main table's first default route (IPv4, then IPv6), as upstream picks it."""
    from .. import netlink as nl

    for family in (nl.AF_INET, nl.AF_INET6):
        for route in nl.list_routes(conn, family):
            if route.dst.prefixlen == 0 and route.oif:
                return nl.get_link(conn, route.oif).name
    raise CNIError(ErrorCode.INVALID_CONFIG, "no default route interface found (set \"master\")")


def chained_master(prev: Optional[Result]) -> str:
    """ipvlan chained without ``master``: the previous plugin's one named interface."""
    names = [itf.name for itf in prev.interfaces if itf.name] if prev is not None else []
    if len(names) != 1:
        raise CNIError(ErrorCode.INVALID_CONFIG,
                       "chained master failure. PrevResult lacks a single named interface")
    return names[0]


def lookup(conn: Conn, name: str) -> Link:
    """The master link ``name`` in ``conn``'s namespace; a missing one blames the config's ``master``."""
    from .. import netlink as nl

    link = nl.find_link(conn, name)
    if link is None:
        raise CNIError(ErrorCode.INVALID_CONFIG, f'failed to lookup master "{name}": Link not found')
    return link


def check_mtu(mtu: int, master: Link) -> None:
    """A child's MTU may be 0 (inherit) up to its master's."""
    if not 0 <= mtu <= master.mtu:
        raise CNIError(ErrorCode.INVALID_CONFIG, f"invalid MTU {mtu}, must be [0, master MTU({master.mtu})]")
