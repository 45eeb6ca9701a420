"""CHECK of a routed attachment: IPAM's CHECK, then the container's veth and the previous result's addresses
and routes, as they are in the kernel now (upstream ptp checks the same, not the host end or the masquerade)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import invoke
from ..attach.check import check_failed, check_ips_and_routes
from ..errors import CNIError, ErrorCode

if TYPE_CHECKING:
    from ..skel import CmdArgs
    from ..types import Result
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
    with NetNS(args.netns) as cont_ns, nl.open_conn(cont_ns) as cont:
        link = nl.find_link(cont, args.ifname)
        if link is None or link.kind != "veth":
            raise check_failed(f"container interface {args.ifname!r} not found or not of type veth")
        if cont_if.mac and cont_if.mac.lower() != link.mac:
            raise check_failed(f"interface {args.ifname!r} has MAC {link.mac}, expected {cont_if.mac}")
        check_ips_and_routes(cont, link.index, args.ifname, cont_idx, prev)
