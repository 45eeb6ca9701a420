"""What every veth attachment shares once its pair exists: the bridge attachment (:mod:`cni_common.attach`, for
bridge and vxlan) and the routed one (:mod:`cni_common.routed`, for ptp).

The pair itself is made by :func:`cni_common.netlink.setup_veth`. Here: the masquerading an ADD starts beside its
kernel work (:func:`start_masquerade`); the DEL (:func:`release`): delete the container end (the host end, its
addresses and its routes go with it), release the IPAM lease, and remove the masquerade rules, best effort and
idempotent; the GC (:func:`gc`) of masquerading and IPAM. Beyond upstream: the rules are removed even when the
netns is gone (found by their names and comments), and from every source of the container's addresses: the
interface, the request's ``prevResult`` and what the IPAM holds (:func:`known_addresses`), so an address removed
or replaced on the interface before the DEL leaks no rule.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Optional

from . import config, invoke
from .errors import BestEffort, undo_quietly
from .log import get_logger

if TYPE_CHECKING:
    import contextlib

    from .netfilter import Backend
    from .parallel import Task
    from .skel import CmdArgs
    from .types import IPInterface

log = get_logger(__name__)


def start_masquerade(args: CmdArgs, undo: contextlib.ExitStack[Optional[bool]], backend: Backend, network: str,
                     addrs: list[IPInterface]) -> Task:
    """Masquerade ``addrs`` on a thread, while the ADD configures the container side (the rules need only the
    addresses; the restores mostly wait). ``undo`` (the ADD's rollback) gets the wait and the teardown."""
    from . import netfilter
    from .parallel import Task

    undo.callback(undo_quietly, netfilter.teardown_masquerade, network, args.container_id, args.ifname, addrs)
    task = Task(netfilter.setup_masquerade, backend, network, args.container_id, args.ifname, addrs)
    undo.callback(undo_quietly, task.wait)
    return task


def release(args: CmdArgs, steps: BestEffort, *, network: str, ipam_type: str, ip_masq: bool) -> None:
    """Release IPAM (delegated ``args`` as they are), delete ``CNI_IFNAME``'s veth, remove the masquerading;
    each step recorded in ``steps`` (the caller raises), so every one runs even when an earlier one failed.

    The masquerade teardown runs while the kernel deletes the veth (both mostly wait: for RCU grace periods,
    for ``ip(6)tables-restore``), as soon as the container's addresses are known.
    """
    from .parallel import Task

    masquerade: Optional[Task] = None
    recorded = known_addresses(args, ipam_type) if ip_masq else []  # before IPAM DEL drops its records

    def start_masquerade_teardown(addrs: list[IPInterface]) -> None:
        nonlocal masquerade
        if ip_masq and masquerade is None:
            from . import netfilter

            masquerade = Task(netfilter.teardown_masquerade, network, args.container_id, args.ifname,
                              union_of_addresses(addrs, recorded))

    if ipam_type:  # before the link goes: dhcp sends its DHCPRELEASE on it (upstream's order bug, #791)
        with steps:
            invoke.delegate("DEL", ipam_type, args)
    with steps:
        # Without masquerading, the link's addresses are not needed: no dump and decode of them.
        delete_container_link(args, before_delete=start_masquerade_teardown if ip_masq else None)
    start_masquerade_teardown([])  # no link (or no netns): the rules are found by their names and comments
    if masquerade is not None:
        with steps:
            masquerade.wait()


def gc(args: CmdArgs, *, network: str, ipam_type: str, what: str) -> None:
    """Remove the masquerading of attachments not in ``cni.dev/valid-attachments``, then forward GC to IPAM."""
    steps = BestEffort()
    valid = config.valid_attachments(args.conf)
    if valid is not None:
        from . import netfilter

        with steps:
            netfilter.gc_masquerade(network, valid)
    if ipam_type:
        with steps:
            invoke.delegate("GC", ipam_type, args)
    steps.raise_if_failed(f"{what} GC failed")


def delete_container_link(args: CmdArgs,
                          before_delete: Optional[Callable[[list[IPInterface]], None]] = None) -> None:
    """Delete ``CNI_IFNAME`` in the netns (a veth's host end goes with it); a missing netns or link is fine.
    ``before_delete`` first gets the link's global unicast addresses (the masquerade rules match them) and is
    called from the host's namespace. Also the link plugins' DEL (:mod:`cni_common.links.attach`)."""
    from . import netlink as nl
    from .netns import NetNS

    ns = NetNS.if_present(args.netns)
    if ns is None:
        return
    with ns, nl.open_conn(ns) as cont:
        if before_delete is None:  # deleted by name: no look-up first (a missing link is answered ENODEV, fine)
            nl.delete_link(cont, args.ifname)
            return
        link = nl.find_link(cont, args.ifname)
        if link is None:
            return
        before_delete([a.address for a in nl.list_addrs(cont, link.index) if a.is_global_unicast])
        nl.delete_link(cont, link.index)


def known_addresses(args: CmdArgs, ipam_type: str) -> list[IPInterface]:
    """The attachment's addresses as recorded elsewhere than on its interface: ``prevResult`` (the runtime's
    cache of the ADD result; its IPs of this interface, or of none) or, without one (no cache entry), what the
    IPAM says it holds for (container, ifname) (:func:`.invoke.held_addresses`; with a host prefix: only the
    address matters to the rules). Either may be missing or unknown: then it adds nothing, a DEL never fails on
    it. The common DEL (libcni sends the cached result) asks the IPAM nothing."""
    import ipaddress

    from . import invoke
    from .types import prev_result_addresses

    found = prev_result_addresses(args.conf, args.cni_version, args.ifname)
    if not found and ipam_type:
        found = [ipaddress.ip_interface(f"{ip}/{ip.max_prefixlen}") for ip in invoke.held_addresses(ipam_type, args)]
    return found


def union_of_addresses(*sources: list[IPInterface]) -> list[IPInterface]:
    """Every address once, the first source's form (with its real prefix) winning."""
    seen: dict[object, IPInterface] = {}
    for source in sources:
        for addr in source:
            seen.setdefault(addr.ip, addr)
    return list(seen.values())
