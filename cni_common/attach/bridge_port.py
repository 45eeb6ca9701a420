"""The host side of a bridge attachment: the bridge itself, a link made one of its ports, the gateway
addresses it holds and its MAC.

Every function takes a netlink connection to the host namespace and changes only the objects it names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from .. import sysctl
from ..errors import CNIError, PluginCode
from ..log import get_logger

if TYPE_CHECKING:
    from ..netlink import Conn, Link
    from ..types import IPInterface
    from .conf import BridgeConf

log = get_logger(__name__)


def ensure_bridge(host: Conn, conf: BridgeConf, found: Link | None) -> Link:
    """The configured bridge, up, with router advertisements ignored, and ``mtu`` (when set) applied even to a
    bridge that existed (upstream sets it only on creation; an overlay whose MTU changed needs it). ``found``: the
    link of that name as the caller has just looked it up (saves a look-up), or None."""
    from .. import netlink as nl

    br = nl.ensure_bridge(host, conf.bridge, mtu=conf.mtu, vlan_filtering=conf.vlan_filtering, promisc=conf.promisc,
                          found=found)
    if conf.mtu and br.mtu != conf.mtu:
        nl.set_mtu(host, br.index, conf.mtu)
        br = nl.get_link(host, br.index)
    # We own the routes of the bridge: router advertisements must not add any.
    sysctl.write_best_effort(0, "ipv6", "conf", conf.bridge, "accept_ra")
    return br


def remove_bridge_if_unused(host: Conn, name: str) -> None:
    """Rollback of the ADD that found no link ``name`` and made the bridge: delete it unless a port joined it
    (another pod's ADD, running at the same time, that found it there), or it is not there or not a bridge
    (the kernel never made it, or someone else made that link meanwhile). Known limit: an ADD of another pod
    that found the bridge, but has not connected its veth yet, fails on the missing bridge and is rolled back
    in turn (the runtime retries)."""
    from .. import netlink as nl

    br = nl.find_link(host, name)
    if br is None or br.kind != "bridge":
        return
    if any(link.master == br.index for link in nl.list_links(host)):
        log.info("keeping bridge %r: it has ports", br.name)
        return
    nl.delete_link(host, br.index)


def connect_port(host: Conn, br: Link, port: Link, *, hairpin: bool = False, isolated: bool = False, vlan: int = 0,
                 trunk: Sequence[int] = (), preserve_default_vlan: bool = False) -> None:
    """Make ``port`` a port of the bridge with the given hairpin, isolation and VLANs."""
    from .. import netlink as nl

    sysctl.write_best_effort(0, "ipv6", "conf", port.name, "accept_ra")
    try:
        nl.set_master(host, port.index, br.index)
        if hairpin or isolated:
            nl.set_bridge_port(host, port.index, hairpin=hairpin or None, isolated=isolated or None)
        if vlan or trunk:
            _program_vlans(host, port.index, vlan, trunk, preserve_default_vlan)
    except CNIError as exc:
        raise CNIError(PluginCode.LINK_FAILURE, f"failed to connect {port.name!r} to bridge {br.name!r}",
                       str(exc)) from exc


def _program_vlans(host: Conn, index: int, vlan: int, trunk: Sequence[int], preserve_default: bool) -> None:
    """Access VLAN: PVID + untagged; trunk: tagged VIDs, plus native VLAN 1 when no access VLAN is given."""
    from .. import netlink as nl

    if not preserve_default:
        for existing in nl.list_bridge_vlans(host, index):
            nl.del_bridge_vlan(host, index, existing.vid)
    if vlan:
        nl.add_bridge_vlan(host, index, vlan, pvid=True, untagged=True)
    elif trunk:
        nl.add_bridge_vlan(host, index, 1, pvid=True, untagged=True)
    for vid in trunk:
        nl.add_bridge_vlan(host, index, vid)


def gateway_link(host: Conn, conf: BridgeConf, br: Link) -> tuple[Link, bool]:
    """The link that holds the gateway addresses, and whether this call made it: the bridge, or for an access
    VLAN the ``<bridge>.<vlan>`` veth (made on first use: both ends live in the host, ``<bridge>.<vlan>`` keeps
    the addresses and its peer becomes the bridge's port in that VLAN). A failure while making it removes it."""
    from .. import netlink as nl

    if conf.vlan == 0:
        return br, False
    name = vlan_gateway_name(conf)
    link = nl.find_link(host, name)
    if link is not None:
        return link, False
    # setup_veth names its "container" end (here also in the host) and returns (peer, named end): the named
    # <bridge>.<vlan> holds the gateway addresses, its peer veth<hex> becomes the bridge port.
    port, gw_end = nl.setup_veth(host, host, name, mtu=br.mtu)
    try:
        connect_port(host, br, port, vlan=conf.vlan, preserve_default_vlan=conf.preserve_default_vlan)
        nl.set_up(host, gw_end.index)
        return nl.get_link(host, gw_end.index), True
    except BaseException:
        nl.delete_link(host, gw_end.index)  # its peer goes with it
        raise


def vlan_gateway_name(conf: BridgeConf) -> str:
    """The access VLAN's gateway link: ``<bridge>.<vlan>``, upstream's name."""
    return f"{conf.bridge}.{conf.vlan}"


def remove_vlan_gateway_if_unused(host: Conn, conf: BridgeConf, br_index: int, own_port: int) -> None:
    """Rollback of the ADD that made ``<bridge>.<vlan>`` (:func:`gateway_link`): delete it (and its peer, the
    bridge's port in that VLAN) unless another port of the bridge, besides that peer and this ADD's own
    ``own_port`` (removed later in the rollback), is in the VLAN: another pod's ADD that joined it meanwhile
    needs its gateway. Then the first ADD's bridge has no port left, and its own rollback step removes it."""
    from .. import netlink as nl

    link = nl.find_link(host, vlan_gateway_name(conf))
    if link is None or link.kind != "veth":
        return
    for port in nl.list_links(host):
        if port.master != br_index or port.index in (link.index, link.peer_index, own_port):
            continue
        if any(v.vid == conf.vlan for v in nl.list_bridge_vlans(host, port.index)):
            log.info("keeping %r: port %r is in VLAN %d", link.name, port.name, conf.vlan)
            return
    nl.delete_link(host, link.index)


def ensure_gateway_addr(host: Conn, link: Link, addr: IPInterface, force: bool) -> None:
    """Put the gateway ``addr`` on ``link`` (upstream's ensureAddr), then pin its MAC: ``link`` is what
    :func:`gateway_link` gives, the bridge or, for an access VLAN, ``<bridge>.<vlan>``.

    IPv4 allows one address (a different one is an error unless forceAddress); IPv6 allows several that do not
    overlap. EEXIST is fine: pods starting together race to add the same gateway.
    """
    from .. import netlink as nl

    for have in nl.list_addrs(host, link.index, nl.AF_INET if addr.version == 4 else nl.AF_INET6):
        if have.address == addr:
            return
        overlaps = have.address.network.overlaps(addr.network)
        if addr.version == 4 or overlaps:
            if not force:
                raise CNIError(PluginCode.ADDRESS_UNAVAILABLE,
                               f"{link.name!r} already has an IP address different from {addr}")
            nl.del_addr(host, link.index, have.address)
    # IPv6: no DAD for the gateway (upstream does DAD here). The address is this network's own gateway; with DAD
    # it stays tentative for ~1 s after it is added, and the first pods' IPv6 traffic through it fails meanwhile.
    nl.add_addr(host, link.index, addr, exist_ok=True, nodad=addr.version == 6)
    pin_mac(host, link.index)


def pin_mac(host: Conn, index: int) -> None:
    """Set the bridge's current MAC as its own: a bridge made by someone else may still follow the lowest port
    MAC as pods come and go (ours are created with a fixed one). Read now, not at the start of the ADD: ports
    attached since then may have changed it, and pinning a stale MAC would undo another pod's pin."""
    from .. import netlink as nl

    nl.set_mac(host, index, nl.get_link(host, index).mac)
