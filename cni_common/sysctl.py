"""Reads and writes of /proc/sys/net for the current network namespace.

/proc/sys/net shows the namespace of the task that opens the file, so call these inside
:meth:`cni_common.netns.NetNS.entered` to act on a container. Keys are given as path parts, not as a dotted
string, because interface names may contain dots (``br0.100``) and a dotted key could not tell them apart.
Plain descriptors, not file objects: a bridge ADD writes five of these, and ``open()``'s buffered text layer cost
four more system calls and a few dozen objects each (~40 µs in a warm child) for one or two bytes.
"""

from __future__ import annotations

import os

from . import procfs
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
        data = procfs.read(path)
    except OSError as exc:
        raise CNIError(ErrorCode.IO_FAILURE, f"failed to read sysctl {path}: {exc.strerror}") from exc
    return data.decode("ascii").strip()


def write(value: str | int, *parts: str) -> None:
    """Set ``net/<parts...>`` to ``value``; e.g. ``write(0, "ipv6", "conf", "eth0", "accept_dad")``."""
    path = _path(parts)
    data = str(value).encode("ascii")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)  # what open(path, "w") asks
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
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


# ------------------------------------------------------------------------------------ keys from a user's config

def user_key_parts(key: str, ifname: str) -> tuple[str, ...]:
    """The path parts under ``/proc/sys`` of a sysctl key written in a config (upstream tuning's rule).

    Every ``.`` becomes ``/`` first, then the first ``IFNAME`` becomes ``ifname`` (so ``net.ipv4.conf.IFNAME.
    arp_filter`` works for an interface named ``eth0.100``). One leading ``/`` is allowed (``/net/...``). Empty
    parts are refused, and with them every ``..`` (its dots become slashes): upstream cleans such a path and
    then checks the prefix; refusing it leaves no doubt where a key points. Only ``net/...`` keys are accepted:
    those are the container namespace's own. Raises code 7 naming the key.
    """
    parts = tuple(key.replace(".", "/").replace("IFNAME", ifname, 1).removeprefix("/").split("/"))
    if len(parts) < 2 or parts[0] != "net" or any(p in ("", ".", "..") for p in parts):
        raise CNIError(ErrorCode.INVALID_CONFIG, f"invalid net sysctl key: {key!r} (sysctl): only keys under "
                       f"/proc/sys/net, the container's namespace, are allowed")
    return parts


def _open_beneath(parts: tuple[str, ...], flags: int, root: str) -> int:
    """An fd on ``root/<parts[1:]>`` (``parts[0]`` is ``net``, the root itself) opened one component at a time
    with ``O_NOFOLLOW``: a symlink anywhere on the way is refused (ELOOP/ENOTDIR), so the file opened is the
    one under ``root`` that the key names and no other."""
    nofollow = os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY | nofollow)
    try:
        for part in parts[1:-1]:
            next_fd = os.open(part, os.O_PATH | os.O_DIRECTORY | nofollow, dir_fd=fd)
            os.close(fd)
            fd = next_fd
        return os.open(parts[-1], flags | nofollow, dir_fd=fd)
    finally:
        os.close(fd)


def read_beneath(parts: tuple[str, ...], root: str = _ROOT) -> str:
    """The raw value of a :func:`user_key_parts` key in the current namespace (no symlink followed)."""
    try:
        fd = _open_beneath(parts, os.O_RDONLY, root)
    except OSError as exc:
        raise CNIError(ErrorCode.INVALID_CONFIG,
                       f"failed to read sysctl {'/'.join(parts)}: {exc.strerror} (sysctl)") from exc
    with os.fdopen(fd, encoding="ascii", errors="replace") as f:
        return f.read()


def write_beneath(parts: tuple[str, ...], value: str, root: str = _ROOT) -> None:
    """Write ``value`` (no newline, as upstream) to a :func:`user_key_parts` key (no symlink followed)."""
    try:
        fd = _open_beneath(parts, os.O_WRONLY, root)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)
    except OSError as exc:
        raise CNIError(ErrorCode.INVALID_CONFIG,
                       f"failed to set sysctl {'/'.join(parts)} to {value!r}: {exc.strerror} (sysctl)") from exc
