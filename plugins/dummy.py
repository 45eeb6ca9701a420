"""The dummy plugin: a dummy link (traffic goes nowhere) in the container, with addresses from IPAM.

Drop-in for upstream's ``dummy`` (v1.2.0+): only the common keys; ``ipam`` is required. As upstream's, the
result's ``dns`` is the IPAM result's, not the config's. The link is made under a temporary name and renamed, as
for every link kind here, so a host link named like ``CNI_IFNAME`` never clashes (upstream's #1205, fixed in
v1.9.0). See docs/dummy.md.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from cni_common import config
from cni_common.errors import CNIError, ErrorCode, check_failed
from cni_common.skel import CmdArgs, CNIFuncs, plugin_main
from cni_common.types import Result
from cni_common.version import about_line

if TYPE_CHECKING:
    import contextlib

    from cni_common.links.attach import LinkPlan
    from cni_common.netlink import Conn, Link

# ---------------------------------------------------------------------------------------------------- config


def load_plan(conf: dict[str, Any]) -> LinkPlan:
    """Parse and validate (every verb): the IPAM type is all a dummy link needs."""
    from cni_common.links.attach import LinkPlan

    config.check_netconf_types(conf)
    ipam_type = config.get_str(config.get_dict(conf, "ipam"), "type", where="ipam")
    if not ipam_type:
        raise CNIError(ErrorCode.INVALID_CONFIG, "dummy interface requires an IPAM configuration")
    return LinkPlan("dummy", ipam_type=ipam_type, dns_from_ipam=True)


# ---------------------------------------------------------------------------------------------------- verbs


def cmd_add(args: CmdArgs) -> Result:
    from cni_common.links import attach, place

    def make(host: Conn, cont: Conn, undo: contextlib.ExitStack[Any]) -> Link:
        return place.create(cont, cont, args.ifname, "dummy", undo=undo)

    return attach.add(args, load_plan(args.conf), make)


def cmd_del(args: CmdArgs) -> None:
    from cni_common.links import attach

    attach.delete(args, load_plan(args.conf))


def cmd_check(args: CmdArgs) -> None:
    from cni_common.links import attach

    def verify(host: Conn, cont: Conn, link: Link, data: dict[str, Any]) -> None:
        if not link.up:
            raise check_failed(f"Interface {args.ifname} is down")

    attach.check(args, load_plan(args.conf), verify)


def cmd_status(args: CmdArgs) -> None:
    from cni_common.links import attach

    attach.status(args, load_plan(args.conf))


def cmd_gc(args: CmdArgs) -> None:
    from cni_common.links import attach

    attach.gc(args, load_plan(args.conf))


def main(**streams: Any) -> int:
    """``streams`` (environ, stdin, stdout, stderr) let tests drive the plugin in-process."""
    return plugin_main(CNIFuncs(add=cmd_add, delete=cmd_del, check=cmd_check, status=cmd_status, gc=cmd_gc),
                       about=about_line("dummy"), **streams)


if __name__ == "__main__":
    sys.exit(main())
