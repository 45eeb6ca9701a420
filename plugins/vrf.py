"""The vrf plugin (chained): puts the container's interface into a VRF of the container, made when missing,
and moves the interface's routes into the VRF's table.

Drop-in for upstream's ``vrf`` (v1.9): keys ``vrfname`` (required) and ``table`` (optional; 0 picks the lowest
table no other VRF of the container uses); cniVersion 0.3.1 and later. The prevResult passes through unchanged.
The work is the library's :mod:`cni_common.vrf`. Unlike upstream, DEL succeeds when the interface went first or
another DEL removed the VRF. See docs/vrf.md.
"""

from __future__ import annotations

import sys
from typing import Any

from cni_common import config
from cni_common.errors import CNIError, ErrorCode
from cni_common.record import record
from cni_common.skel import CmdArgs, CNIFuncs, plugin_main
from cni_common.types import Result
from cni_common.version import SUPPORTED_VERSIONS, about_line

#: Upstream's vrf speaks 0.3.1 and later (a prevResult with interface indexes).
VRF_VERSIONS = tuple(v for v in SUPPORTED_VERSIONS if v not in ("0.1.0", "0.2.0", "0.3.0"))

# ---------------------------------------------------------------------------------------------------- config


@record
class VrfConf:
    vrfname: str
    table: int  # 0: the lowest table no other VRF of the container uses


def load_conf(conf: dict[str, Any]) -> VrfConf:
    from cni_common.vrf import parse_table

    config.check_netconf_types(conf)
    name = config.get_str(conf, "vrfname")
    if not name:
        raise CNIError(ErrorCode.INVALID_CONFIG, "configuration is expected to have a valid vrf name (\"vrfname\")")
    if len(name) > 15 or "/" in name or name.strip() != name or name in (".", ".."):
        raise CNIError(ErrorCode.INVALID_CONFIG, f'"vrfname" {name!r} is not a valid link name')
    return VrfConf(vrfname=name, table=parse_table(config.get_typed(conf, "table", int, None)))


def _prev(args: CmdArgs, missing: str) -> Result:
    raw = args.conf.get("prevResult")
    if not raw:
        raise CNIError(ErrorCode.INVALID_CONFIG, missing)
    return Result.from_dict(raw, args.cni_version)


# ---------------------------------------------------------------------------------------------------- verbs


def cmd_add(args: CmdArgs) -> Result:
    from cni_common import netlink as nl
    from cni_common import vrf
    from cni_common.netns import NetNS

    c = load_conf(args.conf)
    prev = _prev(args, "missing prevResult from earlier plugin")
    with NetNS(args.netns) as ns, nl.open_conn(ns) as cont:
        vrf.attach(cont, args.ifname, c.vrfname, c.table)
    return prev


def cmd_del(args: CmdArgs) -> None:
    """A gone netns, a gone VRF or a gone interface is success."""
    from cni_common import netlink as nl
    from cni_common import vrf
    from cni_common.netns import NetNS

    c = load_conf(args.conf)
    ns = NetNS.if_present(args.netns)
    if ns is None:
        return
    with ns, nl.open_conn(ns) as cont:
        vrf.release(cont, args.ifname, c.vrfname)


def cmd_check(args: CmdArgs) -> None:
    from cni_common import netlink as nl
    from cni_common import vrf
    from cni_common.netns import NetNS

    c = load_conf(args.conf)
    _prev(args, "missing prevResult from earlier plugin")
    with NetNS(args.netns) as ns, nl.open_conn(ns) as cont:
        vrf.verify(cont, args.ifname, c.vrfname)


def main(**streams: Any) -> int:
    """``streams`` (environ, stdin, stdout, stderr) let tests drive the plugin in-process."""
    return plugin_main(CNIFuncs(add=cmd_add, delete=cmd_del, check=cmd_check), about=about_line("vrf"),
                       supported=VRF_VERSIONS, **streams)


if __name__ == "__main__":
    sys.exit(main())
