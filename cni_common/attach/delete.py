"""DEL of a bridge attachment: best effort and idempotent.

Every step runs even when an earlier one failed (the IPAM lease is always released), and the first failure is
reported at the end. A gone or empty netns only skips the veth; the rules are still removed (found by their
names and comments, so the container's addresses are not needed). Beyond upstream: masquerading is removed
even when the netns is gone, and its rules are found from every source of the container's addresses: the
interface, the request's ``prevResult`` and host-local's records (:func:`known_addresses`), so an address
removed or replaced on the interface before the DEL leaks no rule.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Callable, Optional

from .. import invoke
from ..errors import BestEffort
from ..log import get_logger

if TYPE_CHECKING:
    from ..parallel import Task
    from ..skel import CmdArgs
    from ..types import IPInterface
    from .conf import BridgeConf

log = get_logger(__name__)


def detach(args: CmdArgs, conf: BridgeConf) -> None:
    """Undo :func:`cni_common.attach.add.attach` for ``args``; IPAM is delegated ``args`` as they are.

    The masquerade teardown runs while the kernel deletes the veth (both mostly wait: for RCU grace periods,
    for ``ip(6)tables-restore``), as soon as the container's addresses are known.
    """
    from ..parallel import Task

    steps = BestEffort()
    masquerade: Optional[Task] = None
    recorded = known_addresses(args, conf) if conf.ip_masq else []  # before IPAM DEL drops its records

    def start_masquerade_teardown(addrs: list[IPInterface]) -> None:
        nonlocal masquerade
        if conf.ip_masq and masquerade is None:
            from .. import netfilter

            masquerade = Task(netfilter.teardown_masquerade, conf.network, args.container_id, args.ifname,
                              union_of_addresses(addrs, recorded))

    if conf.ipam_type:  # before the link goes: dhcp sends its DHCPRELEASE on it (upstream's order bug, #791)
        with steps:
            invoke.delegate("DEL", conf.ipam_type, args)
    with steps:
        delete_container_link(args, before_delete=start_masquerade_teardown)
    start_masquerade_teardown([])  # no link (or no netns): the rules are found by their names and comments
    if conf.macspoofchk:
        from .. import netfilter

        with steps:
            netfilter.teardown_macspoofchk(args.container_id, args.ifname)
    if masquerade is not None:
        with steps:
            masquerade.wait()
    steps.raise_if_failed("bridge DEL failed")


def delete_container_link(args: CmdArgs, before_delete: Callable[[list[IPInterface]], None]) -> None:
    """Delete ``CNI_IFNAME`` in the netns (its host end goes with it); a missing netns or link is fine.
    ``before_delete`` first gets the link's global unicast addresses (the masquerade rules match them) and is
    called from the host's namespace."""
    if not args.netns:
        return
    from .. import netlink as nl
    from ..netns import NetNS, NetNSGone

    try:
        ns = NetNS(args.netns)
    except NetNSGone:
        return
    with ns, nl.open_conn(ns) as cont:
        link = nl.find_link(cont, args.ifname)
        if link is None:
            return
        before_delete([a.address for a in nl.list_addrs(cont, link.index) if a.is_global_unicast])
        nl.delete_link(cont, link.index)


def known_addresses(args: CmdArgs, conf: BridgeConf) -> list[IPInterface]:
    """The attachment's addresses as recorded elsewhere than on its interface: ``prevResult`` (the runtime's
    cache of the ADD result; its IPs of this interface, or of none) or, without one (no cache entry), for
    host-local its reservations of (container, ifname), read from its data dir under its lock (with a host
    prefix: only the address matters to the rules). Either may be missing or unreadable: then it adds nothing,
    a DEL never fails on it. The common DEL (libcni sends the cached result) reads no extra file."""
    from ..types import prev_result_addresses

    found = prev_result_addresses(args.conf, args.cni_version, args.ifname)
    if not found and conf.ipam_type == "host-local":
        found = _host_local_records(args, conf)
    return found


def _host_local_records(args: CmdArgs, conf: BridgeConf) -> list[IPInterface]:
    import ipaddress

    from ..alloc import config as alloc_config
    from ..alloc.disk import DiskStore
    from ..errors import CNIError

    try:
        store = DiskStore(alloc_config.data_dir(args.conf), conf.network)
        if not os.path.isdir(store.dir):
            return []
        with store.lock():
            held = store.find_by_id(args.container_id, args.ifname)
    except CNIError as exc:
        log.debug("host-local records unreadable: %s", exc)
        return []
    return [ipaddress.ip_interface(f"{ip}/{ip.max_prefixlen}") for ip in held]


def union_of_addresses(*sources: list[IPInterface]) -> list[IPInterface]:
    """Every address once, the first source's form (with its real prefix) winning."""
    seen: dict[object, IPInterface] = {}
    for source in sources:
        for addr in source:
            seen.setdefault(addr.ip, addr)
    return list(seen.values())
