"""ADD of a bridge attachment: bridge, veth pair, bridge port, IPAM, the container's layer 3, gateway addresses
and masquerade, as one undo stack.

Beyond upstream: a failed ADD also removes the veth (and with it everything on the container side), releases
the IPAM lease, removes the rules it added, and removes the bridge when it created it and no other port joined
it meanwhile; ``mtu`` also applies to a bridge that already exists.
"""

from __future__ import annotations

import contextlib
import ipaddress
from typing import TYPE_CHECKING, Optional

from .. import invoke, sysctl
from ..errors import CNIError, ErrorCode, undo_quietly
from ..record import record
from ..types import Interface, Result, Route
from . import bridge_port

if TYPE_CHECKING:
    from ..netlink import Conn, Link
    from ..netns import NetNS
    from ..parallel import Task
    from ..skel import CmdArgs
    from ..types import IPInterface
    from .conf import BridgeConf

_DEFAULT_NETS = {4: ipaddress.ip_network("0.0.0.0/0"), 6: ipaddress.ip_network("::/0")}


@record
class Attachment:
    """One ADD in progress: what was asked, the connections it works through, what it has made so far.

    ``result`` grows as the steps run; ``undo`` holds the step that removes each thing made, and is emptied
    when the whole ADD succeeded.
    """

    args: CmdArgs
    conf: BridgeConf
    host: Conn
    cont: Conn
    cont_ns: NetNS
    bridge: Link
    host_veth: Link
    cont_veth: Link
    result: Result
    undo: contextlib.ExitStack[Optional[bool]]


def attach(args: CmdArgs, conf: BridgeConf) -> Result:
    """Create the attachment ``conf`` describes; on any failure everything made so far is undone (veth, IPAM
    lease, rules). IPAM (``conf.ipam_type``) is delegated ``args`` as they are: their stdin is its request."""
    from .. import netlink as nl
    from ..netns import NetNS

    with NetNS(args.netns) as cont_ns, nl.open_conn() as host, nl.open_conn(cont_ns) as cont, \
            contextlib.ExitStack() as undo:
        found = nl.find_link(host, conf.bridge)
        if found is None:
            # A failed first ADD leaves the node as it found it (runs last: after the veth is gone). Registered
            # before the bridge is made: a failure after the kernel created it, while it is set up, counts too.
            undo.callback(undo_quietly, bridge_port.remove_bridge_if_unused, host, conf.bridge)
        br = bridge_port.ensure_bridge(host, conf, found)
        host_veth, cont_veth = nl.setup_veth(host, cont, args.ifname, mtu=conf.mtu, mac=conf.mac)
        undo.callback(undo_quietly, nl.delete_link, cont, args.ifname)  # the host end goes with it
        bridge_port.connect_port(host, br, host_veth, hairpin=conf.hairpin, isolated=conf.port_isolation,
                                 vlan=conf.vlan, trunk=conf.vlan_trunk,
                                 preserve_default_vlan=conf.preserve_default_vlan)
        if conf.macspoofchk:
            from .. import netfilter

            undo.callback(undo_quietly, netfilter.teardown_macspoofchk, args.container_id, args.ifname)
            netfilter.setup_macspoofchk(host_veth.name, cont_veth.mac, args.container_id, args.ifname)
        result = Result(interfaces=[Interface(br.name, br.mac), Interface(host_veth.name, host_veth.mac),
                                    Interface(args.ifname, cont_veth.mac, sandbox=args.netns)])
        att = Attachment(args, conf, host, cont, cont_ns, br, host_veth, cont_veth, result, undo)
        if conf.ipam_type:
            ipam = invoke.delegate("ADD", conf.ipam_type, args)
            undo.callback(invoke.delegate_del_quietly, conf.ipam_type, args)
            _add_layer3(att, ipam)
        elif not conf.disable_container_interface:
            nl.set_up(cont, cont_veth.index)
        if not (conf.is_gateway and conf.ipam_type) or conf.vlan:
            # The result reports the bridge MAC and CHECK verifies it: pin it as the gateway path does (that runs
            # only with IPAM, and pins <bridge>.<vlan> instead when vlan is set), or it follows the lowest port MAC
            # and CHECK of earlier pods fails once a pod with a lower MAC joins.
            bridge_port.pin_mac(host, br.index)
        if not conf.disable_container_interface:
            from ..ifconfig import wait_oper_up

            wait_oper_up(host, host_veth)
        # The bridge's MAC may have changed since (a bridge someone else made follows its lowest port MAC); the
        # host veth's never does.
        result.interfaces[0].mac = nl.get_link(host, br.index).mac
        if not conf.dns.is_empty():
            result.dns = conf.dns
        undo.pop_all()
    return result


