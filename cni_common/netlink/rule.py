"""Policy routing rules (``ip rule``): the ``from <source> lookup <table>`` kind that sbr adds, listed, added and
deleted (pyroute2's ``fibmsg``)."""

from __future__ import annotations

import errno
import ipaddress
from typing import Optional, Union

from ..record import record
from . import msg
from .conn import Conn, request_unless
from .consts import (
    AF_INET,
    AF_INET6,
    AF_UNSPEC,
    FR_ACT_TO_TBL,
    NLM_F_CREATE,
    NLM_F_EXCL,
    RTM_DELRULE,
    RTM_GETRULE,
    RTM_NEWRULE,
)

IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


@record(frozen=True)
class Rule:
    """A rule sending traffic from ``src`` (None: from anywhere) to ``table``; ``priority`` None lets the kernel
    pick one just below the lowest existing non-zero one (``ip rule add`` does the same)."""

    src: Optional[IPNetwork]
    table: int
    priority: Optional[int] = None
    family: int = AF_INET


def _body(rule: Rule) -> bytes:
    nlas: list[tuple] = [("FRA_TABLE", rule.table)]
    if rule.src is not None:
        nlas.append(("FRA_SRC", str(rule.src.network_address)))
    if rule.priority is not None:
        nlas.append(("FRA_PRIORITY", rule.priority))
    family = rule.family if rule.src is None else (AF_INET if rule.src.version == 4 else AF_INET6)
    return msg.build("fibmsg", nlas, family=family, src_len=rule.src.prefixlen if rule.src is not None else 0,
                     table=rule.table if rule.table < 256 else 0, action=FR_ACT_TO_TBL)


def add_rule(conn: Conn, rule: Rule, *, exist_ok: bool = False) -> bool:
    """Add ``rule``; False when the same rule exists and ``exist_ok`` is set."""
    tolerated = (errno.EEXIST,) if exist_ok else ()
    return request_unless(conn, RTM_NEWRULE, _body(rule), NLM_F_CREATE | NLM_F_EXCL,
                          f"failed to add rule from {rule.src} lookup {rule.table}", tolerated)


def del_rule(conn: Conn, rule: Rule) -> bool:
    """Delete ``rule`` (matched on source, table and, when set, priority); False when it was absent."""
    return request_unless(conn, RTM_DELRULE, _body(rule), 0,
                          f"failed to delete rule from {rule.src} lookup {rule.table}", (errno.ENOENT,))


def list_rules(conn: Conn, family: int = AF_UNSPEC) -> list[Rule]:
    """The namespace's table-lookup rules, of one family or both (other actions are left out)."""
    out: list[Rule] = []
    for mtype, payload in conn.dump(RTM_GETRULE, msg.build("fibmsg", family=family), "failed to list rules"):
        if mtype != RTM_NEWRULE:
            continue
        m = msg.parse("fibmsg", mtype, payload)
        if m["action"] != FR_ACT_TO_TBL or m["family"] not in (AF_INET, AF_INET6):
            continue
        src = m.get_attr("FRA_SRC")
        out.append(Rule(
            src=ipaddress.ip_network(f"{src}/{m['src_len']}", strict=False) if src else None,
            table=m.get_attr("FRA_TABLE", m["table"]),
            priority=m.get_attr("FRA_PRIORITY", 0),
            family=m["family"],
        ))
    return out
