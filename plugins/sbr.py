"""The sbr plugin (chained): source-based routing, a routing table per address of the container's interface.

Drop-in for upstream's ``sbr`` (v1.9): without ``table``, each address of ``CNI_IFNAME`` in the prevResult gets
the first free table from 100 up, holding its gateway as default route and the interface's routes, with the rule
``from <address> lookup <table>``; the interface's main-table routes are moved there. With ``table`` (v1.6.0+)
only the rules are added. The work is the library's :mod:`cni_common.srcroute`; the prevResult passes through
unchanged. Unlike upstream, CHECK checks the rules and tables, and the suite's own CHECKs of the main plugins
pass after sbr; DEL never creates a file at the netns path. See docs/sbr.md.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Optional

from cni_common import config
from cni_common.errors import CNIError, ErrorCode
from cni_common.record import record
from cni_common.skel import CmdArgs, CNIFuncs, plugin_main
from cni_common.types import Result
from cni_common.version import about_line

if TYPE_CHECKING:
    from cni_common.types import IPConfig

# ---------------------------------------------------------------------------------------------------- config


@record
class SbrConf:
    table: Optional[int]  # None: a table per address, chosen from 100 up


def load_conf(conf: dict[str, Any]) -> SbrConf:
    config.check_netconf_types(conf)
    table = config.get_typed(conf, "table", int, None)
    if table is not None and (not 0 < table < 2**32 or table in (253, 254, 255)):
        raise CNIError(ErrorCode.INVALID_CONFIG, f'"table" {table} is not a table sbr can use (1-4294967295, not '
                       "253-255: default, main, local)")
    return SbrConf(table=table)


def _prev(args: CmdArgs) -> Optional[Result]:
    raw = args.conf.get("prevResult")
    return Result.from_dict(raw, args.cni_version) if raw else None


def _chained(args: CmdArgs, missing: str) -> tuple[SbrConf, Result, list[IPConfig]]:
    """ADD's and CHECK's request: the config, the prevResult (``missing``: the error without one) and its
    addresses on ``CNI_IFNAME``."""
    from cni_common.srcroute import chained_ips

    c = load_conf(args.conf)
    prev = _prev(args)
    if prev is None:
        raise CNIError(ErrorCode.INVALID_CONFIG, missing)
    return c, prev, chained_ips(prev.ips, [itf.name for itf in prev.interfaces], args.ifname)


# ---------------------------------------------------------------------------------------------------- verbs


def cmd_add(args: CmdArgs) -> Result:
    from cni_common import netlink as nl
    from cni_common import srcroute
    from cni_common.netns import NetNS

    c, prev, ips = _chained(args, "This plugin must be called as chained plugin (no prevResult)")
    with NetNS(args.netns) as ns, srcroute.locked(ns), nl.open_conn(ns) as cont:
        srcroute.setup(cont, args.ifname, ips, c.table)
    return prev


def cmd_del(args: CmdArgs) -> None:
    """A gone or empty netns is success: its rules went with it."""
    from cni_common import netlink as nl
    from cni_common import srcroute
    from cni_common.netns import NetNS

    c = load_conf(args.conf)
    prev = _prev(args)
    known = [ip.address for ip in prev.ips] if prev is not None else []
    ns = NetNS.if_present(args.netns)
    if ns is None:
        return
    with ns, srcroute.locked(ns), nl.open_conn(ns) as cont:
        srcroute.teardown(cont, args.ifname, known, c.table)


def cmd_check(args: CmdArgs) -> None:
    from cni_common import netlink as nl
    from cni_common import srcroute
    from cni_common.netns import NetNS

    c, _, ips = _chained(args, "Required prevResult missing")
    with NetNS(args.netns) as ns, nl.open_conn(ns) as cont:
        srcroute.verify(cont, args.ifname, ips, c.table)


def main(**streams: Any) -> int:
    """``streams`` (environ, stdin, stdout, stderr) let tests drive the plugin in-process."""
    return plugin_main(CNIFuncs(add=cmd_add, delete=cmd_del, check=cmd_check), about=about_line("sbr"), **streams)


if __name__ == "__main__":
    sys.exit(main())
