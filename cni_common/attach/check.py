"""CHECK of a bridge attachment: IPAM's CHECK, then the bridge, both veth ends, and the previous result's
addresses and routes, as they are in the kernel now."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import invoke
from ..errors import CNIError, ErrorCode, check_failed
from ..ifconfig import check_layer3
from ..types import Result

if TYPE_CHECKING:
    from ..skel import CmdArgs
    from .conf import BridgeConf


def prev_result(args: CmdArgs) -> Result:
    """The request's ``prevResult`` (required by CHECK)."""
    prev_raw = args.conf.get("prevResult")
    if not prev_raw:
        raise CNIError(ErrorCode.INVALID_CONFIG, "Required prevResult missing")
    return Result.from_dict(prev_raw, args.cni_version)


def check(args: CmdArgs, conf: BridgeConf, prev: Result) -> None:
    """IPAM CHECK (delegated ``args`` as they are), then verify the bridge, both veth ends, and ``prev``'s
    addresses and routes."""
    from .. import netlink as nl
    from ..netns import NetNS

    if conf.ipam_type:
        invoke.delegate("CHECK", conf.ipam_type, args)
    cont_idx = prev.container_index(args.ifname)
    if cont_idx is None:
        raise CNIError(ErrorCode.INVALID_CONFIG, f"prevResult has no container interface {args.ifname!r}")
    cont_if = prev.interfaces[cont_idx]
    br_if = next((i for i in prev.interfaces if i.name == conf.bridge and not i.sandbox), None)
    with NetNS(args.netns) as cont_ns, nl.open_conn() as host, nl.open_conn(cont_ns) as cont:
        br = nl.find_link(host, conf.bridge)
        if br is None or br.kind != "bridge":
            raise check_failed(f"bridge {conf.bridge!r} not found or not a bridge")
        if br_if is not None and br_if.mac and br_if.mac.lower() != br.mac:
            raise check_failed(f"bridge {conf.bridge!r} has MAC {br.mac}, expected {br_if.mac}")
        if br.promisc != conf.promisc:
            raise check_failed(f"bridge {conf.bridge!r} promiscuous mode is {br.promisc}, expected {conf.promisc}")
        link = nl.find_link(cont, args.ifname)
        if link is None or link.kind != "veth":
            raise check_failed(f"container interface {args.ifname!r} not found or not a veth")
        if cont_if.mac and cont_if.mac.lower() != link.mac:
            raise check_failed(f"interface {args.ifname!r} has MAC {link.mac}, expected {cont_if.mac}")
        peer = nl.find_link(host, link.peer_index)
        if peer is None or peer.kind != "veth" or peer.peer_index != link.index or peer.master != br.index:
            raise check_failed(f"host veth of {args.ifname!r} not found or not attached to {conf.bridge!r}")
        check_layer3(cont, link.index, args.ifname, cont_idx, prev)
