"""CHECK of a routed attachment: IPAM's CHECK, then the container's veth and the previous result's addresses
and routes, as they are in the kernel now; beyond upstream ptp (which stops there), the host end too: the
gateway it holds and the host route to each container address."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from .. import invoke
from ..errors import CNIError, ErrorCode, check_failed
from ..ifconfig import check_layer3

if TYPE_CHECKING:
    from ..netlink import Conn, Link
    from ..skel import CmdArgs
    from ..types import IPConfig, Result
    from .conf import RoutedConf


def check(args: CmdArgs, conf: RoutedConf, prev: Result) -> None:
    """IPAM CHECK (delegated ``args`` as they are), then ``CNI_IFNAME`` as ``prev`` describes it."""
    from .. import netlink as nl
    from ..netns import NetNS

    invoke.delegate("CHECK", conf.ipam_type, args)
    cont_idx = prev.container_index(args.ifname)
    if cont_idx is None:
        raise CNIError(ErrorCode.INVALID_CONFIG, f"prevResult has no container interface {args.ifname!r}")
    cont_if = prev.interfaces[cont_idx]
    if cont_if.sandbox != args.netns:
        raise CNIError(ErrorCode.INVALID_CONFIG, f"Sandbox in prevResult {cont_if.sandbox} doesn't match "
                       f"configured netns: {args.netns}")
    with NetNS(args.netns) as cont_ns, nl.open_conn(cont_ns) as cont, nl.open_conn() as host:
        link = nl.find_link(cont, args.ifname)
        if link is None or link.kind != "veth":
            raise check_failed(f"container interface {args.ifname!r} not found or not of type veth")
        if cont_if.mac and cont_if.mac.lower() != link.mac:
            raise check_failed(f"interface {args.ifname!r} has MAC {link.mac}, expected {cont_if.mac}")
        check_layer3(cont, link.index, args.ifname, cont_idx, prev)
        _check_host_end(host, link, args.ifname, [ip for ip in prev.ips if ip.interface in (None, cont_idx)])


def _check_host_end(host: Conn, cont_link: Link, ifname: str, ips: list[IPConfig]) -> None:
    from .. import netlink as nl

    peer = nl.find_link(host, cont_link.peer_index)
    if peer is None or peer.kind != "veth" or peer.peer_index != cont_link.index:
        raise check_failed(f"host end of {ifname!r} not found")
    held = {a.address.ip for a in nl.list_addrs(host, peer.index)}
    routed = {r.dst for r in nl.list_routes(host, oif=peer.index)}
    for ip in ips:
        if ip.gateway is not None and ip.gateway not in held:
            raise check_failed(f"host end {peer.name!r} of {ifname!r} does not hold the gateway {ip.gateway}")
        if ipaddress.ip_network(f"{ip.address.ip}/{ip.address.max_prefixlen}") not in routed:
            raise check_failed(f"no host route to {ip.address.ip} via {peer.name!r}")
