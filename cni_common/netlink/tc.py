"""Traffic control: qdiscs and filters of a link (what ``tc qdisc`` and ``tc filter`` do), for shaping.

Handles are the kernel's 32-bit ``major:minor`` numbers: ``1:`` is ``0x10000``, ``ffff:`` is ``0xffff0000``
(:func:`handle`). Messages are :mod:`.tcmsg`'s, loaded on first use; nothing here is imported by a call that
does not shape traffic.
"""

from __future__ import annotations

import errno
import socket

from ..record import record
from . import msg
from .conn import Conn, request_unless
from .consts import (
    ETH_P_ALL,
    NLM_F_CREATE,
    NLM_F_EXCL,
    NLM_F_REPLACE,
    RTM_DELQDISC,
    RTM_DELTFILTER,
    RTM_GETQDISC,
    RTM_GETTFILTER,
    RTM_NEWQDISC,
    RTM_NEWTFILTER,
    TC_ACT_STOLEN,
    TC_H_INGRESS,
    TC_H_ROOT,
    TC_U32_TERMINAL,
    TCA_EGRESS_REDIR,
)

#: The first handle of a u32 filter's default hash table (``800::800``): what the kernel gives the first
#: filter of a priority when none is asked for, so naming it keeps the upstream object and makes a repeated
#: ADD replace it instead of adding a second one.
U32_FIRST_HANDLE = 0x80000800


def handle(major: int, minor: int = 0) -> int:
    """``major:minor`` as the kernel's 32-bit handle."""
    return (major << 16) | minor


@record(frozen=True)
class Tbf:
    """A token bucket's settings as the kernel holds them: rate in bytes/s, limit in bytes, buffer in ticks."""

    rate: int
    limit: int
    buffer: int


@record(frozen=True)
class Qdisc:
    """One qdisc of a link; ``tbf`` is set for kind "tbf"."""

    index: int
    kind: str
    handle: int
    parent: int
    tbf: Tbf | None = None


@record(frozen=True)
class Filter:
    """One filter of a link; ``redirect`` is the ifindex its first mirred action sends packets to (0: none)."""

    kind: str
    parent: int
    prio: int
    protocol: int
    handle: int
    classid: int
    redirect: int


def _body(index: int, nlas: list[tuple] | tuple = (), *, parent: int = 0, handle_: int = 0, info: int = 0) -> bytes:
    return msg.build("tcmsg", nlas, family=socket.AF_UNSPEC, index=index, parent=parent, handle=handle_, info=info)


def list_qdiscs(conn: Conn, index: int) -> list[Qdisc]:
    """The qdiscs of link ``index`` (a dump of every link's, filtered)."""
    out = []
    for mtype, payload in conn.dump(RTM_GETQDISC, _body(0), f"failed to list qdiscs of link {index}"):
        m = msg.parse("tcmsg", mtype, payload)
        if m["index"] != index:
            continue
        kind = m.get_attr("TCA_KIND") or ""
        tbf = None
        if kind == "tbf":
            opts = m.get_attr("TCA_OPTIONS")
            parms = opts.get_attr("TCA_TBF_PARMS") if opts is not None else None
            if parms is not None:
                rate = opts.get_attr("TCA_TBF_RATE64") or parms["rate"]
                tbf = Tbf(rate=rate, limit=parms["limit"], buffer=parms["buffer"])
        out.append(Qdisc(index=index, kind=kind, handle=m["handle"], parent=m["parent"], tbf=tbf))
    return out


def replace_tbf(conn: Conn, index: int, tbf: Tbf, *, parent: int = TC_H_ROOT, handle_: int = handle(1)) -> None:
    """Put a ``tbf`` qdisc at ``parent`` (root) of link ``index``, replacing what is there (so a repeated ADD
    converges). Rates of 2^32 B/s and more go in TCA_TBF_RATE64, the 32-bit field then holding its low bits."""
    parms = {"rate": tbf.rate & 0xFFFFFFFF, "limit": tbf.limit, "buffer": tbf.buffer}
    options: list[tuple] = [("TCA_TBF_PARMS", parms)]
    if tbf.rate >= 1 << 32:
        options.append(("TCA_TBF_RATE64", tbf.rate))
    body = _body(index, [("TCA_KIND", "tbf"), ("TCA_OPTIONS", {"attrs": options})], parent=parent,
                 handle_=handle_)
    conn.request(RTM_NEWQDISC, body, NLM_F_CREATE | NLM_F_REPLACE, f"failed to set tbf qdisc on link {index}")


