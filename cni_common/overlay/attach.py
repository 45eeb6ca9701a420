"""The container side of a vxlan attachment: the library's bridge attachment (:mod:`cni_common.attach`, the
bridge plugin's engine too), with the vxlan config's settings.

The vxlan config gives a :class:`~cni_common.attach.conf.BridgeConf` (the node's bridge as gateway, the overlay
MTU) for the attachment's ADD, DEL and CHECK, and IPAM its request (host-local over the node subnet, see
:func:`ipam_args`). Masquerading is left to the vxlan plugin, whose exemption is the whole pod network rather
than the node subnet.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any, Optional, Union

from .. import netlink
from ..attach.conf import BridgeConf
from ..config import get_dict
from ..netns import NetNS
from ..record import replace
from ..skel import CmdArgs
from ..types import DNS, Result
from .config import VxlanConf

IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


def ipam_conf(conf: VxlanConf, subnet: Optional[IPNetwork]) -> dict[str, Any]:
    """The IPAM section to delegate: by default host-local over ``subnet`` with a route to the pod network.

    A user's host-local section keeps its keys; only a missing range and the pod-network route are filled in.
    ``subnet`` is None on DEL/GC, which must not need the store: the whole network is then a valid range, and
    host-local releases by container ID whatever the range.
    """
    ipam = dict(conf.ipam) or {"type": "host-local"}
    if ipam.get("type") != "host-local":
        return ipam
    if "ranges" not in ipam and "subnet" not in ipam:
        ipam["ranges"] = [[{"subnet": str(subnet or conf.network)}]]
    routes = list(ipam.get("routes") or [])
    if not any(isinstance(r, dict) and r.get("dst") == str(conf.network) for r in routes):
        routes.append({"dst": str(conf.network)})
    ipam["routes"] = routes
    return ipam


def ipam_type(conf: VxlanConf) -> str:
    """The IPAM plugin the vxlan network delegates to (host-local unless the config names another)."""
    return str(ipam_conf(conf, None).get("type", ""))


def ipam_args(args: CmdArgs, conf: VxlanConf, subnet: Optional[IPNetwork]) -> CmdArgs:
    """``args`` as IPAM must see them: it reads the whole stdin, whose ``ipam`` is now :func:`ipam_conf`'s."""
    request = dict(args.conf)
    request["ipam"] = ipam_conf(conf, subnet)
    return replace(args, conf=request, stdin_data=json.dumps(request).encode())


def bridge_conf(args: CmdArgs, conf: VxlanConf, mtu: int = 0, mac: str = "") -> BridgeConf:
    """The bridge attachment of a vxlan network: the node bridge as the pods' gateway (not their default
    route: IPAM's route to the pod network is the one), no masquerading of its own."""
    return BridgeConf(network=conf.name, bridge=conf.bridge, is_gateway=True, mtu=mtu,
                      ipam_type=ipam_type(conf),
                      dns=DNS.from_dict(get_dict(args.conf, "dns")), mac=mac)


def add(args: CmdArgs, conf: VxlanConf, subnet: IPNetwork, mtu: int) -> Result:
    """Bridge + veth + IPAM + addresses and routes, all undone by the attachment itself if a step fails."""
    from ..attach.add import attach
    from ..attach.conf import requested_mac

    mac = requested_mac(args.conf, args.cni_args())
    return attach(ipam_args(args, conf, subnet), bridge_conf(args, conf, mtu, mac))


def delete(args: CmdArgs, conf: VxlanConf) -> None:
    """The container interface and its IPAM lease; a missing netns or link is fine (the attachment's DEL rules)."""
    from ..attach.delete import detach

    detach(ipam_args(args, conf, conf.node_subnet), bridge_conf(args, conf))


def check(args: CmdArgs, conf: VxlanConf) -> None:
    """IPAM CHECK, the bridge, both veth ends, the prevResult's addresses and routes (the attachment's CHECK)."""
    from ..attach import check as attachment

    attachment.check(ipam_args(args, conf, conf.node_subnet), bridge_conf(args, conf), attachment.prev_result(args))


def recorded_addresses(args: CmdArgs, conf: VxlanConf) -> list[Any]:
    """The attachment's addresses from ``prevResult`` or IPAM's records (:func:`..veth.known_addresses`):
    with the interface's, what the masquerade teardown looks for, so a replaced address leaks no rule."""
    from ..veth import known_addresses

    return known_addresses(ipam_args(args, conf, conf.node_subnet), ipam_type(conf))


def container_addresses(args: CmdArgs) -> list[Any]:
    """The global addresses of the container interface (for masquerade teardown); [] when it is gone."""
    ns = NetNS.if_present(args.netns)
    if ns is None:
        return []
    with ns, netlink.open_conn(ns) as cont:
        link = netlink.find_link(cont, args.ifname)
        if link is None:
            return []
        return [a.address for a in netlink.list_addrs(cont, link.index) if a.is_global_unicast]
