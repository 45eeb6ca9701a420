"""The host-device plugin: lends one of the node's existing devices to the container, and gives it back on DEL.

Drop-in for upstream's ``host-device`` (v1.9): the device is named by ``device``, ``hwaddr``, ``kernelpath`` or
``pciBusID`` (the first one set wins) or by ``runtimeConfig.deviceID`` (capability ``deviceID``: a PCI address,
or an auxiliary device); ``ipam`` is optional; a PCI device bound to a DPDK driver is not moved. Ours adds
``dataDir`` (default /var/lib/cni/host-device): where the device's host addresses and up state wait for DEL,
which restores them. The moves are the library's :mod:`cni_common.links.device`, the addresses and verbs
:mod:`cni_common.links.attach`. See docs/host-device.md.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from cni_common import config
from cni_common.record import record
from cni_common.skel import CmdArgs, CNIFuncs, plugin_main
from cni_common.types import DNS, Interface, Result
from cni_common.version import about_line

if TYPE_CHECKING:
    import contextlib

    from cni_common.links.attach import LinkPlan
    from cni_common.links.device import Selector
    from cni_common.netlink import Conn, Link

# ---------------------------------------------------------------------------------------------------- config

KIND = "host-device"


@record
class HostDeviceConf:
    network: str
    device: str
    hwaddr: str
    kernelpath: str
    pci_bus_id: str
    device_id: str  # runtimeConfig.deviceID
    ipam_type: str
    dns: DNS
    data_dir: str


def load_conf(conf: dict[str, Any]) -> HostDeviceConf:
    """Parse the keys (every verb); which device they name is looked up by ADD and CHECK only, so a DEL never
    fails because the device or its PCI function has gone."""
    from cni_common.links.device import DEFAULT_DATA_DIR

    config.check_netconf_types(conf)
    return HostDeviceConf(
        network=config.get_str(conf, "name"),
        device=config.get_str(conf, "device"),
        hwaddr=config.get_str(conf, "hwaddr"),
        kernelpath=config.get_str(conf, "kernelpath"),
        pci_bus_id=config.get_str(conf, "pciBusID"),
        device_id=config.get_str(config.runtime_config(conf), "deviceID", where="runtimeConfig"),
        ipam_type=config.get_str(config.get_dict(conf, "ipam"), "type", where="ipam"),
        dns=DNS.from_dict(config.get_dict(conf, "dns")),
        data_dir=config.get_str(conf, "dataDir") or DEFAULT_DATA_DIR,
    )


def _selector(c: HostDeviceConf) -> Selector:
    from cni_common.links.device import selector_from_conf

    return selector_from_conf(c.device, c.hwaddr, c.kernelpath, c.pci_bus_id, c.device_id)


def _plan(c: HostDeviceConf) -> LinkPlan:
    from cni_common.links.attach import LinkPlan

    return LinkPlan("", ipam_type=c.ipam_type, dns=c.dns, arp_notify=False, ndisc_notify=False)  # any kind


def _state_path(c: HostDeviceConf, args: CmdArgs) -> str:
    from cni_common.links.device import state_path

    return state_path(c.data_dir, c.network, args.container_id, args.ifname)


# ---------------------------------------------------------------------------------------------------- verbs


def cmd_add(args: CmdArgs) -> Result:
    from cni_common import invoke
    from cni_common.links import attach, device

    c = load_conf(args.conf)
    sel = _selector(c)
    if device.dpdk_driver(sel):
        result = Result(interfaces=[Interface(args.ifname, sandbox=args.netns)])
        if c.ipam_type:  # addresses for the DPDK application; no netdev to put them on
            ipam = invoke.delegate("ADD", c.ipam_type, args)
            result.ips, result.routes = (ipam.ips, ipam.routes) if ipam is not None else ([], [])
        result.dns = c.dns
        return result

    def make(host: Conn, cont: Conn, undo: contextlib.ExitStack[Any]) -> Link:
        dev = device.find_host_device(host, sel)
        before, path = device.host_side(host, dev), _state_path(c, args)
        device.save_host_side(path, before)
        undo.callback(device.forget_host_side, path)
        return device.lend(host, cont, dev, before, args.ifname, undo)

    return attach.add(args, _plan(c), make)


def cmd_del(args: CmdArgs) -> None:
    """IPAM DEL always runs (upstream skips it when the netns is gone, leaking the address: #1196); the device
    goes back under its host name with its addresses and up state; every step is done when already done."""
    from cni_common import invoke
    from cni_common.errors import BestEffort

    c = load_conf(args.conf)
    steps = BestEffort()
    if c.ipam_type:
        with steps:
            invoke.delegate("DEL", c.ipam_type, args)
    with steps:
        _return_device(c, args)
    steps.raise_if_failed(f"{KIND} DEL failed")


def _return_device(c: HostDeviceConf, args: CmdArgs) -> None:
    from cni_common import netlink as nl
    from cni_common.links import device
    from cni_common.netns import NetNS

    path = _state_path(c, args)
    saved = device.load_host_side(path)
    with nl.open_conn() as host:
        name = None
        ns = NetNS.if_present(args.netns)
        if ns is not None:
            with ns, nl.open_conn(ns) as cont:
                name = device.give_back(cont, host, args.ifname)
        elif saved is not None and device.reclaim_orphan(host, args.ifname, saved.name):
            name = saved.name
        if saved is not None and (name is None or name == saved.name):
            device.restore_host_side(host, saved)
    device.forget_host_side(path)


def cmd_check(args: CmdArgs) -> None:
    from cni_common.links import attach, device

    c = load_conf(args.conf)
    if device.dpdk_driver(_selector(c)):
        return
    attach.check(args, _plan(c))


def cmd_status(args: CmdArgs) -> None:
    from cni_common.links import attach

    attach.status(args, _plan(load_conf(args.conf)))


def cmd_gc(args: CmdArgs) -> None:
    """IPAM's GC, then the state files of attachments not in ``cni.dev/valid-attachments``."""
    from cni_common.links import attach, device

    c = load_conf(args.conf)
    attach.gc(args, _plan(c))
    valid = config.valid_attachments(args.conf)
    if valid is not None:
        device.prune_host_sides(c.data_dir, c.network, valid)


def main(**streams: Any) -> int:
    """``streams`` (environ, stdin, stdout, stderr) let tests drive the plugin in-process."""
    return plugin_main(CNIFuncs(add=cmd_add, delete=cmd_del, check=cmd_check, status=cmd_status, gc=cmd_gc),
                       about=about_line(KIND), **streams)


if __name__ == "__main__":
    sys.exit(main())
