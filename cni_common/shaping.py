"""Traffic shaping of a veth attachment, as upstream's bandwidth plugin does it (and undone completely).

"Ingress" is traffic *to* the container: it leaves the host through the host-side veth, so a root ``tbf``
(``1:``) there shapes it. "Egress" is traffic *from* the container: it arrives on the host-side veth, where a
qdisc cannot delay it; so an ``ingress`` qdisc (``ffff:``) there carries a u32 match-all filter whose mirred
action redirects every packet to an ``ifb`` device, and a root ``tbf`` on the ifb shapes it on the way out::

    container eth0 ==veth== host veth --(tbf 1:)--> to the container          (ingress limit)
                               |
                               +-(ingress ffff: -> u32 -> mirred redirect)--> ifb bwp<hash> --(tbf 1:)--> host
                                                                                               (egress limit)

Names and numbers are upstream's, so a node can switch plugins with pods running: the ifb is ``bwp`` + 12 hex
of sha512(network name + container ID); handles ``1:`` and ``ffff:``, filter priority 1, flowid ``1:1``; the
token bucket's limit and buffer computed by upstream's formulas (:func:`tbf_for`).

Beyond upstream: a repeated ADD replaces what is there instead of failing with "file exists"; a failed ADD
undoes what it made; teardown also removes the host-side qdiscs and filter; an ifb is marked (its alias) with
its network and container, so GC can find the stale ones of a network.
"""

from __future__ import annotations

import contextlib
import hashlib

from .errors import CNIError, ErrorCode, PluginCode, check_failed, undo_quietly
from .log import get_logger
from .record import record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~4 ms per plugin process)
if TYPE_CHECKING:
    from .netlink import Conn, Link
    from .netlink.tc import Tbf
    from .types import Interface

log = get_logger(__name__)

IFB_PREFIX = "bwp"
#: Upstream's fixed queueing latency, from which a token bucket's limit is computed.
LATENCY_MS = 25
TIME_UNITS_PER_SEC = 1_000_000
PSCHED = "/proc/net/psched"
#: Alias written on the ifb devices this suite makes: ``cni-bandwidth <network> <container ID>``.
ALIAS_PREFIX = "cni-bandwidth "


@record(frozen=True)
class Limit:
    """One direction's limit: ``rate`` in bits/s, ``burst`` in bits (upstream's units)."""

    rate: int
    burst: int


def ifb_name(network: str, container_id: str) -> str:
    """Upstream's ifb name: ``bwp`` + the first 12 hex digits of sha512(network + container ID)."""
    return IFB_PREFIX + hashlib.sha512((network + container_id).encode()).hexdigest()[:12]


def ifb_alias(network: str, container_id: str) -> str:
    return f"{ALIAS_PREFIX}{network} {container_id}"


def tick_in_usec(psched: str | None = None) -> float:
    """Kernel scheduler ticks per microsecond, from ``/proc/net/psched`` as iproute2 and Go's netlink read it
    (when the clock resolution is 1 GHz the first two numbers are taken as equal)."""
    if psched is None:
        with open(PSCHED, encoding="ascii") as f:
            psched = f.read()
    t2us, us2t, clock_res = (int(v, 16) for v in psched.split()[:3])
    if clock_res == 1_000_000_000:
        t2us = us2t
    return t2us / us2t * (clock_res / TIME_UNITS_PER_SEC)


def _go_uint32(value: float) -> int:
    """Go's ``uint32(float64)`` on amd64: truncate towards zero through int64, keep the low 32 bits."""
    if value != value or value in (float("inf"), float("-inf")):
        return 0
    return int(value) & 0xFFFFFFFF


def tbf_for(limit: Limit, ticks_per_usec: float) -> Tbf:
    """The kernel's tbf settings for a limit, by upstream's formulas (same numbers, so its CHECK passes on our
    qdiscs and ours on its): rate in bytes/s; buffer = burst's time at that rate, in ticks; limit = 25 ms of
    traffic at that rate plus the burst, in bytes."""
    from .netlink.tc import Tbf

    rate_bytes, burst_bytes = limit.rate // 8, limit.burst // 8
    burst32 = burst_bytes & 0xFFFFFFFF
    usec = _go_uint32(burst32 * TIME_UNITS_PER_SEC / rate_bytes)
    buffer = _go_uint32(usec * ticks_per_usec)
    latency_usec = TIME_UNITS_PER_SEC * (LATENCY_MS / 1000.0)
    limit_bytes = (_go_uint32(rate_bytes * latency_usec / TIME_UNITS_PER_SEC) + burst32) & 0xFFFFFFFF
    return Tbf(rate=rate_bytes, limit=limit_bytes, buffer=buffer)


