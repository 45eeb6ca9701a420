"""Peers of the overlay, and the pure diff between the peers we want and the entries the kernel holds.

Per remote node the data path needs three entries on the VXLAN device (flannel's order): a permanent neighbour
(the peer subnet's network address -> the peer's VTEP MAC), an FDB entry (that MAC -> the peer's underlay
address) and an ``onlink`` route (the peer subnet via that network address). The kernel is the record of what
is installed, so removing a departed node needs no state file: whatever route/neighbour/FDB entry on the device
belongs to no wanted peer is stale.
"""

from __future__ import annotations

import ipaddress
from typing import Iterable, Union

from ..record import field, record
from ..types import subnet_of

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


@record(frozen=True)
class Peer:
    """A remote node as the data path sees it."""

    underlay_ip: IPAddress
    subnet: IPNetwork
    vtep_mac: str
    node: str = field(default="", compare=False)

    @property
    def gateway(self) -> IPAddress:
        """The address the route goes through and the neighbour entry resolves: the subnet's first address."""
        return self.subnet.network_address


@record
class KernelState:
    """What the VXLAN device holds now: routes (dst -> gateway), neighbours (ip -> mac), FDB (mac -> dst)."""

    routes: dict[IPNetwork, IPAddress] = field(default_factory=dict)
    neighbours: dict[IPAddress, str] = field(default_factory=dict)
    fdb: dict[str, IPAddress] = field(default_factory=dict)


@record
class Plan:
    """What to change: ``add`` peers (replace semantics), then stale entries to delete."""

    add: list[Peer] = field(default_factory=list)
    del_routes: list[IPNetwork] = field(default_factory=list)
    del_neighbours: list[IPAddress] = field(default_factory=list)
    del_fdb: list[str] = field(default_factory=list)

    def empty(self) -> bool:
        return not (self.add or self.del_routes or self.del_neighbours or self.del_fdb)


def select(candidates: Iterable[Peer], *, own_subnet: IPNetwork, own_ips: Iterable[IPAddress],
           network: IPNetwork) -> list[Peer]:
    """The peers to program: not this node, inside the network, same family; one per subnet (first wins)."""
    own = set(own_ips)
    chosen: dict[IPNetwork, Peer] = {}
    for peer in candidates:
        if peer.underlay_ip in own or peer.subnet == own_subnet:
            continue
        if peer.subnet.version != network.version or not subnet_of(peer.subnet, network):
            continue
        chosen.setdefault(peer.subnet, peer)
    return sorted(chosen.values(), key=lambda p: (int(p.subnet.network_address), p.subnet.prefixlen))


def plan(wanted: Iterable[Peer], state: KernelState, network: IPNetwork) -> Plan:
    """The changes that turn ``state`` into exactly ``wanted`` (entries outside ``network`` are not ours)."""
    wanted = list(wanted)
    out = Plan()
    for peer in wanted:
        if (state.routes.get(peer.subnet) != peer.gateway or state.neighbours.get(peer.gateway) != peer.vtep_mac
                or state.fdb.get(peer.vtep_mac) != peer.underlay_ip):
            out.add.append(peer)
    subnets = {p.subnet for p in wanted}
    gateways = {p.gateway for p in wanted}
    macs = {p.vtep_mac for p in wanted}
    out.del_routes = [dst for dst in state.routes if dst not in subnets and _inside(dst, network)]
    out.del_neighbours = [ip for ip in state.neighbours if ip not in gateways and _inside(ip, network)]
    out.del_fdb = [mac for mac in state.fdb if mac not in macs]
    return out


def _inside(item: Union[IPAddress, IPNetwork], network: IPNetwork) -> bool:
    if item.version != network.version:
        return False
    if isinstance(item, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return item in network
    return subnet_of(item, network)

