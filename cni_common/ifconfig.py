"""Layer 3 of one interface from a CNI result: addresses, link up, DAD, routes (upstream's ``ConfigureIface``,
kept in its ipam package), and the waits for kernel state that an ADD needs before it answers.

Nothing here knows bridges: the caller has put the link where it belongs and entered the namespace it lives in
where a sysctl has to be written there.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable

from . import sysctl
from .errors import CNIError, PluginCode, check_failed

if TYPE_CHECKING:
    from .netlink import Conn, Link
    from .types import IPAddress, Result

#: How long a link may take to become operationally up (upstream's budget for the bridge's host veth).
OPER_UP_TIMEOUT = 2.55
#: How long an IPv6 address may stay tentative before routes via an IPv6 gateway are added.
DAD_TIMEOUT = 5.0
#: Kernel state the ADD waits for usually settles within a few milliseconds (the container's link-local
#: address leaves "tentative" once the veth has carrier): re-check after 1 ms, doubling the pause up to 50 ms.
#: Upstream sleeps 50 ms before its first re-check, which every dual-stack pod paid.
FIRST_PAUSE = 0.001
MAX_PAUSE = 0.05

#: The interface index that a bridge attachment's result gives the container interface (the host bridge and veth
#: are 0 and 1).
CONTAINER_INTERFACE = 2


def configure_iface(cont: Conn, index: int, ifname: str, result: Result, interface: int = CONTAINER_INTERFACE,
                    wait_dad: bool = True) -> None:
    """Upstream's ConfigureIface: IPv6 sysctls, addresses, link up, wait for DAD, routes (ECMP append).

    Only the result's IPs that point at the container interface (``interface``: its index in the result) are
    added. Call inside the container's namespace (``cont`` is a connection to it): the sysctls act on the
    current namespace. ``wait_dad`` False: a link with no carrier yet (a tap before its hypervisor opens it)
    cannot finish DAD, so waiting would only fail the ADD.
    """
    from . import netlink as nl

    ips = [ip for ip in result.ips if ip.interface == interface]
    if any(ip.address.version == 6 for ip in ips):
        sysctl.write_best_effort(0, "ipv6", "conf", "lo", "disable_ipv6")
        sysctl.write_best_effort(0, "ipv6", "conf", ifname, "disable_ipv6")
        sysctl.write_best_effort(1, "ipv6", "conf", ifname, "keep_addr_on_down")
    first_gw: dict[int, IPAddress] = {}
    for ip in ips:
        nl.add_addr(cont, index, ip.address)
        if ip.gateway is not None:
            first_gw.setdefault(ip.gateway.version, ip.gateway)
    nl.set_up(cont, index)
    if 6 in first_gw and wait_dad:
        settle_dad(cont, index, ifname)
    for r in result.routes:
        gw = r.gw if r.gw is not None else first_gw.get(r.dst.version)
        nl.add_route(cont, nl.Route(r.dst, gw, oif=index, priority=r.priority, table=r.table or 254,
                                    scope=r.scope, mtu=r.mtu or 0, advmss=r.advmss or 0))


def check_layer3(cont: Conn, index: int, ifname: str, cont_idx: int, prev: Result) -> None:
    """CHECK: every address ``prev`` gives the interface (result index ``cont_idx``) is on link ``index``, and
    every route of ``prev`` is in the container, in its table (a route of no table: in main, or where sbr or
    vrf chained after the plugin moved it)."""
    from . import netlink as nl

    have = {a.address for a in nl.list_addrs(cont, index)}
    for ip in prev.ips:
        if ip.interface in (None, cont_idx) and ip.address not in have:
            raise check_failed(f"address {ip.address} not found on {ifname!r}")
    routes = nl.list_routes(cont, table=None)
    moved: set[int] | None = None  # where a chained sbr or vrf moved main-table routes, read when first needed
    for r in prev.routes:
        where = [x.table for x in routes if x.dst == r.dst and (r.gw is None or x.gateway == r.gw)]
        if (r.table or 254) in where:
            continue
        if r.table is None and where:
            moved = _moved_route_tables(cont, index, prev) if moved is None else moved
            if moved.intersection(where):
                continue
        raise check_failed(f"route {r.dst} via {r.gw} not found in the container")


def _moved_route_tables(cont: Conn, index: int, prev: Result) -> set[int]:
    """The tables a plugin chained after this one moved the interface's main-table routes to: sbr's (where rules
    send the container's addresses) and vrf's (the table of the VRF the link is a port of)."""
    from .srcroute import source_tables
    from .vrf import table_of

    tables = source_tables(cont, [ip.address for ip in prev.ips])
    vrf_table = table_of(cont, index)
    return tables | ({vrf_table} if vrf_table is not None else set())


def settle_dad(cont: Conn, index: int, ifname: str) -> None:
    """Wait until no IPv6 address of the link is tentative, so routes via an IPv6 gateway can be added."""
    from . import netlink as nl

    def settled() -> bool:
        addrs = nl.list_addrs(cont, index, nl.AF_INET6)
        failed = [str(a.address) for a in addrs if a.dad_failed]
        if failed:
            raise CNIError(PluginCode.ADDRESS_UNAVAILABLE, f"DAD failed on {ifname!r} for {', '.join(failed)}")
        return not any(a.tentative for a in addrs)

    if not wait_until(settled, DAD_TIMEOUT) and nl.get_link(cont, index).up:
        raise CNIError(PluginCode.LINK_FAILURE, f"IPv6 addresses of {ifname!r} still tentative after {DAD_TIMEOUT:g} s")


def wait_oper_up(conn: Conn, link: Link, what: str = "bridge port") -> None:
    """Wait until ``link`` is operationally up (a veth once its peer is up): traffic before that is lost (IPv6
    does not even resolve neighbours on a link that is not up yet)."""
    from . import netlink as nl

    if not wait_until(lambda: nl.get_link(conn, link.index).oper_up, OPER_UP_TIMEOUT):
        raise CNIError(PluginCode.LINK_FAILURE, f"{what} in error state: {link.name}")


def wait_until(ready: Callable[[], bool], timeout: float) -> bool:
    """Check ``ready`` now and then after 1, 2, 4... ms (at most 50 ms apart) until it is true; False when
    ``timeout`` seconds passed first."""
    deadline = time.monotonic() + timeout
    pause = FIRST_PAUSE
    while not ready():
        if time.monotonic() >= deadline:
            return False
        time.sleep(pause)
        pause = min(pause * 2, MAX_PAUSE)
    return True