def host_veth(host: Conn, cont: Conn, ifname: str, interfaces: list[Interface]) -> Link:
    """The host end of the container's veth ``ifname``, which the previous result must list (with no sandbox).

    Found by the peer index the container end reports, so a wrong interface in the result cannot make us shape
    some other host link.
    """
    from . import netlink

    try:
        cont_link = netlink.get_link(cont, ifname)
    except netlink.LinkNotFound as exc:
        raise CNIError(PluginCode.LINK_FAILURE, f"container interface {ifname!r} not found") from exc
    if cont_link.kind != "veth":
        raise CNIError(PluginCode.LINK_FAILURE, f"container interface {ifname} has no veth peer: "
                                                f"it is a {cont_link.kind or 'device'} link")
    peer = veth_peer(host, cont_link)
    if peer is None or not any(i.name == peer.name and not i.sandbox for i in interfaces):
        raise CNIError(ErrorCode.INVALID_CONFIG, "no veth peer of container interface found in host ns "
                                                 f"(the host end of {ifname!r} is not in prevResult.interfaces)")
    return peer


def veth_peer(host: Conn, cont_link: Link) -> Link | None:
    """The other end of the container's veth ``cont_link`` among the host's links: the veth at the index it
    names whose own peer index names it back (an index alone could be some other link of the host)."""
    from .netlink import find_link

    if cont_link.kind != "veth":
        return None
    peer = find_link(host, cont_link.peer_index)
    return peer if peer is not None and peer.kind == "veth" and peer.peer_index == cont_link.index else None


def shape(host: Conn, veth: Link, ifb: str, alias: str, ingress: Limit | None, egress: Limit | None) -> Link | None:
    """Shape ``veth``'s traffic; returns the ifb when there is an egress limit. What is there already (a
    previous ADD's) is replaced or reused, so a repeated ADD converges. On a failure, the tbf and ingress qdisc
    this call put on the veth and an ifb it created are removed again."""
    from .netlink import ensure_ifb, set_alias, tc

    ticks = tick_in_usec()
    with contextlib.ExitStack() as undo:
        if ingress is not None:
            undo.callback(undo_quietly, _delete_own_root_tbf, host, veth.index)
            tc.replace_tbf(host, veth.index, tbf_for(ingress, ticks))
        if egress is None:
            undo.pop_all()
            return None
        link, created = ensure_ifb(host, ifb, mtu=veth.mtu)
        if created:
            undo.callback(undo_quietly, _delete_link, host, link.index)
        set_alias(host, link.index, alias)
        hook = _ingress_hook(host, veth.index, undo)
        tc.replace_redirect_filter(host, veth.index, link.index, parent=hook)
        tc.replace_tbf(host, link.index, tbf_for(egress, ticks))
        undo.pop_all()
        return link


def _ingress_hook(host: Conn, index: int, undo: contextlib.ExitStack) -> int:
    """The parent for filters on the link's ingress hook: ``ffff:`` of the ingress qdisc we add, or the
    ingress side of a ``clsact`` that is already there (eBPF agents install one; upstream fails then,
    containernetworking/plugins#894)."""
    from .netlink import tc
    from .netlink.consts import TC_H_INGRESS, TC_H_MIN_INGRESS

    if tc.add_ingress_qdisc(host, index):
        undo.callback(undo_quietly, tc.delete_qdisc, host, index, TC_H_INGRESS)
        return tc.handle(0xFFFF)
    existing = next((q for q in tc.list_qdiscs(host, index) if q.parent == TC_H_INGRESS), None)
    if existing is not None and existing.kind == "clsact":
        return tc.handle(0xFFFF, TC_H_MIN_INGRESS)
    return tc.handle(0xFFFF)


