"""Reads and writes of /proc/sys/net for the current network namespace.

/proc/sys/net shows the namespace of the task that opens the file, so call these inside
:meth:`cni_common.netns.NetNS.entered` to act on a container. Keys are given as path parts, not as a dotted
string, because interface names may contain dots (``br0.100``) and a dotted key could not tell them apart.
"""

from __future__ import annotations

import os

from .errors import CNIError, ErrorCode
from .log import get_logger

log = get_logger(__name__)

_ROOT = "/proc/sys/net"


def _path(parts: tuple[str, ...]) -> str:
    for part in parts:
        if not part or "/" in part or part in (".", ".."):
            raise CNIError(ErrorCode.INTERNAL, f"invalid sysctl key part {part!r} in {'/'.join(parts)!r}")
    return os.path.join(_ROOT, *parts)


def read(*parts: str) -> str:
    """The value of ``net/<parts...>``, stripped; e.g. ``read("ipv4", "ip_forward")``."""
    path = _path(parts)
    try:
        with open(path, encoding="ascii") as f:
            return f.read().strip()
    except OSError as exc:
        raise CNIError(ErrorCode.IO_FAILURE, f"failed to read sysctl {path}: {exc.strerror}") from exc


def write(value: str | int, *parts: str) -> None:
    """Set ``net/<parts...>`` to ``value``; e.g. ``write(0, "ipv6", "conf", "eth0", "accept_dad")``."""
    path = _path(parts)
    try:
        with open(path, "w", encoding="ascii") as f:
            f.write(str(value))
    except OSError as exc:
        raise CNIError(ErrorCode.IO_FAILURE, f"failed to set sysctl {path} to {value}: {exc.strerror}") from exc


def ensure(value: str | int, *parts: str) -> bool:
    """Write ``value`` only when it differs (as upstream does for ip_forward); True when it wrote."""
    if read(*parts) == str(value):
        return False
    write(value, *parts)
    return True


def write_best_effort(value: str | int, *parts: str) -> None:
    """:func:`write` for the settings upstream sets without checking: a host with IPv6 disabled has no
    ``ipv6/conf`` to write, and that must not fail an ADD. A failure is logged at debug level."""
    try:
        write(value, *parts)
    except CNIError as exc:
        log.debug("ignored: %s", exc)


def iface(family: str, ifname: str, name: str) -> tuple[str, str, str, str]:
    """Key parts of a per-interface setting: ``iface("ipv6", "eth0", "accept_ra")``."""
    return (family, "conf", ifname, name)