def _add_layer3(att: Attachment, ipam: Optional[Result]) -> None:
    """Merge the IPAM result into ``att.result``, configure the container side, put gateways on the bridge,
    masquerade."""
    from ..ifconfig import configure_iface

    conf, ifname, result = att.conf, att.args.ifname, att.result
    if ipam is None or not ipam.ips:
        # Go answers 999 here; the IPAM's config is what gives no address (e.g. a static IPAM without
        # addresses): code 7, naming the plugin whose section to fix.
        raise CNIError(ErrorCode.INVALID_CONFIG,
                       f"IPAM plugin {conf.ipam_type!r} returned no IP addresses for {ifname!r}",
                       "an attachment with IPAM needs at least one address: check the config's ipam section")
    result.ips, result.routes, result.dns = ipam.ips, ipam.routes, ipam.dns
    gateways = fill_gateways(conf, result)
    masquerade = _start_masquerade(att) if conf.ip_masq else None
    with att.cont_ns.entered():
        if conf.enable_dad:
            sysctl.write_best_effort(1, "ipv6", "conf", ifname, "enhanced_dad")
            sysctl.write_best_effort(1, "ipv6", "conf", ifname, "accept_dad")
        else:
            sysctl.write_best_effort(0, "ipv6", "conf", ifname, "accept_dad")
        sysctl.write_best_effort(1, "ipv4", "conf", ifname, "arp_notify")
        configure_iface(att.cont, att.cont_veth.index, ifname, result)
    if conf.is_gateway:
        gw_link, made = bridge_port.gateway_link(att.host, conf, att.bridge)
        if made:  # a failed ADD removes the <bridge>.<vlan> it made (runs before the veth and bridge steps)
            att.undo.callback(undo_quietly, bridge_port.remove_vlan_gateway_if_unused, att.host, conf, att.bridge.index,
                              att.host_veth.index)
        for gw in gateways:
            bridge_port.ensure_gateway_addr(att.host, gw_link, gw, conf.force_address)
        if any(gw.version == 4 for gw in gateways):
            sysctl.ensure(1, "ipv4", "ip_forward")
        if any(gw.version == 6 for gw in gateways):
            sysctl.ensure(1, "ipv6", "conf", "all", "forwarding")
    if masquerade is not None:
        masquerade.wait()


def _start_masquerade(att: Attachment) -> Task:
    """The container's addresses masqueraded while the container side is configured; a failed ADD waits for
    it, then removes the rules."""
    from .. import netfilter
    from ..veth import start_masquerade

    backend = netfilter.select_backend(att.conf.ip_masq_backend)
    return start_masquerade(att.args, att.undo, backend, att.conf.network, [ip.address for ip in att.result.ips])


def fill_gateways(conf: BridgeConf, result: Result) -> list[IPInterface]:
    """Fill in ``result`` (in place): every IP points at the container interface, missing gateways become
    network + 1 when isGateway, and isDefaultGateway adds one default route per family (unless IPAM gave one
    with a gateway). Returns the gateway addresses (with the IP's prefix) to put on the bridge.
    """
    from ..ifconfig import CONTAINER_INTERFACE

    gateways: list[IPInterface] = []
    default_done: set[int] = set()
    for ipc in result.ips:
        ipc.interface = CONTAINER_INTERFACE
        fam = ipc.address.version
        if ipc.gateway is None and conf.is_gateway:
            ipc.gateway = ipc.address.network.network_address + 1
        if conf.is_default_gateway and fam not in default_done:
            if not any(r.gw is not None and r.dst == _DEFAULT_NETS[fam] for r in result.routes):
                result.routes.append(Route(dst=_DEFAULT_NETS[fam], gw=ipc.gateway))
            default_done.add(fam)
        if conf.is_gateway and ipc.gateway is not None:
            gateways.append(ipaddress.ip_interface(f"{ipc.gateway}/{ipc.address.network.prefixlen}"))
    return gateways
