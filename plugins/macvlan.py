"""The macvlan plugin: a macvlan child of a host link ("master"), with a MAC of its own, in the container.

Drop-in for upstream's ``macvlan`` (v1.9): keys ``master`` (default: the default route's link), ``mode``
(bridge, private, vepa, passthru, source), ``mtu`` (0 to the master's), ``mac`` (also CNI_ARGS ``MAC``,
``args.cni.mac`` and ``runtimeConfig.mac``, in rising precedence), ``linkInContainer``, ``bcqueuelen`` (the
broadcast queue's length, 0: the kernel's default), ``ipam`` (optional: L2 only without it). The link, its
addresses and the verbs are the library's :mod:`cni_common.links`; this module is the config and the kind's
CHECK. See docs/macvlan.md.
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

#: The kernel's macvlan modes (IFLA_MACVLAN_MODE values); "" is bridge, upstream's default.
MODES = {"private": 1, "vepa": 2, "bridge": 4, "passthru": 8, "source": 16}


@record
class MacvlanConf:
    network: str
    master: str
    mode: str
    mtu: int
    mac: str
    bc_queue_len: int
    link_in_container: bool
    ipam_type: str
    dns: DNS


def load_conf(conf: dict[str, Any], cni_args: Optional[dict[str, str]] = None) -> MacvlanConf:
    """Parse and validate (every verb: Go decodes the whole config first). The MAC is read only for ADD and
    CHECK (``cni_args`` given): a DEL must not fail on arguments it ignores."""
    config.check_netconf_types(conf)
    mode = config.get_str(conf, "mode") or "bridge"
    if mode not in MODES:
        raise CNIError(ErrorCode.INVALID_CONFIG, f'unknown macvlan mode: "{mode}"')
    c = MacvlanConf(
        network=config.get_str(conf, "name"),
        master=config.get_str(conf, "master"),
        mode=mode,
        mtu=config.get_int(conf, "mtu"),
        mac=config.get_str(conf, "mac"),
        bc_queue_len=config.get_int(conf, "bcqueuelen"),
        link_in_container=config.get_bool(conf, "linkInContainer"),
        ipam_type=config.get_str(config.get_dict(conf, "ipam"), "type", where="ipam"),
        dns=DNS.from_dict(config.get_dict(conf, "dns")),
    )
    if not 0 <= c.bc_queue_len <= 0xFFFFFFFF:  # Go decodes it into a uint32
        raise CNIError(ErrorCode.INVALID_CONFIG, f"invalid bcqueuelen {c.bc_queue_len}: must be 0 to 4294967295")
    if cni_args is not None:
        from cni_common.attach.conf import check_mac, requested_mac

        if c.mac:
            check_mac(c.mac)
        c.mac = requested_mac(conf, cni_args) or c.mac.lower()
    return c


def _plan(c: MacvlanConf) -> LinkPlan:
    from cni_common.links.attach import LinkPlan

    return LinkPlan("macvlan", ipam_type=c.ipam_type, dns=c.dns, master=c.master,
                    link_in_container=c.link_in_container)


def _master(c: MacvlanConf, host: Conn, cont: Conn) -> tuple[Conn, Link]:
    """The namespace the master lives in (the host, or the container with ``linkInContainer``) and the master."""
    from cni_common.links import master

    origin = cont if c.link_in_container else host
    return origin, master.lookup(origin, c.master or master.default_route_link(origin))


# ---------------------------------------------------------------------------------------------------- verbs


def cmd_add(args: CmdArgs) -> Result:
    from cni_common.links import attach, master, place

    c = load_conf(args.conf, args.cni_args())

    def make(host: Conn, cont: Conn, undo: contextlib.ExitStack[Any]) -> Link:
        origin, parent = _master(c, host, cont)
        master.check_mtu(c.mtu, parent)
        data = [("IFLA_MACVLAN_MODE", MODES[c.mode])]
        if c.bc_queue_len:  # 0 keeps the kernel's default (1000), as upstream
            data.append(("IFLA_MACVLAN_BC_QUEUE_LEN", c.bc_queue_len))
        return place.create(origin, cont, args.ifname, "macvlan", *data, parent=parent.index, mtu=c.mtu,
                            mac=c.mac, undo=undo)

    return attach.add(args, _plan(c), make)


def cmd_del(args: CmdArgs) -> None:
    """Needs neither the master nor the netns (upstream v1.1.1 failed once the master had gone)."""
    from cni_common.links import attach

    attach.delete(args, _plan(load_conf(args.conf)))


def cmd_check(args: CmdArgs) -> None:
    from cni_common.links import attach, master

    c = load_conf(args.conf, args.cni_args())

    def verify(host: Conn, cont: Conn, link: Link, data: dict[str, Any]) -> None:
        _, parent = _master(c, host, cont)
        master.check_mtu(c.mtu, parent)
        have = data.get("IFLA_MACVLAN_MODE")
        if have != c.mode:
            raise check_failed(f"container macvlan mode {have} does not match expected value: {c.mode}")

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
                       about=about_line("macvlan"), **streams)


if __name__ == "__main__":
    sys.exit(main())
