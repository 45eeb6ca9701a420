"""The one place that makes a container's link: created from the right namespace (the node's, or the container's
with ``linkInContainer``) and moved into the container's in the same request, under a temporary name, renamed
to ``CNI_IFNAME`` there, and rolled back on a failed ADD.

Upstream's macvlan, ipvlan, vlan and tap create the link as ``veth`` + 8 hex digits straight into the
container's namespace (the kernel checks the new name in the namespace it is created *from*, so creating it
there under its final name could clash with a host link), then rename it inside. The same is done here for
every kind, dummy included, so the name checks and the rollback are written once. Unlike upstream (ipvlan and
vlan leave their temporary link behind on a failed rename, tap reports its rename failure as a failed refetch),
a failure at any step removes what this ADD created.
"""

from __future__ import annotations

import contextlib
import errno
import os
import struct
from typing import TYPE_CHECKING, Any, Optional

from ..errors import CNIError, ErrorCode, PluginCode, undo_quietly
from ..log import get_logger

if TYPE_CHECKING:
    from ..netlink import Conn, Link
    from ..netlink.link import Nla
    from ..netns import NetNS

log = get_logger(__name__)

#: A clash of the random temporary name with an existing link is retried this often.
TEMP_NAME_ATTEMPTS = 10

# The tun driver's ioctls (linux/if_tun.h) and the flags of the device tap makes: a tap without packet info,
# what `ip tuntap add mode tap` makes (upstream made two different devices, depending on owner and group).
TUNSETIFF = 0x400454CA
TUNSETPERSIST = 0x400454CB
TUNSETOWNER = 0x400454CC
TUNSETGROUP = 0x400454CE
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_MULTI_QUEUE = 0x0100
_IFREQ = struct.Struct("16sH22x")


def temp_name() -> str:
    """``veth`` + 8 random hex digits: upstream's temporary name, so both kinds of plugin look alike on a node."""
    return "veth" + os.urandom(4).hex()


def refuse_existing(cont: Conn, ifname: str, kind: str) -> None:
    """Upstream's text for a ``CNI_IFNAME`` the container already has (checked before anything is made)."""
    from .. import netlink as nl

    if nl.find_link(cont, ifname) is not None:
        raise CNIError(PluginCode.LINK_FAILURE, f'failed to rename {kind} to "{ifname}": file exists')


def create(origin: Conn, cont: Conn, ifname: str, kind: str, *data: Nla, parent: int = 0, mtu: int = 0,
           mac: str = "", undo: contextlib.ExitStack[Any]) -> Link:
    """Create a ``kind`` link for the container and name it ``ifname``; returns it, down.

    ``origin`` is the namespace ``parent`` (an index) lives in: the host, or the container itself
    (``linkInContainer``, dummy). ``undo`` gets the link's removal, so a later failure of the ADD removes it.
    """
    from .. import netlink as nl

    refuse_existing(cont, ifname, kind)
    into = cont.netns.fd if origin is not cont else -1
    for _ in range(TEMP_NAME_ATTEMPTS):
        name = temp_name()
        try:
            nl.create_link(origin, name, kind, *data, parent=parent, mtu=mtu, mac=mac, netns_fd=into)
        except nl.NetlinkError as exc:
            if exc.errno == errno.EEXIST and nl.find_link(cont, name) is not None:
                continue  # our random name was taken: another one
            raise CNIError(PluginCode.LINK_FAILURE, f"failed to create {kind}: {exc.msg}") from exc
        return adopt(cont, name, ifname, kind, undo=undo)
    raise CNIError(PluginCode.LINK_FAILURE, f"failed to find a free temporary name for the {kind} link")


