"""The verbs of a plugin whose whole attachment is one link in the container (macvlan, ipvlan, vlan, dummy, tap).

A plugin says what its link is (a :class:`LinkPlan`) and how to make it (a ``make`` function that calls
:mod:`.place`); this module does the rest the same way for all of them, in upstream's order: the link, IPAM,
``arp_notify``/``ndisc_notify``, the addresses and routes, the result ``{interfaces: [link], ips at index 0}``.
Beyond upstream: a failed ADD always removes its link and releases its IPAM lease (upstream's ipvlan, vlan and
the result conversion leave the link behind); DEL never needs the master (a master gone first does not block
the pod's teardown) and always releases IPAM, even when the netns is gone; GC is passed to IPAM; STATUS answers
50 when a named master is missing.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Callable, Optional

from .. import invoke, sysctl
from ..errors import BestEffort, CNIError, ErrorCode, check_failed
from ..record import field, record
from ..types import DNS, Interface, Result

if TYPE_CHECKING:
    from ..netlink import Conn, Link
    from ..skel import CmdArgs

#: The container link's index in the result: it is the only interface listed.
LINK_INDEX = 0

#: (host, container, undo) -> the container's link, renamed to CNI_IFNAME and down.
Make = Callable[["Conn", "Conn", "contextlib.ExitStack[Any]"], "Link"]
#: CHECK of the kind's own settings: (host, container, link, its IFLA_INFO_DATA by name); raises CHECK_FAILED.
Verify = Callable[["Conn", "Conn", "Link", "dict[str, Any]"], None]


@record
class LinkPlan:
    """What the shared verbs need to know of a plugin's link."""

    #: the rtnl kind ("macvlan", "ipvlan", "vlan", "dummy"; "tun" for tap), also CHECK's type test; "": any kind
    #: (host-device lends whatever device the node has)
    kind: str
    ipam_type: str = ""
    dns: DNS = field(default_factory=DNS)  # the config's dns: the result's, unless dns_from_ipam
    dns_from_ipam: bool = False  # dummy reports the IPAM result's dns, as upstream's does
    ndisc_notify: bool = True  # with arp_notify before the addresses (tap: arp_notify only; vlan: neither)
    arp_notify: bool = True
    wait_dad: bool = True  # tap: no carrier until its hypervisor opens it, so DAD cannot finish during the ADD
    master: str = ""  # the configured master, for STATUS ("" when none or defaulted)
    link_in_container: bool = False


def add(args: CmdArgs, plan: LinkPlan, make: Make, given: Optional[Result] = None) -> Result:
    """ADD: make the link, get addresses (IPAM, or ``given``: ipvlan's chained prevResult), configure them; any
    failure undoes everything made so far."""
    from .. import netlink as nl
    from ..netns import NetNS

    if plan.ipam_type:
        invoke.find_in_path(plan.ipam_type, args.path)  # a missing IPAM binary fails before the node changes
    with NetNS(args.netns) as cont_ns, nl.open_conn() as host, nl.open_conn(cont_ns) as cont, \
            contextlib.ExitStack() as undo:
        link = make(host, cont, undo)
        layer3 = given
        if plan.ipam_type:
            layer3 = invoke.delegate("ADD", plan.ipam_type, args)
            undo.callback(invoke.delegate_del_quietly, plan.ipam_type, args)
            if layer3 is None or not layer3.ips:
                raise CNIError(ErrorCode.INTERNAL, "IPAM plugin returned missing IP config")
        result = Result(interfaces=[Interface(args.ifname, link.mac, sandbox=args.netns)])
        if layer3 is not None:
            result.ips, result.routes, result.dns = layer3.ips, layer3.routes, layer3.dns
            for ip in result.ips:
                ip.interface = LINK_INDEX
            from ..ifconfig import configure_iface

            with cont_ns.entered():
                if plan.arp_notify:
                    sysctl.write_best_effort(1, "ipv4", "conf", args.ifname, "arp_notify")
                if plan.ndisc_notify:
                    sysctl.write_best_effort(1, "ipv6", "conf", args.ifname, "ndisc_notify")
                configure_iface(cont, link.index, args.ifname, result, interface=LINK_INDEX, wait_dad=plan.wait_dad)
        else:
            nl.set_up(cont, link.index)
        result.interfaces[0].mac = nl.get_link(cont, link.index).mac  # passthru and tap may change it
        if not plan.dns_from_ipam:
            result.dns = plan.dns
        undo.pop_all()
    return result


def delete(args: CmdArgs, plan: LinkPlan) -> None:
    """DEL, best effort and idempotent: IPAM DEL first (dhcp releases on the live link), then the link; a gone
    or empty netns or a gone link is success. Each step runs even when the other failed."""
    steps = BestEffort()
    if plan.ipam_type:
        with steps:
            invoke.delegate("DEL", plan.ipam_type, args)
    with steps:
        from ..veth import delete_container_link

        delete_container_link(args)
    steps.raise_if_failed(f"{plan.kind} DEL failed")


def check(args: CmdArgs, plan: LinkPlan, verify: Optional[Verify] = None) -> None:
    """CHECK: IPAM's CHECK, then the prevResult's interface in this netns, its kind, the kind's settings
    (``verify``), its MAC, its addresses and routes."""
    from .. import netlink as nl
    from ..attach.check import prev_result
    from ..ifconfig import check_layer3
    from ..netns import NetNS

    if plan.ipam_type:
        invoke.delegate("CHECK", plan.ipam_type, args)
    prev = prev_result(args)
    index = next((i for i, itf in enumerate(prev.interfaces) if itf.name == args.ifname), None)
    if index is None:
        raise CNIError(ErrorCode.INVALID_CONFIG, f"prevResult has no interface {args.ifname!r}")
    recorded = prev.interfaces[index]
    if recorded.sandbox != args.netns:
        raise check_failed(f"sandbox in prevResult {recorded.sandbox} doesn't match configured netns: {args.netns}")
    with NetNS(args.netns) as cont_ns, nl.open_conn() as host, nl.open_conn(cont_ns) as cont:
        try:
            link, data = nl.get_link_data(cont, args.ifname)
        except nl.LinkNotFound as exc:
            raise check_failed(f"container interface {args.ifname!r} not found") from exc
        if plan.kind and link.kind != plan.kind:  # host-device lends a device of any kind
            raise check_failed(f"container interface {args.ifname} not of type {plan.kind}")
        if verify is not None:
            verify(host, cont, link, data)
        if recorded.mac and recorded.mac.lower() != link.mac:
            raise check_failed(f"interface {args.ifname} MAC {link.mac} does not match expected {recorded.mac}")
        check_layer3(cont, link.index, args.ifname, index, prev)


def status(args: CmdArgs, plan: LinkPlan) -> None:
    """STATUS: 50 when the named master is missing from the node (new pods would fail), then IPAM's."""
    if plan.master and not plan.link_in_container:
        from .. import netlink as nl

        with nl.open_conn() as host:
            if nl.find_link(host, plan.master) is None:
                raise CNIError(ErrorCode.NOT_AVAILABLE, f'master "{plan.master}" not found')
    if plan.ipam_type:
        invoke.delegate("STATUS", plan.ipam_type, args)


def gc(args: CmdArgs, plan: LinkPlan) -> None:
    """GC: IPAM's (the spec asks plugins to pass it on; upstream's five do not, so their leases leak)."""
    if plan.ipam_type:
        invoke.delegate("GC", plan.ipam_type, args)