def add_ingress_qdisc(conn: Conn, index: int) -> bool:
    """Add the ``ingress`` qdisc (``ffff:``) to link ``index``; False when one is there already (the ingress
    hook has a single qdisc, ``ingress`` or ``clsact``, which the caller may share)."""
    body = _body(index, [("TCA_KIND", "ingress")], parent=TC_H_INGRESS, handle_=handle(0xFFFF))
    return request_unless(conn, RTM_NEWQDISC, body, NLM_F_CREATE | NLM_F_EXCL,
                          f"failed to add ingress qdisc to link {index}", (errno.EEXIST,))


def delete_qdisc(conn: Conn, index: int, parent: int, handle_: int = 0) -> bool:
    """Delete the qdisc at ``parent`` of link ``index``; False when there was none (or the link is gone)."""
    return request_unless(conn, RTM_DELQDISC, _body(index, parent=parent, handle_=handle_), 0,
                          f"failed to delete qdisc {parent:#x} of link {index}",
                          (errno.ENOENT, errno.EINVAL, errno.ENODEV))


def replace_redirect_filter(conn: Conn, index: int, target: int, *, parent: int, prio: int = 1,
                            classid: int = handle(1, 1)) -> None:
    """A u32 filter at ``parent`` of link ``index`` matching every packet (any protocol) and redirecting it
    to the egress of link ``target`` (``tc filter add ... u32 match u32 0 0 flowid 1:1 action mirred egress
    redirect dev <target>``). Named ``800::800`` and replaced if there, so a repeated ADD converges."""
    sel = {"flags": TC_U32_TERMINAL, "nkeys": 1}
    mirred = {"attrs": [("TCA_MIRRED_PARMS", {"action": TC_ACT_STOLEN, "eaction": TCA_EGRESS_REDIR,
                                              "ifindex": target})]}
    action = {"attrs": [("TCA_ACT_KIND", "mirred"), ("TCA_ACT_OPTIONS", mirred)]}
    options = {"attrs": [("TCA_U32_SEL", sel), ("TCA_U32_CLASSID", classid),
                         ("TCA_U32_ACT", {"attrs": [("TCA_ACT_PRIO_1", action)]})]}
    info = (prio << 16) | socket.htons(ETH_P_ALL)
    body = _body(index, [("TCA_KIND", "u32"), ("TCA_OPTIONS", options)], parent=parent,
                 handle_=U32_FIRST_HANDLE, info=info)
    conn.request(RTM_NEWTFILTER, body, NLM_F_CREATE | NLM_F_REPLACE,
                 f"failed to add redirect filter from link {index} to link {target}")


def delete_redirect_filter(conn: Conn, index: int, *, parent: int, prio: int = 1) -> bool:
    """Delete what :func:`replace_redirect_filter` made: the u32 filters of priority ``prio`` at ``parent``,
    with their hash table (a priority of u32 filters is one classifier instance; filters of other priorities
    stay). False when there are none."""
    info = (prio << 16) | socket.htons(ETH_P_ALL)
    body = _body(index, [("TCA_KIND", "u32")], parent=parent, info=info)
    return request_unless(conn, RTM_DELTFILTER, body, 0, f"failed to delete redirect filter of link {index}",
                          (errno.ENOENT, errno.EINVAL, errno.ENODEV))


def list_filters(conn: Conn, index: int, parent: int) -> list[Filter]:
    """The filters at ``parent`` of link ``index`` (u32 ones with their classid and mirred target)."""
    out = []
    for mtype, payload in conn.dump(RTM_GETTFILTER, _body(index, parent=parent),
                                    f"failed to list filters of link {index}"):
        m = msg.parse("tcmsg", mtype, payload)
        opts = m.get_attr("TCA_OPTIONS") if m.get_attr("TCA_KIND") == "u32" else None
        classid = redirect = 0
        if opts is not None:
            classid = opts.get_attr("TCA_U32_CLASSID") or 0
            redirect = _first_redirect(opts.get_attr("TCA_U32_ACT"))
        out.append(Filter(kind=m.get_attr("TCA_KIND") or "", parent=m["parent"], prio=m["info"] >> 16,
                          protocol=socket.ntohs(m["info"] & 0xFFFF), handle=m["handle"], classid=classid,
                          redirect=redirect))
    return out


def _first_redirect(actions: object) -> int:
    """The ifindex the first mirred action of a filter's action list sends to (0: none)."""
    if actions is None:
        return 0
    for slot in actions["attrs"]:  # type: ignore[index]
        act = slot[1]
        if act.get_attr("TCA_ACT_KIND") != "mirred":
            continue
        opts = act.get_attr("TCA_ACT_OPTIONS")
        parms = opts.get_attr("TCA_MIRRED_PARMS") if opts is not None else None
        if parms is not None:
            return int(parms["ifindex"])
    return 0
