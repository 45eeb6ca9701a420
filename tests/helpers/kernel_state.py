"""A comparable picture of a network namespace: links, addresses, routes, rules, netfilter, /proc/sys/net.

Bad input must change nothing: tests take a snapshot before and after and compare. Counters, timers, carrier
and link flags are left out (they move by themselves); what a plugin creates, names, addresses, enslaves,
routes or writes into a table is in.
"""

from __future__ import annotations

import json
import re

from tests.helpers.netns import Netns

_VOLATILE = re.compile(r"\[\d+:\d+\]|^#.*$", re.M)  # iptables-save counters and its dated comment lines
# Carrier follows the ports as they come and go, asynchronously: not a change a plugin made.
_LINKDOWN = re.compile(r" linkdown")
_LIFETIMES = re.compile(r"valid_lft \S+ preferred_lft \S+|\b(?:tentative|dadfailed)\b")


def _no_link_local(text: str) -> str:
    """IPv6 link-local addresses and routes come and go with carrier, by themselves."""
    return "\n".join(line for line in text.splitlines() if "fe80:" not in line and "ff00::/8" not in line)


def snapshot(ns: Netns) -> dict[str, str]:
    def run(*argv: str) -> str:
        return ns.run(list(argv), check=False).stdout

    links = [(link.get("ifname"), link.get("linkinfo", {}).get("info_kind"), link.get("mtu"), link.get("master"),
              link.get("address"), link.get("promiscuity"))
             for link in json.loads(run("ip", "-j", "-d", "link") or "[]")]
    return {
        "links": json.dumps(links),
        "addrs": _LIFETIMES.sub("", _no_link_local(run("ip", "-o", "addr", "show"))),
        "routes4": _LINKDOWN.sub("", _no_link_local(run("ip", "-4", "route", "show", "table", "all"))),
        "routes6": _LINKDOWN.sub("", _no_link_local(run("ip", "-6", "route", "show", "table", "all"))),
        "rules": run("ip", "rule", "show") + run("ip", "-6", "rule", "show"),
        "iptables": _VOLATILE.sub("", run("iptables-save") + run("ip6tables-save")),
        "nft": run("nft", "list", "ruleset"),
        "forwarding": run("cat", "/proc/sys/net/ipv4/ip_forward"),
    }
