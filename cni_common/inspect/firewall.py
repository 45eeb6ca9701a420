"""The firewall plugin's rules as the node model shows them: the addresses let through (iptables ``CNI-FORWARD``
or our nft table ``inet cni_plugins_firewall``) and the bridges under an ingress policy."""

from __future__ import annotations

from typing import Any

from ..netfilter import firewall as names
from ..netfilter.xtables import option_value, parse_save


def firewall_view(filter_tables: dict[int, str], nft_rules: list[dict[str, Any]]) -> dict[str, Any]:
    """``{"allowed": [{"backend", "address", "attachment"}], "isolated_bridges": [{"backend", "bridge"}]}``."""
    allowed: list[dict[str, Any]] = []
    bridges: list[dict[str, Any]] = []
    for text in filter_tables.values():
        table = parse_save(text, "filter")
        for rule in table.rules(names.FORWARD_CHAIN):
            source = option_value(rule, "-s")
            if source and rule[-2:] == ["-j", "ACCEPT"]:
                allowed.append({"backend": "iptables", "address": source.split("/")[0], "attachment": None})
        for rule in table.rules(names.STAGE2):
            bridge = option_value(rule, "-o")
            if bridge and {"backend": "iptables", "bridge": bridge} not in bridges:  # one per family
                bridges.append({"backend": "iptables", "bridge": bridge})
    for obj in nft_rules:
        if obj.get("table") != names.NFT_TABLE:
            continue
        source = _nft_saddr(obj)
        if obj.get("chain") == "containers" and source:
            allowed.append({"backend": "nftables", "address": source, "attachment": obj.get("comment")})
        elif obj.get("chain") == "isolation" and not str(obj.get("comment", "")).endswith(" isolated"):
            bridges.append({"backend": "nftables", "bridge": obj.get("comment")})
    return {"allowed": allowed, "isolated_bridges": bridges}


def _nft_saddr(rule: dict[str, Any]) -> str:
    """The address of an ``ip(6) saddr X`` match in an ``nft -j`` rule ("" when it has none)."""
    for expr in rule.get("expr") or []:
        match = expr.get("match") if isinstance(expr, dict) else None
        left = match.get("left") if isinstance(match, dict) else None
        payload = left.get("payload") if isinstance(left, dict) else None
        if isinstance(payload, dict) and payload.get("field") == "saddr":
            return str(match.get("right")) if isinstance(match, dict) else ""
    return ""
