"""The routes of a DHCP lease, as upstream's dhcp plugin returns them.

A server gives routes in up to three options, and RFC 3442 says which win:
- option 121, classless static routes: when the lease has it, its routes are the result's and options 33 and 3
  give none. A route whose router is 0.0.0.0 is on the link itself: ``scope`` 253 (link), as upstream v1.8+;
- otherwise option 33, static routes (RFC 2132: destination and router pairs, each destination's prefix its
  address class's: /8, /16 or /24), then the default route through the first router (option 3).

pyroute2's DHCP client does not decode options 33 and 121; it keeps them as their bytes (a list of ints under
the names ``static_route`` and ``classless_static_route``), which this module reads. A server asked for them
must have them requested: ``request: [{"option": "classless-static-routes"}]`` (or ``static-routes``).
"""

from __future__ import annotations

import ipaddress
from typing import Any, Sequence

#: RT_SCOPE_LINK: a route with no router reaches its destination on the link.
SCOPE_LINK = 253


def lease_routes(options: dict[str, Any], gateway: str | None) -> list[dict[str, Any]]:
    """The result's ``routes`` for a lease with these decoded options and this gateway (its first router)."""
    classless = classless_routes(options.get("classless_static_route"))
    if classless:
        return classless
    routes = static_routes(options.get("static_route"))
    if gateway:
        routes.append({"dst": "0.0.0.0/0", "gw": gateway})
    return routes


def classless_routes(data: Sequence[int] | None) -> list[dict[str, Any]]:
    """Option 121 (RFC 3442): each route is its prefix length, the destination's significant octets, then the
    router. A malformed option (a prefix over 32, a route cut short) gives no routes at all, as upstream's."""
    raw = _bytes(data)
    routes: list[dict[str, Any]] = []
    while len(raw) >= 5:
        width = raw[0]
        octets = (width + 7) // 8
        if width > 32 or len(raw) < 1 + octets + 4:
            return []
        network = ipaddress.IPv4Network((bytes(raw[1:1 + octets]).ljust(4, b"\0"), width), strict=False)
        router = ipaddress.IPv4Address(bytes(raw[1 + octets:5 + octets]))
        route: dict[str, Any] = {"dst": str(network), "gw": str(router)}
        if router.is_unspecified:
            route["scope"] = SCOPE_LINK
        routes.append(route)
        raw = raw[5 + octets:]
    return routes


def static_routes(data: Sequence[int] | None) -> list[dict[str, Any]]:
    """Option 33 (RFC 2132): destination and router pairs, the destination's prefix that of its address class.
    A destination of class D or E (no class prefix) is left out, and so is a trailing piece shorter than a pair."""
    raw = _bytes(data)
    routes = []
    for start in range(0, len(raw) - len(raw) % 8, 8):
        destination = ipaddress.IPv4Address(bytes(raw[start:start + 4]))
        prefix = _class_prefix(destination)
        if prefix is None:
            continue
        network = ipaddress.IPv4Network((destination, prefix), strict=False)
        routes.append({"dst": str(network), "gw": str(ipaddress.IPv4Address(bytes(raw[start + 4:start + 8])))})
    return routes


def _class_prefix(address: ipaddress.IPv4Address) -> int | None:
    first = address.packed[0]
    if first < 128:
        return 8
    if first < 192:
        return 16
    if first < 224:
        return 24
    return None


def _bytes(data: Sequence[int] | None) -> bytes:
    if not data:
        return b""
    try:
        return bytes(data)
    except (TypeError, ValueError):  # not a list of octets: nothing to read
        return b""
