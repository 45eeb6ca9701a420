"""A VRF (an L3 master device with its own routing table) in the container, and an interface enslaved to it
with its routes moved into the VRF's table: the vrf plugin's work.

Upstream's vrf (v1.9), key by key: the VRF is found or made (with ``table``, or the lowest table id from 1 up
that no other VRF of the namespace uses) and set up; the interface's global IPv6 addresses and its main-table
routes of universe scope are saved, the interface enslaved, the IPv6 addresses the enslaving dropped added
again, and the saved routes added into the VRF's table.

Beyond upstream: a failed ADD takes the interface out again and removes a VRF it made; DEL succeeds when the
interface is gone and the VRF is still there (upstream failed with ``resetMaster: could not get link by name``),
and when another DEL removed the VRF first (ENODEV, PR #1282: that error stopped the runtime's remaining DELs
and leaked namespaces).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Optional

from .errors import CNIError, ErrorCode, PluginCode, check_failed

if TYPE_CHECKING:
    from .netlink import Conn, Link

KIND = "vrf"


def _vrfs(cont: Conn) -> list[tuple[Link, int]]:
    """Every VRF of the namespace with its table."""
    from . import netlink as nl

    out = []
    for link in nl.list_links(cont):
        if link.kind == KIND:
            _, data = nl.get_link_data(cont, link.index)
            out.append((link, int(data.get("IFLA_VRF_TABLE", 0))))
    return out


def attach(cont: Conn, ifname: str, name: str, table: int) -> None:
    """ADD: the VRF (made when missing) and ``ifname`` in it; a failure leaves the interface out and removes a
    VRF this ADD made (upstream leaves both)."""
    from . import netlink as nl

    existed = nl.find_link(cont, name) is not None
    vrf, table = ensure(cont, name, table)
    try:
        enslave(cont, ifname, vrf, table)
    except BaseException:
        link = nl.find_link(cont, ifname)
        with contextlib.suppress(CNIError):
            if link is not None and link.master == vrf.index:
                nl.set_master(cont, link.index, 0)
            if not existed:
                nl.delete_link(cont, vrf.index)
        raise


def ensure(cont: Conn, name: str, table: int) -> tuple[Link, int]:
    """The VRF ``name`` (made, up, when missing) and its table; ``table`` 0 picks the lowest free one."""
    from . import netlink as nl

    existing = nl.find_link(cont, name)
    if existing is not None:
        if existing.kind != KIND:
            raise CNIError(ErrorCode.INVALID_CONFIG, f"Netlink {name} is not a VRF")
        _, data = nl.get_link_data(cont, existing.index)
        have = int(data.get("IFLA_VRF_TABLE", 0))
        if table and have != table:
            raise CNIError(ErrorCode.INVALID_CONFIG, f"VRF {name} already exist with different routing table {have}")
        return existing, have
    if not table:
        used = {t for _, t in _vrfs(cont)}
        table = next(t for t in range(1, len(used) + 2) if t not in used)
    nl.create_link(cont, name, KIND, ("IFLA_VRF_TABLE", table))
    vrf = nl.get_link(cont, name)
    nl.set_up(cont, vrf.index)
    return vrf, table


def enslave(cont: Conn, ifname: str, vrf: Link, table: int) -> None:
    """Make ``ifname`` a port of the VRF, keeping its global IPv6 addresses and moving its main-table routes of
    universe scope into the VRF's table."""
    from . import netlink as nl
    from .ifconfig import settle_dad

    link = nl.get_link(cont, ifname)
    if link.master:
        if link.master == vrf.index:
            return  # an ADD repeated by the runtime
        master = nl.get_link(cont, link.master).name
        raise CNIError(PluginCode.LINK_FAILURE, f"interface {ifname} has already a master set: {master}")
    v6 = [a.address for a in nl.list_addrs(cont, link.index, nl.AF_INET6) if a.is_global_unicast]
    routes = [r for r in nl.list_routes(cont, oif=link.index) if r.scope == 0]
    nl.set_master(cont, link.index, vrf.index)
    have = {a.address for a in nl.list_addrs(cont, link.index, nl.AF_INET6)}
    for address in v6:
        if address not in have:
            nl.add_addr(cont, link.index, address, exist_ok=True)
    if v6:
        settle_dad(cont, link.index, ifname)
    for r in routes:
        nl.add_route(cont, nl.Route(r.dst, r.gateway, oif=r.oif, priority=r.priority, table=table, scope=r.scope,
                                    mtu=r.mtu, advmss=r.advmss, prefsrc=r.prefsrc), replace=True)


def release(cont: Conn, ifname: str, name: str) -> None:
    """DEL: ``ifname`` out of the VRF, and the VRF removed when no port is left; done when either is gone."""
    from . import netlink as nl

    vrf = nl.find_link(cont, name)
    if vrf is None or vrf.kind != KIND:
        return
    link = nl.find_link(cont, ifname)
    if link is not None and link.master == vrf.index:
        nl.set_master(cont, link.index, 0)
    if not any(lk.master == vrf.index for lk in nl.list_links(cont)):
        nl.delete_link(cont, vrf.index)  # already gone (a concurrent DEL) is fine


def verify(cont: Conn, ifname: str, name: str) -> None:
    """CHECK: ``ifname`` is a port of the VRF ``name``."""
    from . import netlink as nl

    vrf, link = nl.find_link(cont, name), nl.find_link(cont, ifname)
    if vrf is None or vrf.kind != KIND or link is None or link.master != vrf.index:
        raise check_failed(f"failed to find {ifname} associated to vrf {name}")


def table_of(cont: Conn, index: int) -> Optional[int]:
    """The table of the VRF link ``index`` is a port of (None when it is in none)."""
    from . import netlink as nl

    link = nl.find_link(cont, index)
    if link is None or not link.master:
        return None
    master, data = nl.get_link_data(cont, link.master)
    return int(data.get("IFLA_VRF_TABLE", 0)) if master.kind == KIND else None


def parse_table(value: Optional[int]) -> int:
    """``table``: a uint32; 0 or absent picks one."""
    if value is None:
        return 0
    if not 0 <= value < 2**32:
        raise CNIError(ErrorCode.INVALID_CONFIG, f'"table" {value} is not a table id (0-4294967295)')
    return value

