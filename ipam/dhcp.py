"""dhcp IPAM: addresses from the network's DHCP server, through the node's ``dhcp daemon``.

Drop-in for the Go plugin's config keys (``ipam.daemonSocketPath``, ``request``, ``provide``, ``priority``).
The lease must be renewed while the container lives, so the work is the daemon's (:mod:`cni_common.dhcp`); this
plugin asks it over the socket, in our own protocol (upstream's Go net/rpc is not spoken: a daemon of the other
kind gets a clear error, not a hang). Beyond upstream: every call is bounded in time, DEL succeeds when the
daemon is gone (a dead daemon must not block pod teardown), CHECK does not acquire a new lease, STATUS reports a
daemon that does not answer (code 50), and GC releases leases of attachments the runtime no longer has.
"""

from __future__ import annotations

import os
import sys

from cni_common.errors import CNIError, ErrorCode
from cni_common.skel import CmdArgs, CNIFuncs, plugin_main
from cni_common.types import Result
from cni_common.version import about_line

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~4 ms per plugin process)
if TYPE_CHECKING:
    from typing import Any

ABOUT = about_line("dhcp")

#: ADD waits as long as the daemon may take to acquire (its -resendtimeout is 208 s; the kubelet allows 220 s).
ALLOCATE_TIMEOUT = 215.0
#: DEL, CHECK, GC and STATUS are bounded tightly: a stuck daemon must not hold pod teardown.
SHORT_TIMEOUT = 10.0
STATUS_TIMEOUT = 3.0


def _socket_path(args: CmdArgs) -> str:
    from cni_common.config import get_key
    from cni_common.dhcp.wire import DEFAULT_SOCKET_PATH

    ipam = get_key(args.conf, "ipam")
    path = get_key(ipam, "daemonSocketPath") if isinstance(ipam, dict) else None
    if path is None or path == "":
        return DEFAULT_SOCKET_PATH
    if not isinstance(path, str):
        raise CNIError(ErrorCode.INVALID_CONFIG, "ipam.daemonSocketPath must be a string", repr(path)[:100])
    return path


def _priority(args: CmdArgs) -> int | None:
    from cni_common.config import get_dict, get_int

    ipam = get_dict(args.conf, "ipam")
    value = get_int(ipam, "priority", 0, where="ipam")
    if value < 0:
        raise CNIError(ErrorCode.INVALID_CONFIG, "ipam.priority must not be negative", str(value))
    return value or None


def _validate(args: CmdArgs) -> None:
    """Refuse a bad ``request``/``provide`` here (code 7, nothing sent), as the daemon would."""
    from cni_common.config import get_dict
    from cni_common.dhcp.options import settings

    settings(get_dict(args.conf, "ipam"), args.container_id, args.network_name, args.ifname, args.args)


def _call(args: CmdArgs, method: str, timeout: float) -> dict[str, Any]:
    from cni_common.dhcp import wire

    netns = os.path.abspath(args.netns) if args.netns else ""
    return wire.call(_socket_path(args), method,
                     {"containerID": args.container_id, "netns": netns, "ifname": args.ifname, "args": args.args,
                      "path": os.pathsep.join(args.path), "stdin": args.stdin_data.decode(errors="replace")},
                     timeout)


def cmd_add(args: CmdArgs) -> Result:
    """The daemon acquires (or already holds) the lease; its address, gateway, routes and DNS are the result."""
    _validate(args)
    priority = _priority(args)
    result = Result.from_dict(_call(args, "allocate", ALLOCATE_TIMEOUT), "1.1.0")
    if priority is not None:
        for route in result.routes:
            route.priority = priority
    result.cni_version = args.cni_version
    return result


def cmd_del(args: CmdArgs) -> None:
    """DHCPRELEASE through the daemon. A daemon that is not running does not fail the DEL (upstream's does, and
    the pod cannot be torn down); its leases on disk are dropped when it next starts and finds the link gone."""
    from cni_common.dhcp.wire import DaemonUnreachable
    from cni_common.log import get_logger

    try:
        _call(args, "release", SHORT_TIMEOUT)
    except DaemonUnreachable as exc:
        get_logger(__name__).warning("%s: lease not released (the server keeps it until it expires)", exc.msg)


def cmd_check(args: CmdArgs) -> None:
    """The daemon must hold a lease for the attachment, with the address of ``prevResult`` when there is one."""
    from cni_common.types import prev_result_addresses

    held = Result.from_dict(_call(args, "check", SHORT_TIMEOUT), "1.1.0")
    expected = prev_result_addresses(args.conf, args.cni_version, args.ifname)
    have = {ip.address for ip in held.ips}
    missing = [str(addr) for addr in expected if addr.version == 4 and addr not in have]
    if missing:
        raise CNIError(ErrorCode.INVALID_ENV, f"dhcp: the lease of {args.ifname!r} no longer holds {missing[0]}",
                       f"held: {', '.join(str(a) for a in have) or 'none'}")


def cmd_gc(args: CmdArgs) -> None:
    """The daemon releases this network's leases that ``cni.dev/valid-attachments`` does not list."""
    _call(args, "gc", SHORT_TIMEOUT)


def cmd_status(args: CmdArgs) -> None:
    """Code 50 while the daemon does not answer: no ADD could succeed."""
    from cni_common.dhcp.wire import DaemonUnreachable

    try:
        _call(args, "status", STATUS_TIMEOUT)
    except DaemonUnreachable as exc:
        raise CNIError(ErrorCode.NOT_AVAILABLE, exc.msg, exc.details) from exc


def main(**streams: Any) -> int:
    """Run dhcp; ``streams`` (environ, stdin, stdout, stderr) let a plugin of the same build run it in-process."""
    return plugin_main(CNIFuncs(add=cmd_add, delete=cmd_del, check=cmd_check, gc=cmd_gc, status=cmd_status),
                       about=ABOUT, **streams)


if __name__ == "__main__":
    sys.exit(main())
