"""ADD of a routed attachment: IPAM, forwarding, a veth pair whose host end holds the gateway, host routes to the
container, routes via the gateway in the container, masquerade; as one undo stack.

The kernel objects are upstream ptp's, so either suite can delete what the other made: in the container, the
subnet's prefix route is replaced by ``<gw>/32 dev eth0 scope link src <ip>`` and ``<subnet> via <gw> src <ip>``
(/128 for IPv6); on the node, ``<gw>/32`` on the host end and ``<ip>/32 dev <host end> scope host``.
Beyond upstream: the netfilter backend is checked, and every address must have a gateway, before anything is
made; a failed ADD also removes the veth and the rules (upstream leaves the veth and a route); IPv6 skips DAD on
both ends of the pair, which can hold no duplicate (upstream's ADD waits ~2 s for the container's, and its host
end's gateway stays "tentative" for a second or two after the ADD answered).
"""

from __future__ import annotations

import contextlib
import ipaddress
from typing import TYPE_CHECKING

from .. import invoke, sysctl
from ..errors import CNIError, ErrorCode, undo_quietly
from ..types import Interface, Result

if TYPE_CHECKING:
    from ..netlink import Conn, Link
    from ..netns import NetNS
    from ..skel import CmdArgs
    from ..types import IPConfig
    from .conf import RoutedConf

#: The container interface's index in the result (the host end is 0).
CONTAINER_INTERFACE = 1


def attach(args: CmdArgs, conf: RoutedConf) -> Result:
    """Create the attachment; on any failure everything made so far is undone (veth, IPAM lease, rules).
    IPAM (``conf.ipam_type``) is delegated ``args`` as they are: their stdin is its request."""
    from .. import netlink as nl
    from ..ifconfig import wait_oper_up
    from ..netns import NetNS

    backend = None
    if conf.ip_masq:
        from .. import netfilter

        backend = netfilter.select_backend(conf.ip_masq_backend)  # a bad name is refused before any change
    with NetNS(args.netns) as cont_ns, nl.open_conn() as host, nl.open_conn(cont_ns) as cont, \
            contextlib.ExitStack() as undo:
        ipam = invoke.delegate("ADD", conf.ipam_type, args)
        undo.callback(invoke.delegate_del_quietly, conf.ipam_type, args)
        ipam = _checked(ipam)
        ips = ipam.ips
        _enable_forwarding({ip.address.version for ip in ips})
        host_veth, cont_veth = nl.setup_veth(host, cont, args.ifname, mtu=conf.mtu)
        undo.callback(undo_quietly, nl.delete_link, cont, args.ifname)  # the host end goes with it
        sysctl.write_best_effort(0, "ipv6", "conf", host_veth.name, "accept_ra")
        # Before the container end comes up (the host end's carrier, hence its link-local address, waits for it):
        # while that address is tentative the node sends no neighbour solicitation on the link at all, and IPv6
        # to the container fails for a second or two after the ADD.
        sysctl.write_best_effort(0, "ipv6", "conf", host_veth.name, "accept_dad")
        for ip in ips:
            ip.interface = CONTAINER_INTERFACE
        result = Result(interfaces=[Interface(host_veth.name, host_veth.mac),
                                    Interface(args.ifname, cont_veth.mac, sandbox=args.netns)],
                        ips=ips, routes=ipam.routes, dns=ipam.dns)
        masquerade = None
        if backend is not None:
            from ..veth import start_masquerade

            masquerade = start_masquerade(args, undo, backend, conf.network, [ip.address for ip in ips])
        _configure_container(cont_ns, cont, cont_veth, args.ifname, result)
        _configure_host_end(host, host_veth, ips)
        wait_oper_up(host, host_veth, "host end of the veth pair")  # the first packets would be lost before
        if masquerade is not None:
            masquerade.wait()
        if not conf.dns.is_empty():
            result.dns = conf.dns
        undo.pop_all()
    return result


def _checked(ipam: Result | None) -> Result:
    """IPAM's result, with addresses; each needs a gateway (the host end holds it). Upstream finds a missing
    one only in the kernel ("numerical result out of range"), after it made the veth."""
    if ipam is None or not ipam.ips:  # static with no address, say: the config's doing, not ours
        raise CNIError(ErrorCode.INVALID_CONFIG, "IPAM plugin returned missing IP config")
    missing = [str(ip.address) for ip in ipam.ips if ip.gateway is None]
    if missing:
        raise CNIError(ErrorCode.INVALID_CONFIG, f"ptp needs a gateway for every address: IPAM gave none for "
                       f"{', '.join(missing)}", "the host end of the veth holds the gateway address")
    return ipam


def _enable_forwarding(families: set[int]) -> None:
    """The node routes the container's traffic: forwarding on for each family it has (written only if off)."""
    if 4 in families:
        sysctl.ensure(1, "ipv4", "ip_forward")
    if 6 in families:
        sysctl.ensure(1, "ipv6", "conf", "all", "forwarding")


def _configure_container(cont_ns: NetNS, cont: Conn, link: Link, ifname: str, result: Result) -> None:
    """Addresses, link up and the result's routes (upstream's ConfigureIface), then, per address, the subnet
    reached through the gateway instead of on link: a point-to-point link has no neighbours but the node."""
    from .. import netlink as nl
    from ..ifconfig import configure_iface

    with cont_ns.entered():
        # No DAD in the container: the link has two ends, both addressed here, so it can find no duplicate, and
        # upstream's ADD waits ~2 s for it on every IPv6 pod.
        sysctl.write_best_effort(0, "ipv6", "conf", ifname, "accept_dad")
        configure_iface(cont, link.index, ifname, result, interface=CONTAINER_INTERFACE)
    for ip in result.ips:
        subnet, gw = ip.address.network, ip.gateway
        assert gw is not None  # _checked
        nl.del_route(cont, nl.Route(dst=subnet, oif=link.index))  # the kernel's prefix route (none for a /32)
        gw_host = ipaddress.ip_network(f"{gw}/{gw.max_prefixlen}")
        nl.add_route_excl(cont, nl.Route(dst=gw_host, oif=link.index, scope=nl.RT_SCOPE_LINK, prefsrc=ip.address.ip),
                          exist_ok=True)  # two addresses of a family may share the gateway
        nl.add_route_excl(cont, nl.Route(dst=subnet, gateway=gw, oif=link.index, prefsrc=ip.address.ip),
                          exist_ok=True)


def _configure_host_end(host: Conn, link: Link, ips: list[IPConfig]) -> None:
    """The gateway on the host end (every ptp host end holds the same one) and a host route to each container
    address. No DAD for the IPv6 gateway: the container's first packets would otherwise find it tentative."""
    from .. import netlink as nl

    for ip in ips:
        gw = ip.gateway
        assert gw is not None  # _checked
        nl.add_addr(host, link.index, ipaddress.ip_interface(f"{gw}/{gw.max_prefixlen}"), exist_ok=True,
                    nodad=gw.version == 6)
        dst = ipaddress.ip_network(f"{ip.address.ip}/{ip.address.max_prefixlen}")
        nl.add_route_excl(host, nl.Route(dst=dst, oif=link.index, scope=nl.RT_SCOPE_HOST), exist_ok=True)