def create_tap(cont_ns: NetNS, cont: Conn, ifname: str, *, multi_queue: bool, owner: Optional[int],
               group: Optional[int], selinux_context: str = "", undo: contextlib.ExitStack[Any]) -> Link:
    """Create a persistent tap device in the container and name it ``ifname``; returns it, down.

    Made through /dev/net/tun opened inside the container's namespace (a tun device belongs to the namespace
    it was opened in). With ``selinux_context`` on an SELinux node, ``ip tuntap`` makes it under that exec
    label instead (as upstream does), so the device carries the label.
    """
    refuse_existing(cont, ifname, "tap")
    name = temp_name()
    with cont_ns.entered():
        if selinux_context and os.path.isdir("/sys/fs/selinux"):
            _tap_by_ip(name, multi_queue, owner, group, selinux_context)
        else:
            if selinux_context:
                log.warning("selinuxContext %r ignored: SELinux is not enabled on this node", selinux_context)
            _tap_by_ioctl(name, multi_queue, owner, group)
    return adopt(cont, name, ifname, "tap", undo=undo)


def _tap_by_ioctl(name: str, multi_queue: bool, owner: Optional[int], group: Optional[int]) -> None:
    import fcntl

    flags = IFF_TAP | IFF_NO_PI | (IFF_MULTI_QUEUE if multi_queue else 0)
    try:
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        raise CNIError(PluginCode.LINK_FAILURE, f"failed to open /dev/net/tun: {exc.strerror}") from exc
    try:
        fcntl.ioctl(fd, TUNSETIFF, _IFREQ.pack(name.encode(), flags))
        if owner is not None:
            fcntl.ioctl(fd, TUNSETOWNER, owner)
        if group is not None:
            fcntl.ioctl(fd, TUNSETGROUP, group)
        fcntl.ioctl(fd, TUNSETPERSIST, 1)
    except OSError as exc:
        raise CNIError(PluginCode.LINK_FAILURE, f"failed to create tap {name!r}: {exc.strerror}") from exc
    finally:
        os.close(fd)


def _tap_by_ip(name: str, multi_queue: bool, owner: Optional[int], group: Optional[int], label: str) -> None:
    """``ip tuntap add`` run under the SELinux exec label ``label`` (the calling thread's next exec)."""
    from .. import spawn

    ip = spawn.find_executable("ip", os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin").split(":"))
    if ip is None:
        raise CNIError(ErrorCode.INVALID_ENV, "selinuxContext needs the ip command in PATH")
    argv = [ip, "tuntap", "add", "mode", "tap", "name", name]
    argv += ["multi_queue"] if multi_queue else []
    argv += ["user", str(owner)] if owner is not None else []
    argv += ["group", str(group)] if group is not None else []
    exec_attr = "/proc/thread-self/attr/exec"
    try:
        with open(exec_attr, "w") as f:
            f.write(label)
        done = spawn.run(argv)
    except OSError as exc:
        raise CNIError(PluginCode.LINK_FAILURE, f"failed to set SELinux label {label!r}: {exc.strerror}") from exc
    finally:
        with contextlib.suppress(OSError), open(exec_attr, "w") as f:
            f.write("")
    if done.returncode != 0:
        raise CNIError(PluginCode.LINK_FAILURE, f"failed to create tap {name!r}: {done.error_text()}")


def adopt(cont: Conn, name: str, ifname: str, kind: str, *, undo: contextlib.ExitStack[Any]) -> Link:
    """Take link ``name`` (just made in the container by other means: tap) under the rollback, rename it to
    ``ifname``; returns it."""
    from .. import netlink as nl

    link = nl.get_link(cont, name)
    undo.callback(undo_quietly, nl.delete_link, cont, link.index)
    try:
        nl.rename_link(cont, link.index, ifname)
    except nl.NetlinkError as exc:
        if exc.errno == errno.EEXIST:
            raise CNIError(PluginCode.LINK_FAILURE, f'failed to rename {kind} to "{ifname}": file exists') from exc
        raise CNIError(PluginCode.LINK_FAILURE, f'failed to rename {kind} to "{ifname}": {exc.msg}') from exc
    return nl.get_link(cont, link.index)
