"""Source-based routing for one container interface (the sbr plugin): a routing table per address, and the
rule ``from <address> lookup <table>`` that sends the address's traffic there.

Upstream's sbr, key by key: without ``table``, each address gets the first free table from 100 up (no rule and no
route uses it), its gateway as the table's default route, and a copy of the interface's main-table routes that
belong to the address's subnet (or to no subnet: connected and link-local routes); then the interface's
main-table routes are deleted. With ``table``, only the rules are added (the table is the user's or IPAM's).

Beyond upstream:
- a DEL needs no file at the netns path: upstream's lock step created an empty one (mode 0750) at a vanished
  path and then failed on it; ours locks the open namespace itself and takes a gone netns as nothing to do;
- DEL removes the rules of the previous result's addresses too, so a main plugin's DEL run first (the
  interface gone) leaks no rule;
- a failed ADD removes the rules and routes it added and puts the main-table routes back;
- CHECK checks the rules and tables, and :func:`source_tables` lets every CHECK of this suite find routes that
  sbr moved out of the main table (upstream's main plugins fail their CHECK after sbr).
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Optional, Union

from .errors import CNIError, ErrorCode, check_failed
from .log import get_logger

if TYPE_CHECKING:
    from .netlink import Conn, Route
    from .netns import NetNS
    from .types import IPConfig

log = get_logger(__name__)

IPInterface = Union[ipaddress.IPv4Interface, ipaddress.IPv6Interface]
#: The first table sbr considers (upstream's).
FIRST_TABLE = 100


@contextlib.contextmanager
def locked(ns: NetNS) -> Iterator[None]:
    """Serialise sbr calls on one container: an exclusive flock on the namespace itself (never a file made
    at its path, as upstream's lock did)."""
    import fcntl

    fcntl.flock(ns.fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(ns.fd, fcntl.LOCK_UN)


def _host_net(address: IPInterface) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(address.ip)


def free_tables(cont: Conn) -> Iterator[int]:
    """Tables from :data:`FIRST_TABLE` up that no rule and no route of the namespace uses."""
    from . import netlink as nl

    used = {r.table for r in nl.list_rules(cont)} | {r.table for r in nl.list_routes(cont, table=None)}
    table = FIRST_TABLE
    while True:
        if table not in used:
            yield table
        table += 1


def setup(cont: Conn, ifname: str, ips: list[IPConfig], table: Optional[int]) -> None:
    """ADD: the rules (and without ``table``, the tables and the move of the main-table routes). A failure undoes
    what this ADD did (upstream leaves its rules and tables half made)."""
    from . import netlink as nl
    from .errors import BestEffort

    link = nl.get_link(cont, ifname)
    undo: list[Callable[[], object]] = []
    try:
        if table is not None:
            for ip in ips:
                rule = nl.Rule(_host_net(ip.address), table)
                if nl.add_rule(cont, rule, exist_ok=True):
                    undo.append(functools.partial(nl.del_rule, cont, rule))
            return
        main = nl.list_routes(cont, oif=link.index)
        tables = free_tables(cont)
        for ip in ips:
            own = next(tables)
            rule = nl.Rule(_host_net(ip.address), own)
            nl.add_rule(cont, rule)
            undo.append(functools.partial(nl.del_rule, cont, rule))
            moved = [_in_table(route, own) for route in _routes_of(ip, main)]
            if ip.gateway is not None:
                default = ipaddress.ip_network("0.0.0.0/0" if ip.gateway.version == 4 else "::/0")
                moved.insert(0, nl.Route(default, ip.gateway, oif=link.index, table=own))
            for route in moved:
                nl.add_route(cont, route, replace=True)
                undo.append(functools.partial(nl.del_route, cont, route))  # the table is this ADD's own
        for route in main:
            nl.del_route(cont, route)
            undo.append(functools.partial(nl.add_route, cont, route, replace=True))
    except BaseException:
        steps = BestEffort()
        for step in reversed(undo):
            with steps:
                step()
        if steps.first is not None:
            log.warning("sbr ADD rollback incomplete: %s", "; ".join(steps.failures))
        raise


def _routes_of(ip: IPConfig, routes: Iterable[Route]) -> list[Route]:
    """The routes that follow an address into its table: those of its subnet, and those of no subnet."""
    subnet = ip.address.network
    out = []
    for r in routes:
        if r.dst.version != ip.address.version:
            continue
        src_in = r.prefsrc is not None and r.prefsrc in subnet
        gw_in = r.gateway is not None and r.gateway in subnet
        if src_in or gw_in or (r.prefsrc is None and r.gateway is None):
            out.append(r)
    return out


def _in_table(route: Route, table: int) -> Route:
    from . import netlink as nl

    return nl.Route(route.dst, route.gateway, oif=route.oif, priority=route.priority, table=table,
                    scope=route.scope, mtu=route.mtu, advmss=route.advmss, prefsrc=route.prefsrc)


def teardown(cont: Conn, ifname: str, known: Iterable[IPInterface], table: Optional[int]) -> None:
    """DEL: remove the rules from the interface's addresses and from ``known`` (the previous result's), in
    ``table`` when given; the tables' routes go with the interface."""
    from . import netlink as nl

    sources = {_host_net(a) for a in known}
    link = nl.find_link(cont, ifname)
    if link is not None:
        sources |= {_host_net(a.address) for a in nl.list_addrs(cont, link.index)}
    for rule in nl.list_rules(cont):
        if rule.src in sources and (table is None or rule.table == table):
            nl.del_rule(cont, rule)


def verify(cont: Conn, ifname: str, ips: list[IPConfig], table: Optional[int]) -> None:
    """CHECK: each address has its rule, and (without ``table``) its table has the default via its gateway."""
    from . import netlink as nl

    link = nl.find_link(cont, ifname)
    if link is None:
        raise check_failed(f"interface {ifname!r} not found")
    rules = nl.list_rules(cont)
    for ip in ips:
        src = _host_net(ip.address)
        found = [r for r in rules if r.src == src and (table is None or r.table == table)]
        if not found:
            raise check_failed(f"no rule from {src} for {ifname!r}")
        if table is None and ip.gateway is not None:
            routes = nl.list_routes(cont, oif=link.index, table=found[0].table)
            if not any(r.dst.prefixlen == 0 and r.gateway == ip.gateway for r in routes):
                raise check_failed(f"table {found[0].table} has no default route via {ip.gateway} for {ifname!r}")


def source_tables(cont: Conn, addresses: Iterable[IPInterface]) -> set[int]:
    """The tables that rules send these addresses' traffic to (where sbr moved their routes)."""
    from . import netlink as nl

    sources = {_host_net(a) for a in addresses}
    if not sources:
        return set()
    return {r.table for r in nl.list_rules(cont) if r.src in sources}


def chained_ips(prev_ips: list[IPConfig], interfaces: list[str], ifname: str) -> list[IPConfig]:
    """The previous result's addresses on ``ifname`` (an IP without an interface index counts as its)."""
    ips = [ip for ip in prev_ips
           if ip.interface is None or (0 <= ip.interface < len(interfaces) and interfaces[ip.interface] == ifname)]
    if not ips:
        raise CNIError(ErrorCode.INVALID_CONFIG, f"No IP addresses supplied on interface: {ifname} (prevResult.ips)")
    return ips
