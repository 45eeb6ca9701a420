"""A node's existing device lent to a container (host-device): found, moved in and renamed, given back on DEL.

Upstream's order (v1.6.0+): the device goes into a scratch namespace, is renamed to ``CNI_IFNAME`` there with
its host name kept as its alias (IFLA_IFALIAS), then moves into the container; DEL takes the same way back. So
a node can switch between the Go plugin and this one with devices lent out: both read the alias.

Beyond upstream:
- the host side of the device is written down at ADD (its addresses and whether it was up, in a small file of
  :data:`DEFAULT_DATA_DIR`) and restored at DEL; moving between namespaces drops a device's addresses, and
  upstream left it down and bare (#754);
- DEL succeeds when the device is already back, gone, or the netns is gone: a second DEL used to fail with
  ``Link not found`` and left pods stuck Terminating (#995);
- a physical device whose netns died without a DEL returns to the node under its container name; DEL finds it
  there by its alias and gives it its name back.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import json
import os
import re
from typing import TYPE_CHECKING, Any, Optional

from ..errors import CNIError, ErrorCode, PluginCode, undo_quietly
from ..log import get_logger
from ..record import record

if TYPE_CHECKING:
    from ..netlink import Conn, Link

log = get_logger(__name__)

#: Where a lent device's host state waits for its DEL (the ``dataDir`` key overrides it).
DEFAULT_DATA_DIR = "/var/lib/cni/host-device"
#: The sysfs root device paths are read under (tests point it elsewhere).
SYSFS = "/sys"
#: PCI drivers of a device handed to a DPDK application: nothing is moved, no address is applied.
DPDK_DRIVERS = ("vfio-pci", "uio_pci_generic", "igb_uio")
_PCI_ADDRESS = re.compile(r"^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$")


@record
class Selector:
    """How the config names the device: the first key set wins, as upstream's order."""

    device: str = ""
    hwaddr: str = ""
    kernelpath: str = ""
    pci_bus_id: str = ""
    auxiliary: str = ""  # an auxiliary bus device (runtimeConfig.deviceID naming one)


@record
class HostSide:
    """What the node had on the device before it was lent: given back at DEL."""

    name: str
    up: bool
    addresses: list[str]


# ---------------------------------------------------------------------------------------------------- finding


def selector_from_conf(device: str, hwaddr: str, kernelpath: str, pci_bus_id: str, device_id: str) -> Selector:
    """The selector of a config; ``device_id`` (runtimeConfig) is a PCI address or an auxiliary device name."""
    if device_id:
        if os.path.isdir(f"{SYSFS}/bus/pci/devices/{device_id}"):
            pci_bus_id = device_id
        elif os.path.isdir(f"{SYSFS}/bus/auxiliary/devices/{device_id}"):
            return Selector(auxiliary=device_id)
        else:
            raise CNIError(ErrorCode.INVALID_CONFIG, f"runtime config DeviceID {device_id} not found or unsupported")
    sel = Selector(device=device, hwaddr=hwaddr.lower(), kernelpath=kernelpath, pci_bus_id=pci_bus_id)
    if device or hwaddr:
        return sel
    if kernelpath:
        if not (os.path.isabs(kernelpath) and kernelpath.startswith("/sys/devices/")):
            raise CNIError(ErrorCode.INVALID_CONFIG, f'kernel device path ("kernelpath") "{kernelpath}" must be '
                           "absolute and begin with /sys/devices/")
        return sel
    if pci_bus_id:
        if not _PCI_ADDRESS.match(pci_bus_id):
            raise CNIError(ErrorCode.INVALID_CONFIG, f'"pciBusID" {pci_bus_id!r} is not a PCI address (0000:00:00.0)')
        return sel
    raise CNIError(ErrorCode.INVALID_CONFIG, 'specify either "device", "hwaddr", "kernelpath" or "pciBusID"')


