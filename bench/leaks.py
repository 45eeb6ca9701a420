"""What a DEL must leave behind: nothing. Counts what is left of some pods after their DELs.

Left-overs are looked for where each kind of state lives: IPAM reservation files in the dataDir, veths on the
host, libcni's result cache, and netfilter lines that still name a pod (its address, its container ID, or a
per-pod chain `CNI-<hash>` / `CNI-DN-<hash>`). Chains shared by all pods (`CNI-HOSTPORT-DNAT`...) stay by
design in both implementations and are not counted.
"""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path
from typing import Iterable, NamedTuple

from tests.helpers import net
from tests.helpers.netns import Netns

#: Per-attachment chain names (hashed) of the masquerade and portmap rules.
_POD_CHAIN = r"CNI-(?:DN-|SN-)?[0-9a-f]{16,}"


class Leftovers(NamedTuple):
    """Counts of each kind of left-over state."""

    ip_files: int
    veths: int
    rule_lines: int
    cache_files: int

    @property
    def total(self) -> int:
        return sum(self)

    def describe(self) -> str:
        if not self.total:
            return "nothing left"
        return (f"LEFT: {self.ip_files} IP files, {self.veths} veths, {self.rule_lines} rule lines, "
                f"{self.cache_files} cache files")


def reservation_files(network_dir: Path) -> list[Path]:
    """Files of a host-local network dir named after an address (reservations; not `lock`, `last_reserved_ip.N`)."""
    if not network_dir.is_dir():
        return []
    found = []
    for path in network_dir.iterdir():
        try:
            ipaddress.ip_address(path.name)
        except ValueError:
            continue
        found.append(path)
    return found


def pod_pattern(tokens: Iterable[str]) -> re.Pattern[str]:
    """A regex matching any of `tokens` (addresses, container IDs) as a whole word, or a per-pod chain name.

    "10.99.0.1" must not match inside "10.99.0.10", nor "pod-1" inside "pod-12"; "10.99.0.1:80" and
    "[fd99::2]:80" must match.
    """
    words = sorted({t for t in tokens if t}, key=len, reverse=True)
    alternatives = [rf"(?<![\w.:]){re.escape(w)}(?![\w.])" for w in words] + [rf"\b{_POD_CHAIN}\b"]
    return re.compile("|".join(alternatives))


def count_matching_lines(text: str, pattern: re.Pattern[str]) -> int:
    """Lines of `text` where `pattern` matches."""
    return sum(1 for line in text.splitlines() if pattern.search(line))


def ruleset_text(host: Netns) -> str:
    """Everything netfilter holds in `host`: `nft list ruleset`, plus iptables-save when iptables is legacy.

    With iptables-nft (this machine's default) the iptables rules are nft rules and appear once, in nft.
    """
    parts = [host.run(["nft", "list", "ruleset"], check=False).stdout]
    version = host.run(["iptables", "-V"], check=False).stdout
    if "legacy" in version:
        for tool in ("iptables-save", "ip6tables-save"):
            parts.append(host.run([tool], check=False).stdout)
    return "\n".join(parts)


def host_veths(host: Netns) -> int:
    """veth links left in the host namespace."""
    return sum(1 for lk in net.links(host) if lk.get("linkinfo", {}).get("info_kind") == "veth")


def leftovers(host: Netns, network_dir: Path, cache_files: int, tokens: Iterable[str]) -> Leftovers:
    """Count what remains in `host` of the pods named by `tokens` (addresses and container IDs)."""
    rules = count_matching_lines(ruleset_text(host), pod_pattern(tokens))
    return Leftovers(len(reservation_files(network_dir)), host_veths(host), rules, cache_files)


def result_addresses(result: object) -> list[str]:
    """Bare addresses ("10.99.0.2", "fd99::2") of a CNI ADD result (dict or JSON text; [] for anything else)."""
    data = result
    if isinstance(result, str):
        try:
            data = json.loads(result)
        except ValueError:
            return []
    if not isinstance(data, dict):
        return []
    return [str(ipaddress.ip_interface(ip["address"]).ip) for ip in data.get("ips", [])]
