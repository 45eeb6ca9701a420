"""Kernel side of the overlay on one node: find the underlay, keep the VXLAN device, program the peers.

Everything goes through :mod:`cni_common.netlink`.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import urllib.parse
from typing import Callable, Iterable, Union

from .. import netlink
from ..errors import CNIError, ErrorCode, PluginCode
from ..log import get_logger
from ..netlink.conn import Conn, NetlinkError
from ..record import record
from .config import OVERHEAD, VxlanConf
from .peers import KernelState, Peer, Plan, plan

log = get_logger(__name__)

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

_FLOOD_MAC = "00:00:00:00:00:00"
#: Looked up (never contacted) to find the default route's interface when nothing better is known.
_DEFAULT_ROUTE_PROBE = {4: ipaddress.ip_address("192.0.2.1"), 6: ipaddress.ip_address("2001:db8::1")}


@record(frozen=True)
class Underlay:
    """The node's underlay: the interface VXLAN packets leave by, its address and its MTU."""

    index: int
    name: str
    ip: IPAddress
    mtu: int

    @property
    def overlay_mtu(self) -> int:
        """What fits inside one underlay frame: MTU - 50 (IPv4 underlay) or - 70 (IPv6 underlay)."""
        return self.mtu - OVERHEAD[self.ip.version]


# -- underlay ------------------------------------------------------------------------------------------------

def _hint_ips(conf: VxlanConf) -> list[IPAddress]:
    """Addresses the underlay must reach (store endpoints, static peers): their route shows the interface."""
    hints: list[IPAddress] = []
    for endpoint in conf.etcd.endpoints if conf.etcd else ():
        host = urllib.parse.urlsplit(endpoint).hostname or ""
        try:
            hints.append(ipaddress.ip_address(host))
        except ValueError:
            try:
                hints.extend(ipaddress.ip_address(info[4][0]) for info in socket.getaddrinfo(host, None)[:1])
            except OSError:
                log.warning("cannot resolve etcd endpoint host %r to find the underlay", host)
    hints.extend(p.underlay_ip for p in conf.peers)
    return hints


def _global_addresses(conn: Conn, index: int) -> list[IPAddress]:
    return [a.address.ip for a in netlink.list_addrs(conn, index) if a.is_global_unicast]


def resolve_underlay(conn: Conn, conf: VxlanConf) -> Underlay:
    """The underlay from ``underlayIP``, else ``underlayInterface``, else this node's own entry in ``peers``,
    else the routing table (the route to the store, to a peer, or the default route)."""
    if conf.underlay_ip is not None:
        for addr in netlink.list_addrs(conn):
            if addr.address.ip == conf.underlay_ip:
                link = netlink.get_link(conn, addr.index)
                return Underlay(link.index, link.name, conf.underlay_ip, link.mtu)
        raise CNIError(ErrorCode.INVALID_CONFIG, f"invalid config: underlayIP {conf.underlay_ip} is not an "
                       "address of any interface on this node")
    if conf.underlay_interface:
        named = netlink.find_link(conn, conf.underlay_interface)
        if named is None:
            raise CNIError(ErrorCode.INVALID_CONFIG,
                           f"invalid config: underlayInterface {conf.underlay_interface!r} does not exist")
        ips = sorted(_global_addresses(conn, named.index), key=lambda ip: ip.version)
        if not ips:
            raise CNIError(ErrorCode.INVALID_CONFIG, f"invalid config: underlayInterface {named.name!r} has no "
                           "global address (set underlayIP)")
        return Underlay(named.index, named.name, ips[0], named.mtu)
    addrs = netlink.list_addrs(conn)
    for peer in conf.peers:  # this node listed in its own static peers: that address is the underlay
        for addr in addrs:
            if addr.address.ip == peer.underlay_ip:
                link = netlink.get_link(conn, addr.index)
                return Underlay(link.index, link.name, peer.underlay_ip, link.mtu)
    own = {a.address.ip for a in addrs}
    for target in [*_hint_ips(conf), _DEFAULT_ROUTE_PROBE[4], _DEFAULT_ROUTE_PROBE[6]]:
        try:
            hop = netlink.route_get(conn, target)
        except NetlinkError:
            continue
        if target in own or hop.prefsrc is None or hop.prefsrc.is_loopback or not hop.oif:
            continue  # etcd may listen on loopback
        link = netlink.get_link(conn, hop.oif)
        return Underlay(link.index, link.name, hop.prefsrc, link.mtu)
    raise CNIError(ErrorCode.INVALID_CONFIG, "cannot find the underlay: no route to the store, the peers or a "
                   "default route (set underlayInterface or underlayIP)")


def local_addresses(conn: Conn) -> set[IPAddress]:
    return {a.address.ip for a in netlink.list_addrs(conn)}


# -- the VXLAN device ----------------------------------------------------------------------------------------

