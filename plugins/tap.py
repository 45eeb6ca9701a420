"""The tap plugin: a persistent tap device in the container (for a VM runtime's hypervisor to open), with
addresses from IPAM when asked.

Drop-in for upstream's ``tap`` (v1.3.0+): keys ``multiQueue``, ``mtu``, ``mac`` (also CNI_ARGS ``MAC``,
``args.cni.mac`` and ``runtimeConfig.mac``, in rising precedence), ``owner`` and ``group`` (uid and gid allowed
to open it), ``selinuxContext``, ``bridge`` (a bridge *in the container* to enslave it to), ``ipam``
(optional). Beyond upstream: one kind of device whatever the keys (upstream's ``ip`` path and its netlink path,
taken only with both owner and group, made different devices), and a failed rename is reported as such.
See docs/tap.md.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Optional

from cni_common import config
from cni_common.errors import CNIError, ErrorCode, PluginCode
from cni_common.record import record
from cni_common.skel import CmdArgs, CNIFuncs, plugin_main
from cni_common.types import DNS, Result
from cni_common.version import about_line

if TYPE_CHECKING:
    import contextlib

    from cni_common.links.attach import LinkPlan
    from cni_common.netlink import Conn, Link

# ---------------------------------------------------------------------------------------------------- config

MAX_ID = 2**32 - 1


@record
class TapConf:
    network: str
    multi_queue: bool
    mtu: int
    mac: str
    owner: Optional[int]
    group: Optional[int]
    selinux_context: str
    bridge: str
    ipam_type: str
    dns: DNS


def load_conf(conf: dict[str, Any], cni_args: Optional[dict[str, str]] = None) -> TapConf:
    """Parse and validate (every verb); the MAC only for ADD and CHECK (``cni_args`` given)."""
    config.check_netconf_types(conf)
    c = TapConf(
        network=config.get_str(conf, "name"),
        multi_queue=config.get_bool(conf, "multiQueue"),
        mtu=config.get_int(conf, "mtu"),
        mac=config.get_str(conf, "mac"),
        owner=config.get_typed(conf, "owner", int, None),
        group=config.get_typed(conf, "group", int, None),
        selinux_context=config.get_str(conf, "selinuxContext"),
        bridge=config.get_str(conf, "bridge"),
        ipam_type=config.get_str(config.get_dict(conf, "ipam"), "type", where="ipam"),
        dns=DNS.from_dict(config.get_dict(conf, "dns")),
    )
    for key, value in (("owner", c.owner), ("group", c.group)):
        if value is not None and not 0 <= value <= MAX_ID:
            raise CNIError(ErrorCode.INVALID_CONFIG, f"invalid {key} {value} (must be a uint32)")
    if c.mtu < 0:
        raise CNIError(ErrorCode.INVALID_CONFIG, f"invalid MTU {c.mtu}")
    if cni_args is not None:
        from cni_common.attach.conf import check_mac, requested_mac

        if c.mac:
            check_mac(c.mac)
        c.mac = requested_mac(conf, cni_args) or c.mac.lower()
    return c


def _plan(c: TapConf) -> LinkPlan:
    from cni_common.links.attach import LinkPlan

    return LinkPlan("tun", ipam_type=c.ipam_type, dns=c.dns, ndisc_notify=False, wait_dad=False)


# ---------------------------------------------------------------------------------------------------- verbs


def cmd_add(args: CmdArgs) -> Result:
    from cni_common import netlink as nl
    from cni_common.links import attach, place

    c = load_conf(args.conf, args.cni_args())

    def make(host: Conn, cont: Conn, undo: contextlib.ExitStack[Any]) -> Link:
        link = place.create_tap(cont.netns, cont, args.ifname, multi_queue=c.multi_queue, owner=c.owner,
                                group=c.group, selinux_context=c.selinux_context, undo=undo)
        if c.mtu:
            nl.set_mtu(cont, link.index, c.mtu)
        if c.mac:
            nl.set_mac(cont, link.index, c.mac)
        if c.bridge:
            bridge = nl.find_link(cont, c.bridge)
            if bridge is None or bridge.kind != "bridge":
                raise CNIError(PluginCode.LINK_FAILURE, f"failed to get bridge {c.bridge}: not found in the container")
            nl.set_master(cont, link.index, bridge.index)
        return nl.get_link(cont, link.index)

    return attach.add(args, _plan(c), make)


def cmd_del(args: CmdArgs) -> None:
    from cni_common.links import attach

    attach.delete(args, _plan(load_conf(args.conf)))


def cmd_check(args: CmdArgs) -> None:
    from cni_common.links import attach

    attach.check(args, _plan(load_conf(args.conf, args.cni_args())))


def cmd_status(args: CmdArgs) -> None:
    from cni_common.links import attach

    attach.status(args, _plan(load_conf(args.conf)))


def cmd_gc(args: CmdArgs) -> None:
    from cni_common.links import attach

    attach.gc(args, _plan(load_conf(args.conf)))


def main(**streams: Any) -> int:
    """``streams`` (environ, stdin, stdout, stderr) let tests drive the plugin in-process."""
    return plugin_main(CNIFuncs(add=cmd_add, delete=cmd_del, check=cmd_check, status=cmd_status, gc=cmd_gc),
                       about=about_line("tap"), **streams)


if __name__ == "__main__":
    sys.exit(main())
