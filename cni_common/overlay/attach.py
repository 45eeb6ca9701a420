"""The container side of a vxlan attachment, done by the bridge plugin's own code (no second copy of it).

The vxlan config is turned into the equivalent bridge config (the node's bridge as gateway, the overlay MTU,
host-local over the node subnet) and handed, in-process, to ``plugins.bridge``'s verb handlers. Masquerading
is left to the vxlan plugin, whose exemption is the whole pod network rather than the node subnet.

TODO(bridge): call a ``bridge.attach(args, BridgeConf)`` / ``bridge.detach(...)`` API once bridge exposes one,
instead of the verb handlers with a rewritten request.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import logging
from typing import Any, Optional, Union

from .. import netlink
from ..netns import NetNS, NetNSGone
from ..skel import CmdArgs
from ..types import Result
from .config import VxlanConf

log = logging.getLogger(__name__)

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


def bridge_args(args: CmdArgs, conf: VxlanConf, subnet: Optional[IPNetwork], mtu: int = 0) -> CmdArgs:
    """``args`` as the bridge plugin (and, through it, IPAM, which reads the whole stdin) must see them."""
    bridge_conf = dict(args.conf)
    bridge_conf.update({"type": "bridge", "bridge": conf.bridge, "isGateway": True, "isDefaultGateway": False,
                        "ipMasq": False, "ipam": ipam_conf(conf, subnet)})
    if mtu:
        bridge_conf["mtu"] = mtu
    return dataclasses.replace(args, conf=bridge_conf, stdin_data=json.dumps(bridge_conf).encode())


def add(args: CmdArgs, conf: VxlanConf, subnet: IPNetwork, mtu: int) -> Result:
    """Bridge + veth + IPAM + addresses and routes, all undone by bridge itself if a step fails."""
    from plugins import bridge

    result: Result = bridge.cmd_add(bridge_args(args, conf, subnet, mtu))
    _pin_bridge_mtu(conf.bridge, mtu)
    return result


def _pin_bridge_mtu(name: str, mtu: int) -> None:
    """bridge sets the MTU only when it creates the bridge; a changed overlay MTU must reach it too."""
    with netlink.open_conn() as host:
        link = netlink.find_link(host, name)
        if link is not None and link.mtu != mtu:
            netlink.set_mtu(host, link.index, mtu)


def delete(args: CmdArgs, conf: VxlanConf) -> None:
    """The container interface and its IPAM lease; a missing netns or link is fine (bridge's DEL rules)."""
    from plugins import bridge

    bridge.cmd_del(bridge_args(args, conf, conf.node_subnet))


def check(args: CmdArgs, conf: VxlanConf) -> None:
    """IPAM CHECK, the bridge, both veth ends, the prevResult's addresses and routes (bridge's CHECK)."""
    from plugins import bridge

    bridge.cmd_check(bridge_args(args, conf, conf.node_subnet))


def container_addresses(args: CmdArgs) -> list[Any]:
    """The global addresses of the container interface (for masquerade teardown); [] when it is gone."""
    if not args.netns:
        return []
    try:
        with NetNS(args.netns) as ns, netlink.open_conn(ns) as cont:
            link = netlink.find_link(cont, args.ifname)
            if link is None:
                return []
            return [a.address for a in netlink.list_addrs(cont, link.index) if a.is_global_unicast]
    except NetNSGone:
        return []