def ensure_device(conn: Conn, conf: VxlanConf, underlay: Underlay, subnet: IPNetwork, mac: str) -> netlink.Link:
    """One VXLAN device per VNI, reused when compatible; MTU, MAC and the subnet's /32 address kept right."""
    for attempt in range(2):
        try:
            link = netlink.ensure_vxlan(conn, conf.device, vni=conf.vni, local=underlay.ip, port=conf.port,
                                        dev_index=underlay.index, learning=False, mtu=underlay.overlay_mtu, mac=mac)
            break
        except NetlinkError as exc:  # a concurrent ADD created it between our look-up and our create
            if exc.errno != errno.EEXIST or attempt:
                raise
    if link.mtu != underlay.overlay_mtu:
        netlink.set_mtu(conn, link.index, underlay.overlay_mtu)
    if link.mac != mac:
        _set_mac(conn, link, mac)
    _ensure_address(conn, link.index, subnet, conf.network)
    if not link.up:
        netlink.set_up(conn, link.index)
    return netlink.get_link(conn, link.index)


def _set_mac(conn: Conn, link: netlink.Link, mac: str) -> None:
    """Someone (udev, NetworkManager: flannel#1330) changed the MAC: put the derived one back."""
    log.warning("vxlan device %s has MAC %s, restoring %s", link.name, link.mac, mac)
    try:
        netlink.set_mac(conn, link.index, mac)
    except NetlinkError as exc:
        if exc.errno != errno.EBUSY:
            raise
        netlink.set_down(conn, link.index)
        netlink.set_mac(conn, link.index, mac)


def _ensure_address(conn: Conn, index: int, subnet: IPNetwork, network: IPNetwork) -> None:
    """The subnet's network address as /32 (/128); other addresses inside the pod network are stale."""
    wanted = ipaddress.ip_interface(f"{subnet.network_address}/{subnet.max_prefixlen}")
    for addr in netlink.list_addrs(conn, index):
        ip = addr.address.ip
        if addr.address != wanted and ip.version == network.version and ip in network:
            netlink.del_addr(conn, index, addr.address)
    netlink.add_addr(conn, index, wanted, exist_ok=True, nodad=True)


# -- peers ---------------------------------------------------------------------------------------------------

def read_state(conn: Conn, index: int) -> KernelState:
    """What the device holds now (all families): routes via a gateway, permanent neighbours, FDB entries
    towards a remote VTEP (not the all-zero flood entries); :func:`peers.plan` keeps to the pod network."""
    routes = {r.dst: r.gateway for r in netlink.list_routes(conn, oif=index) if r.gateway is not None}
    neighbours = {n.ip: n.mac for n in netlink.list_neighbours(conn, index) if n.permanent and n.mac}
    fdb = {e.mac: e.dst for e in netlink.list_fdb(conn, index) if e.dst is not None and e.mac != _FLOOD_MAC}
    return KernelState(routes=routes, neighbours=neighbours, fdb=fdb)


def program_peer(conn: Conn, index: int, peer: Peer) -> None:
    """Neighbour, then FDB, then the onlink route (last, so the kernel never has to resolve the gateway)."""
    netlink.replace_neigh(conn, index, peer.gateway, peer.vtep_mac)
    netlink.replace_fdb(conn, index, peer.vtep_mac, peer.underlay_ip)
    netlink.add_route(conn, netlink.Route(dst=peer.subnet, gateway=peer.gateway, oif=index, onlink=True),
                      replace=True)


def apply(conn: Conn, index: int, changes: Plan) -> list[str]:
    """Carry out ``changes``; a failing entry is logged and skipped so the others still converge.

    Returns the failures (empty when everything applied).
    """
    failures: list[str] = []
    for peer in changes.add:
        try:
            program_peer(conn, index, peer)
            log.info("peer %s (%s) via %s programmed", peer.subnet, peer.node or "static", peer.underlay_ip)
        except CNIError as exc:
            failures.append(f"peer {peer.subnet} via {peer.underlay_ip}: {exc}")
    for dst in changes.del_routes:
        _quietly(failures, netlink.del_route, conn, netlink.Route(dst=dst, oif=index))
    for mac in changes.del_fdb:
        _quietly(failures, netlink.delete_fdb, conn, index, mac)
    for ip in changes.del_neighbours:
        _quietly(failures, netlink.delete_neigh, conn, index, ip)
    for line in failures:
        log.warning("reconcile: %s", line)
    return failures


def _quietly(failures: list[str], func: Callable[..., object], *args: object) -> None:
    try:
        func(*args)
    except CNIError as exc:
        failures.append(str(exc))


def reconcile(conn: Conn, index: int, wanted: Iterable[Peer], network: IPNetwork) -> Plan:
    """Make the device's peer entries exactly ``wanted``; returns what was changed."""
    changes = plan(wanted, read_state(conn, index), network)
    if not changes.empty():
        failures = apply(conn, index, changes)
        if failures and len(failures) == len(changes.add) + len(changes.del_routes) + len(changes.del_fdb) \
                + len(changes.del_neighbours):
            raise CNIError(PluginCode.LINK_FAILURE, "could not program any vxlan peer", "; ".join(failures))
    return changes
