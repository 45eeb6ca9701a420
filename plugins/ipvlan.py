"""The ipvlan plugin: an ipvlan child of a host link ("master"), sharing the master's MAC, in the container.

Drop-in for upstream's ``ipvlan`` (v1.9): keys ``master`` (default: when chained, the previous result's one
interface; else the default route's link), ``mode`` (l2, l3, l3s), ``mtu``, ``linkInContainer``, ``ipam``
(required, unless chained without ``ipam.type`` after a plugin whose result has IPs: those go on the ipvlan).
Beyond upstream: CHECK works with ``master`` omitted (upstream's looks up a master named ""), and DEL never
resolves the master (a master gone first, or a missing default route, does not block the teardown). See
docs/ipvlan.md.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Optional

from cni_common import config
from cni_common.errors import CNIError, ErrorCode, check_failed
from cni_common.record import record
from cni_common.skel import CmdArgs, CNIFuncs, plugin_main
from cni_common.types import DNS, Result
from cni_common.version import about_line

if TYPE_CHECKING:
    import contextlib

    from cni_common.links.attach import LinkPlan
    from cni_common.netlink import Conn, Link

# ---------------------------------------------------------------------------------------------------- config

#: IFLA_IPVLAN_MODE values; "" is l2, upstream's default.
MODES = {"l2": 0, "l3": 1, "l3s": 2}
#: How pyroute2 names the mode read back from the kernel.
MODE_NAMES = {0: "l2", 1: "l3", 2: "l3s", "IPVLAN_MODE_L2": "l2", "IPVLAN_MODE_L3": "l3", "IPVLAN_MODE_L3S": "l3s"}


@record
class IpvlanConf:
    network: str
    master: str
    mode: str
    mtu: int
    link_in_container: bool
    ipam_type: str
    dns: DNS
    prev: Optional[Result]


def load_conf(conf: dict[str, Any], cni_version: str = "") -> IpvlanConf:
    """Parse and validate (every verb). IPAM is required unless the prevResult (chained) brings the IPs."""
    config.check_netconf_types(conf)
    mode = config.get_str(conf, "mode") or "l2"
    prev_raw = conf.get("prevResult")
    c = IpvlanConf(
        network=config.get_str(conf, "name"),
        master=config.get_str(conf, "master"),
        mode=mode,
        mtu=config.get_int(conf, "mtu"),
        link_in_container=config.get_bool(conf, "linkInContainer"),
        ipam_type=config.get_str(config.get_dict(conf, "ipam"), "type", where="ipam"),
        dns=DNS.from_dict(config.get_dict(conf, "dns")),
        prev=Result.from_dict(prev_raw, cni_version or str(conf.get("cniVersion", ""))) if prev_raw else None,
    )
    if c.mtu < 0:
        raise CNIError(ErrorCode.INVALID_CONFIG, f"invalid MTU {c.mtu}")
    return c


def _check_mode(c: IpvlanConf) -> None:
    """ADD and CHECK only: Go's DEL takes any mode, so a pod of a since-fixed config can still be torn down."""
    if c.mode not in MODES:
        raise CNIError(ErrorCode.INVALID_CONFIG, f'unknown ipvlan mode: "{c.mode}"')


def _plan(c: IpvlanConf) -> LinkPlan:
    from cni_common.links.attach import LinkPlan

    return LinkPlan("ipvlan", ipam_type=c.ipam_type, dns=c.dns, master=c.master,
                    link_in_container=c.link_in_container)


def _master(c: IpvlanConf, host: Conn, cont: Conn) -> tuple[Conn, Link]:
    """ADD's and CHECK's master: configured, else the chained prevResult's interface, else the default route's."""
    from cni_common.links import master

    origin = cont if c.link_in_container else host
    if c.master:
        name = c.master
    elif c.prev is not None:
        name = master.chained_master(c.prev)
    else:
        name = master.default_route_link(origin)
    return origin, master.lookup(origin, name)


# ---------------------------------------------------------------------------------------------------- verbs


def cmd_add(args: CmdArgs) -> Result:
    from cni_common.links import attach, place

    c = load_conf(args.conf, args.cni_version)
    _check_mode(c)
    given = None
    if not c.ipam_type:
        if c.prev is None or not c.prev.ips:
            raise CNIError(ErrorCode.INVALID_CONFIG, "no plugin name provided (ipvlan needs \"ipam\" unless "
                           "chained after a plugin whose result has IPs)")
        given = c.prev

    def make(host: Conn, cont: Conn, undo: contextlib.ExitStack[Any]) -> Link:
        origin, parent = _master(c, host, cont)
        return place.create(origin, cont, args.ifname, "ipvlan", ("IFLA_IPVLAN_MODE", MODES[c.mode]),
                            parent=parent.index, mtu=c.mtu, undo=undo)

    return attach.add(args, _plan(c), make, given)


def cmd_del(args: CmdArgs) -> None:
    from cni_common.links import attach

    attach.delete(args, _plan(load_conf(args.conf, args.cni_version)))


def cmd_check(args: CmdArgs) -> None:
    from cni_common.links import attach

    c = load_conf(args.conf, args.cni_version)
    _check_mode(c)

    def verify(host: Conn, cont: Conn, link: Link, data: dict[str, Any]) -> None:
        if c.master:  # omitted: the link exists, so its master does (the kernel removes the children of a master)
            from cni_common.links import master

            master.lookup(cont if c.link_in_container else host, c.master)
        have = MODE_NAMES.get(data.get("IFLA_IPVLAN_MODE", 0), str(data.get("IFLA_IPVLAN_MODE")))
        if have != c.mode:
            raise check_failed(f"container ipvlan mode {have} does not match expected value: {c.mode}")

    attach.check(args, _plan(c), verify)


def cmd_status(args: CmdArgs) -> None:
    from cni_common.links import attach

    attach.status(args, _plan(load_conf(args.conf, args.cni_version)))


def cmd_gc(args: CmdArgs) -> None:
    from cni_common.links import attach

    attach.gc(args, _plan(load_conf(args.conf, args.cni_version)))


def main(**streams: Any) -> int:
    """``streams`` (environ, stdin, stdout, stderr) let tests drive the plugin in-process."""
    return plugin_main(CNIFuncs(add=cmd_add, delete=cmd_del, check=cmd_check, status=cmd_status, gc=cmd_gc),
                       about=about_line("ipvlan"), **streams)


if __name__ == "__main__":
    sys.exit(main())
