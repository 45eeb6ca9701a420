"""The vlan plugin: an 802.1Q child of a host link ("master") with one VLAN id, in the container.

Drop-in for upstream's ``vlan`` (v1.9): keys ``master`` (required), ``vlanId`` (0 to 4094), ``mtu`` (0 to the
master's), ``linkInContainer``, ``ipam`` (required). Beyond upstream: a failed ADD removes its link, and DEL
never resolves the master (a master gone first does not block the pod's teardown). See docs/vlan.md.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

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

MAX_VLAN_ID = 4094


@record
class VlanConf:
    network: str
    master: str
    vlan_id: int
    mtu: int
    link_in_container: bool
    ipam_type: str
    dns: DNS


def load_conf(conf: dict[str, Any]) -> VlanConf:
    """Parse and validate (every verb); the master's existence and MTU are ADD's and CHECK's business."""
    config.check_netconf_types(conf)
    c = VlanConf(
        network=config.get_str(conf, "name"),
        master=config.get_str(conf, "master"),
        vlan_id=config.get_int(conf, "vlanId"),
        mtu=config.get_int(conf, "mtu"),
        link_in_container=config.get_bool(conf, "linkInContainer"),
        ipam_type=config.get_str(config.get_dict(conf, "ipam"), "type", where="ipam"),
        dns=DNS.from_dict(config.get_dict(conf, "dns")),
    )
    if not c.master:
        raise CNIError(ErrorCode.INVALID_CONFIG,
                       '"master" field is required. It specifies the host interface name to create the VLAN for')
    if not 0 <= c.vlan_id <= MAX_VLAN_ID:
        raise CNIError(ErrorCode.INVALID_CONFIG, f"invalid VLAN ID {c.vlan_id} (must be between 0 and 4094)")
    if not c.ipam_type:
        raise CNIError(ErrorCode.INVALID_CONFIG, "vlan needs \"ipam\": no plugin name provided")
    return c


def _plan(c: VlanConf) -> LinkPlan:
    from cni_common.links.attach import LinkPlan

    return LinkPlan("vlan", ipam_type=c.ipam_type, dns=c.dns, master=c.master, link_in_container=c.link_in_container,
                    arp_notify=False, ndisc_notify=False)


def _master(c: VlanConf, host: Conn, cont: Conn) -> tuple[Conn, Link]:
    from cni_common.links import master

    origin = cont if c.link_in_container else host
    parent = master.lookup(origin, c.master)
    master.check_mtu(c.mtu, parent)
    return origin, parent


# ---------------------------------------------------------------------------------------------------- verbs


def cmd_add(args: CmdArgs) -> Result:
    from cni_common.links import attach, place

    c = load_conf(args.conf)

    def make(host: Conn, cont: Conn, undo: contextlib.ExitStack[Any]) -> Link:
        origin, parent = _master(c, host, cont)
        return place.create(origin, cont, args.ifname, "vlan", ("IFLA_VLAN_ID", c.vlan_id), parent=parent.index,
                            mtu=c.mtu, undo=undo)

    return attach.add(args, _plan(c), make)


def cmd_del(args: CmdArgs) -> None:
    from cni_common.links import attach

    attach.delete(args, _plan(load_conf(args.conf)))


def cmd_check(args: CmdArgs) -> None:
    from cni_common.links import attach

    c = load_conf(args.conf)

    def verify(host: Conn, cont: Conn, link: Link, data: dict[str, Any]) -> None:
        _master(c, host, cont)
        if data.get("IFLA_VLAN_ID") != c.vlan_id:
            raise check_failed(f"container vlan id {data.get('IFLA_VLAN_ID')} of {args.ifname} does not "
                               f"match expected value: {c.vlan_id}")
        if c.mtu and link.mtu != c.mtu:
            raise check_failed(f"configured MTU of {args.ifname} is {c.mtu}, current value is {link.mtu}")

    attach.check(args, _plan(c), verify)


def cmd_status(args: CmdArgs) -> None:
    from cni_common.links import attach

    attach.status(args, _plan(load_conf(args.conf)))


def cmd_gc(args: CmdArgs) -> None:
    from cni_common.links import attach

    attach.gc(args, _plan(load_conf(args.conf)))


def main(**streams: Any) -> int:
    """``streams`` (environ, stdin, stdout, stderr) let tests drive the plugin in-process."""
    return plugin_main(CNIFuncs(add=cmd_add, delete=cmd_del, check=cmd_check, status=cmd_status, gc=cmd_gc),
                       about=about_line("vlan"), **streams)


if __name__ == "__main__":
    sys.exit(main())