def dpdk_driver(sel: Selector) -> str:
    """The PCI device's driver when it is a DPDK one (the device then has no netdev to move), else ""."""
    if not sel.pci_bus_id or sel.device or sel.hwaddr or sel.kernelpath:
        return ""
    with contextlib.suppress(OSError):
        driver = os.path.basename(os.readlink(f"{SYSFS}/bus/pci/devices/{sel.pci_bus_id}/driver"))
        return driver if driver in DPDK_DRIVERS else ""
    return ""


def find_host_device(host: Conn, sel: Selector) -> Link:
    """The node's link the selector names (in the plugin's namespace)."""
    from .. import netlink as nl

    if sel.device:
        name = sel.device
    elif sel.hwaddr:
        found = next((lk for lk in nl.list_links(host) if lk.mac == sel.hwaddr), None)
        if found is None:
            raise CNIError(ErrorCode.INVALID_CONFIG, f'failed to find host device: no link with "hwaddr" {sel.hwaddr}')
        return found
    elif sel.kernelpath:
        name = _first_netdev(f"{sel.kernelpath}/net", f"kernel device path {sel.kernelpath}")
    elif sel.pci_bus_id:
        name = _pci_netdev(sel.pci_bus_id)
    else:
        name = _first_netdev(f"{SYSFS}/bus/auxiliary/devices/{sel.auxiliary}/net", f"auxiliary device {sel.auxiliary}")
    link = nl.find_link(host, name)
    if link is None:
        raise CNIError(ErrorCode.INVALID_CONFIG, f'failed to find host device "{name}": Link not found')
    return link


def _pci_netdev(pci: str) -> str:
    base = f"{SYSFS}/bus/pci/devices/{pci}"
    with contextlib.suppress(CNIError):
        return _first_netdev(f"{base}/net", "")
    with contextlib.suppress(OSError):
        for entry in sorted(os.listdir(base)):
            if entry.startswith("virtio"):
                with contextlib.suppress(CNIError):
                    return _first_netdev(f"{base}/{entry}/net", "")
    raise CNIError(ErrorCode.INVALID_CONFIG, f"no net directory under pci device {pci}")


def _first_netdev(net_dir: str, what: str) -> str:
    try:
        names = sorted(os.listdir(net_dir))
    except OSError as exc:
        raise CNIError(ErrorCode.INVALID_CONFIG, f"failed to find a network device under {what or net_dir}") from exc
    if not names:
        raise CNIError(ErrorCode.INVALID_CONFIG, f"no network device under {what or net_dir}")
    return names[0]


# ---------------------------------------------------------------------------------------------------- moving


def lend(host: Conn, cont: Conn, device: Link, before: HostSide, ifname: str,
         undo: contextlib.ExitStack[Any]) -> Link:
    """Move ``device`` (``before``: its :func:`host_side`) into the container as ``ifname`` (down), its host name
    kept as its alias; ``undo`` gets the way back, so a later failure of the ADD returns it as it was."""
    from .. import netlink as nl

    if nl.find_link(cont, ifname) is not None:
        raise CNIError(PluginCode.LINK_FAILURE, f'container already has an interface "{ifname}"')
    nl.set_down(host, device.index)
    undo.callback(undo_quietly, restore_host_side, host, before)
    with _scratch_conn() as (scratch_ns, scratch):
        nl.move_link(host, device.index, scratch_ns.fd)
        try:
            nl.rename_link(scratch, device.index, ifname)
            nl.set_alias(scratch, device.index, before.name)
            nl.move_link(scratch, device.index, cont.netns.fd)
        except BaseException:
            undo_quietly(_rename_home, scratch, host, device.index, before.name)  # before the scratch goes
            raise
    undo.callback(undo_quietly, give_back, cont, host, ifname)
    return nl.get_link(cont, ifname)