def unshape(host: Conn, veth_index: int | None, ifb: str) -> None:
    """Remove the ifb and, when the host veth still exists, its tbf root and our redirect filter, with the
    ingress qdisc when nothing else hangs there (a clsact, or other filters, are someone else's). Everything
    may already be gone."""
    from .netlink import delete_link, tc
    from .netlink.consts import TC_H_INGRESS, TC_H_MIN_INGRESS

    delete_link(host, ifb)
    if veth_index is None:
        return
    _delete_own_root_tbf(host, veth_index)
    hook = next((q for q in tc.list_qdiscs(host, veth_index) if q.parent == TC_H_INGRESS), None)
    if hook is None or hook.kind not in ("ingress", "clsact"):
        return
    parent = tc.handle(0xFFFF) if hook.kind == "ingress" else tc.handle(0xFFFF, TC_H_MIN_INGRESS)
    others = [f for f in tc.list_filters(host, veth_index, parent) if not (f.kind == "u32" and f.prio == 1)]
    if hook.kind == "ingress" and not others:
        tc.delete_qdisc(host, veth_index, TC_H_INGRESS)
    else:  # a clsact, or filters of someone else: only ours goes
        tc.delete_redirect_filter(host, veth_index, parent=parent)


def _delete_own_root_tbf(host: Conn, index: int) -> None:
    """Delete the link's root qdisc if it is the ``tbf 1:`` shaping puts there (never someone else's)."""
    from .netlink import tc
    from .netlink.consts import TC_H_ROOT

    root = next((q for q in tc.list_qdiscs(host, index) if q.parent == TC_H_ROOT), None)
    if root is not None and root.kind == "tbf" and root.handle == tc.handle(1):
        tc.delete_qdisc(host, index, TC_H_ROOT)


def _delete_link(host: Conn, index: int) -> None:
    from .netlink import delete_link

    delete_link(host, index)


def check(host: Conn, veth: Link, ifb: str, ingress: Limit | None, egress: Limit | None) -> None:
    """Every configured limit is in place with the settings it would be given now (upstream's CHECK, which
    compares rate, limit and buffer), and the egress redirect filter points at the ifb."""
    from .netlink import find_link, tc
    from .netlink.consts import TC_H_INGRESS, TC_H_MIN_INGRESS

    ticks = tick_in_usec()
    if ingress is not None:
        _check_tbf(host, veth.index, veth.name, tbf_for(ingress, ticks))
    if egress is None:
        return
    link = find_link(host, ifb)
    if link is None:
        raise check_failed(f"get ifb device: link {ifb!r} not found")
    _check_tbf(host, link.index, ifb, tbf_for(egress, ticks))
    hooks = [q for q in tc.list_qdiscs(host, veth.index) if q.parent == TC_H_INGRESS]
    parents = [tc.handle(0xFFFF) if q.kind == "ingress" else tc.handle(0xFFFF, TC_H_MIN_INGRESS) for q in hooks]
    if not any(f.redirect == link.index for p in parents for f in tc.list_filters(host, veth.index, p)):
        raise check_failed(f"no filter on {veth.name!r} redirects its traffic to {ifb!r}")


def _check_tbf(host: Conn, index: int, name: str, want: Tbf) -> None:
    from .netlink import tc
    from .netlink.consts import TC_H_ROOT

    root = next((q for q in tc.list_qdiscs(host, index) if q.parent == TC_H_ROOT), None)
    if root is None or root.tbf is None:
        raise check_failed(f"Failed to find qdisc: no tbf at the root of {name!r}")
    for what, have, expected in (("Rate", root.tbf.rate, want.rate), ("Limit", root.tbf.limit, want.limit),
                                 ("Buffer", root.tbf.buffer, want.buffer)):
        if have != expected:
            raise check_failed(f"{what} doesn't match on {name!r}: {have} != {expected}")


def stale_ifbs(host: Conn, network: str, keep: set[str]) -> list[str]:
    """This suite's ifb devices of ``network`` whose container ID is not in ``keep`` (GC). Devices without
    our alias (made by upstream's plugin, which marks nothing) are never touched: their network is unknown."""
    from .netlink import list_links

    prefix = f"{ALIAS_PREFIX}{network} "
    return [link.name for link in list_links(host)
            if link.kind == "ifb" and link.name.startswith(IFB_PREFIX) and link.alias.startswith(prefix)
            and link.alias[len(prefix):] not in keep]
