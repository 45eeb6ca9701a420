"""A comparable picture of a network namespace: links, addresses, routes, rules, netfilter, /proc/sys/net.

Bad input must change nothing: tests take a snapshot before and after and compare. Counters and timers are
left out (they move by themselves).
"""

from __future__ import annotations

import json
import re

from tests.helpers.netns import Netns

_VOLATILE = re.compile(r"\[\d+:\d+\]|^#.*$", re.M)  # iptables-save counters and its dated comment lines


def snapshot(ns: Netns) -> dict[str, str]:
    def run(*argv: str) -> str:
        return ns.run(list(argv), check=False).stdout

    links = json.loads(run("ip", "-j", "-d", "link", "show") or "[]")
    for link in links:
        for volatile in ("stats", "stats64", "operstate", "linkinfo"):
            link.pop(volatile, None)
    return {
        "links": json.dumps(links, sort_keys=True),
        "addrs": run("ip", "-o", "addr", "show"),
        "routes4": run("ip", "route", "show", "table", "all"),
        "routes6": run("ip", "-6", "route", "show", "table", "all"),
        "rules": run("ip", "rule", "show") + run("ip", "-6", "rule", "show"),
        "iptables": _VOLATILE.sub("", run("iptables-save") + run("ip6tables-save")),
        "nft": run("nft", "list", "ruleset"),
        "forwarding": run("cat", "/proc/sys/net/ipv4/ip_forward"),
    }