def give_back(cont: Conn, host: Conn, ifname: str) -> Optional[str]:
    """Move ``ifname`` from the container back to the node under its alias (its host name); returns that name,
    or None when the container has no such link (already given back, or gone)."""
    from .. import netlink as nl

    link = nl.find_link(cont, ifname)
    if link is None:
        return None
    if not link.alias:
        raise CNIError(PluginCode.LINK_FAILURE, f'failed to find original ifname for "{ifname}" (alias is not set)')
    with _scratch_conn() as (_, scratch):
        nl.set_down(cont, link.index)
        nl.move_link(cont, link.index, scratch.netns.fd)
        _rename_home(scratch, host, link.index, link.alias)
    return link.alias


def reclaim_orphan(host: Conn, ifname: str, name: str) -> bool:
    """A physical device whose netns died without a DEL is back in the node as ``ifname``, aliased ``name``:
    give it its name back. False when there is no such link."""
    from .. import netlink as nl

    link = nl.find_link(host, ifname)
    if link is None or link.alias != name or nl.find_link(host, name) is not None:
        return False
    nl.set_down(host, link.index)
    nl.rename_link(host, link.index, name)
    nl.set_alias(host, link.index, "")
    return True


def _rename_home(scratch: Conn, host: Conn, index: int, name: str) -> None:
    """In the scratch namespace: the host name back, the alias cleared, then into the node."""
    from .. import netlink as nl

    nl.rename_link(scratch, index, name)
    nl.set_alias(scratch, index, "")
    try:
        nl.move_link(scratch, index, host.netns.fd)
    except nl.NetlinkError as exc:
        if exc.errno == errno.EEXIST:
            raise CNIError(PluginCode.LINK_FAILURE,
                           f'the node has a link "{name}" again: cannot give the device back') from exc
        raise


@contextlib.contextmanager
def _scratch_conn() -> Any:
    from .. import netlink as nl
    from ..netns import scratch

    with scratch() as ns, nl.open_conn(ns) as conn:
        yield ns, conn


# ---------------------------------------------------------------------------------------------------- host state


def host_side(host: Conn, device: Link) -> HostSide:
    """The device's name, up state and global addresses (link-local ones come back by themselves)."""
    from .. import netlink as nl

    addrs = [str(a.address) for a in nl.list_addrs(host, device.index) if a.is_global_unicast]
    return HostSide(device.name, device.up, addrs)


def restore_host_side(host: Conn, side: HostSide) -> None:
    """Give the device back its addresses and up state (idempotent)."""
    from .. import netlink as nl

    link = nl.find_link(host, side.name)
    if link is None:
        return
    for addr in side.addresses:
        nl.add_addr(host, link.index, ipaddress.ip_interface(addr), exist_ok=True)
    if side.up:
        nl.set_up(host, link.index)


def state_path(data_dir: str, network: str, container_id: str, ifname: str) -> str:
    """One file per attachment, in a directory per network (as host-local keeps its leases)."""
    return os.path.join(data_dir, network, f"{container_id}-{ifname}")


def prune_host_sides(data_dir: str, network: str, valid: set[tuple[str, str]]) -> None:
    """GC: forget the state of attachments the runtime no longer has (their DEL never came)."""
    keep = {os.path.basename(state_path(data_dir, network, cid, ifname)) for cid, ifname in valid}
    directory = os.path.join(data_dir, network)
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return
    for name in names:
        if name not in keep and not name.startswith(".tmp-"):
            log.info("GC: forgetting the host-device state %s (no such attachment)", name)
            forget_host_side(os.path.join(directory, name))


def save_host_side(path: str, side: HostSide) -> None:
    """Write the host side durably, whole or not at all (a temp file in the directory, fsync, rename)."""
    import tempfile

    from ..durable import fsync_dir, write_all

    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    data = json.dumps({"name": side.name, "up": side.up, "addresses": side.addresses}).encode()
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        write_all(fd, data)
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(directory)


def load_host_side(path: str) -> Optional[HostSide]:
    """The saved host side, or None when there is none (a node that switched from Go) or it is unreadable."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as f:
            raw = json.loads(f.read(65536))
        return HostSide(str(raw["name"]), bool(raw["up"]), [str(a) for a in raw["addresses"]])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring unreadable host-device state %s: %s", path, exc)
        return None


def forget_host_side(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)

