"""The loopback plugin: ``lo`` up in the container's namespace (containerd's CRI runs it for every pod).

Drop-in for upstream's ``loopback``: no config keys of its own, CNI_IFNAME ignored; the result lists ``lo`` with
127.0.0.1/8 and ::1/128 (or passes a ``prevResult`` through); DEL sets ``lo`` down; CHECK wants it up.
Beyond upstream: a request naming the plugin's own namespace never touches ``lo`` there (with
``CNI_NETNS_OVERRIDE`` set the skel lets it through; upstream's DEL then set the *host's* ``lo`` down:
kubernetes#100648, plugins#714); a refused address is found before ``lo`` changes; results of spec versions
before 1.0.0 have their own shape (upstream prints a 1.0 body under the old version).
"""

from __future__ import annotations

import sys
from typing import Any

from cni_common.errors import CNIError, ErrorCode, PluginCode, check_failed
from cni_common.skel import CmdArgs, CNIFuncs, is_own_netns, plugin_main
from cni_common.types import Interface, IPConfig, Result
from cni_common.version import about_line

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~4 ms per plugin process)
if TYPE_CHECKING:
    from cni_common.log import Logger

LOOPBACK = "lo"
LOOPBACK_MAC = "00:00:00:00:00:00"


def _log() -> "Logger":
    from cni_common.log import get_logger

    return get_logger(__name__)


def _refuse_own_namespace(args: CmdArgs) -> bool:
    """True (and logged) when CNI_NETNS is the namespace this plugin runs in: the node's own ``lo``."""
    if is_own_netns(args.netns):
        _log().warning("CNI_NETNS %s is the plugin's own network namespace: lo left alone", args.netns)
        return True
    return False


def cmd_add(args: CmdArgs) -> Result:
    from cni_common import config
    from cni_common import netlink as nl
    from cni_common.netns import NetNS

    config.check_netconf_types(args.conf, runtime_config=False)
    prev_raw = args.conf.get("prevResult")
    prev = Result.from_dict(prev_raw, args.cni_version) if prev_raw else None  # read before lo changes
    if _refuse_own_namespace(args):
        raise CNIError(ErrorCode.INVALID_NETNS, f"CNI_NETNS {args.netns!r} is the plugin's own network namespace",
                       "lo left alone")
    with NetNS(args.netns) as ns, nl.open_conn(ns) as cont:
        lo = nl.get_link(cont, LOOPBACK)
        for addr in nl.list_addrs(cont, lo.index):
            if not addr.address.ip.is_loopback:
                raise CNIError(PluginCode.LINK_FAILURE,
                               f"loopback interface found with non-loopback address {str(addr.address.ip)!r}")
        nl.set_up(cont, lo.index)
        addrs = [a.address for a in nl.list_addrs(cont, lo.index)]
    if prev is not None:
        return prev
    result = Result(interfaces=[Interface(LOOPBACK, LOOPBACK_MAC, sandbox=args.netns)])
    for family in (4, 6):
        first = next((a for a in addrs if a.version == family), None)
        if first is not None:
            result.ips.append(IPConfig(address=first, interface=0))
    return result


def cmd_del(args: CmdArgs) -> None:
    """``lo`` down; an empty or gone netns is success (nothing left to do). The config is not read (nor by
    upstream's DEL): a DEL never fails on it."""
    from cni_common import netlink as nl
    from cni_common.netns import NetNS

    if _refuse_own_namespace(args):
        return
    ns = NetNS.if_present(args.netns)
    if ns is None:
        return
    with ns, nl.open_conn(ns) as cont:
        lo = nl.find_link(cont, LOOPBACK)
        if lo is not None:
            nl.set_down(cont, lo.index)


def cmd_check(args: CmdArgs) -> None:
    from cni_common import config
    from cni_common import netlink as nl
    from cni_common.netns import NetNS

    config.check_netconf_types(args.conf, runtime_config=False)
    with NetNS(args.netns) as ns, nl.open_conn(ns) as cont:
        lo = nl.find_link(cont, LOOPBACK)
    if lo is None or not lo.up:
        raise check_failed("loopback interface is down")


def main(**streams: Any) -> int:
    """``streams`` (environ, stdin, stdout, stderr) let tests drive the plugin in-process."""
    return plugin_main(CNIFuncs(add=cmd_add, delete=cmd_del, check=cmd_check), about=about_line("loopback"),
                       **streams)


if __name__ == "__main__":
    sys.exit(main())
