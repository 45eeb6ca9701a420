"""The firewall plugin's rules: forwarded traffic of the container's addresses allowed, and bridge isolation.

iptables (filter table, per family), upstream's layout rule for rule::

    FORWARD       -m comment --comment "CNI firewall plugin rules" -j CNI-FORWARD          (inserted first)
    CNI-FORWARD   -m comment --comment "CNI firewall plugin admin overrides" -j CNI-ADMIN  (inserted first)
                  -d <ip>/32 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT       (per IP, appended)
                  -s <ip>/32 -j ACCEPT
    CNI-ADMIN     the operator's own rules; never written here

and for ``ingressPolicy`` same-bridge / isolated the chains ``CNI-ISOLATION-STAGE-1/2`` with the v1.9 comments.
Existence checks accept the comments of older releases too, so a node upgraded from Go v1.1-v1.6 does not get
every isolation rule a second time.

nftables (beyond upstream, which has no nft backend): table ``inet cni_plugins_firewall``, the same structure
as one table of our own: ``forward`` (hook forward, priority filter) jumps to ``isolation``, then to ``admin``
(the operator's), then the per-IP accepts, each commented with the attachment it belongs to, so DEL needs no
addresses. In nftables an accept ends only this table's evaluation: other tables still see the packet.
"""

from __future__ import annotations

import ipaddress

from . import runner
from .xtables import RestoreBatch, Rule, SavedTable, parse_save

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~4 ms per plugin process)
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable, Optional

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface

FORWARD_CHAIN = "CNI-FORWARD"
STAGE1, STAGE2 = "CNI-ISOLATION-STAGE-1", "CNI-ISOLATION-STAGE-2"
FORWARD_COMMENT = "CNI firewall plugin rules"
ADMIN_COMMENT = "CNI firewall plugin admin overrides"
SAME_BRIDGE, ISOLATED = "same-bridge", "isolated"
#: v1.7+ comments: D on the rules every policy shares, P on the policy's own rule.
SHARED_COMMENT = "CNI firewall plugin rules (ingressPolicy: same-bridge|isolated)"
#: v1.1-v1.6 wrote this on every isolation rule.
OLD_COMMENT = "CNI firewall plugin rules (ingressPolicy: same-bridge)"


def policy_comment(policy: str) -> str:
    return f"CNI firewall plugin rules (ingressPolicy: {policy})"


# ---------------------------------------------------------------------------------------------- iptables

def ip_rules(ip: IPInterface) -> list[Rule]:
    """The two per-IP rules of CNI-FORWARD, in iptables-save's canonical form."""
    host = f"{ip.ip}/{ip.max_prefixlen}"
    return [["-d", host, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"],
            ["-s", host, "-j", "ACCEPT"]]


def forward_jump() -> Rule:
    return ["-m", "comment", "--comment", FORWARD_COMMENT, "-j", FORWARD_CHAIN]


def admin_jump(admin_chain: str) -> Rule:
    return ["-m", "comment", "--comment", ADMIN_COMMENT, "-j", admin_chain]


def allow_batch(saved: SavedTable, ips: list[IPInterface], admin_chain: str) -> RestoreBatch:
    """Chains, jumps and per-IP rules that are missing (upstream's ensure/insertUnique/appendUnique)."""
    batch = RestoreBatch(table="filter")
    for chain in (FORWARD_CHAIN, admin_chain):
        if not saved.has_chain(chain):
            batch.new_chain(chain)
    if not saved.has_rule("FORWARD", forward_jump()):
        batch.insert("FORWARD", forward_jump())
    if not saved.has_rule(FORWARD_CHAIN, admin_jump(admin_chain)):
        batch.insert(FORWARD_CHAIN, admin_jump(admin_chain))
    present = list(saved.rules(FORWARD_CHAIN))
    for ip in ips:
        for rule in ip_rules(ip):
            if rule not in present:
                batch.append(FORWARD_CHAIN, rule)
                present.append(rule)
    return batch


def revoke_batch(saved: SavedTable, ips: list[IPInterface]) -> RestoreBatch:
    """Delete the per-IP rules that are there; the shared chains and jumps stay, as upstream leaves them
    (other containers and the operator's CNI-ADMIN rules use them)."""
    batch = RestoreBatch(table="filter")
    for ip in ips:
        for rule in ip_rules(ip):
            if saved.has_rule(FORWARD_CHAIN, rule):
                batch.delete(FORWARD_CHAIN, rule)
    return batch


def missing_rules(saved: SavedTable, ips: list[IPInterface], admin_chain: str) -> list[str]:
    """What CHECK must find, in upstream's words, that is not there."""
    missing = []
    wanted = [("FORWARD", forward_jump()), (FORWARD_CHAIN, admin_jump(admin_chain))]
    wanted += [(FORWARD_CHAIN, rule) for ip in ips for rule in ip_rules(ip)]
    for chain, rule in wanted:
        if not saved.has_rule(chain, rule):
            missing.append(f"expected {chain} rule [{' '.join(rule)}] not found")
    return missing


def _has_any(saved: SavedTable, chain: str, rule: Rule, comments: Iterable[str]) -> bool:
    """The rule is there with one of ``comments`` (the current comment or an older release's)."""
    return any(saved.has_rule(chain, [*rule[:-2], "-m", "comment", "--comment", c, *rule[-2:]]) for c in comments)


def isolation_batch(saved: SavedTable, bridge: str, policy: str) -> RestoreBatch:
    """Upstream's isolation chains for ``bridge``; each rule only if absent (under either comment generation)."""
    batch = RestoreBatch(table="filter")
    shared, own = (SHARED_COMMENT, OLD_COMMENT), (policy_comment(policy), OLD_COMMENT)

    def ensure(chain: str, rule: Rule, comments: tuple[str, str], first: bool) -> None:
        if _has_any(saved, chain, rule, comments):
            return
        commented = [*rule[:-2], "-m", "comment", "--comment", comments[0], *rule[-2:]]
        if first:
            batch.insert(chain, commented)
        else:
            batch.append(chain, commented)

    for chain in (STAGE1, STAGE2):
        if not saved.has_chain(chain):
            batch.new_chain(chain)
    ensure("FORWARD", ["-j", STAGE1], shared, True)
    ensure(STAGE1, ["-i", bridge, "!", "-o", bridge, "-j", STAGE2], own, True)
    if policy == ISOLATED:
        ensure(STAGE1, ["-i", bridge, "-o", bridge, "-j", "DROP"], own, True)
    ensure(STAGE1, ["-j", "RETURN"], shared, False)
    ensure(STAGE2, ["-o", bridge, "-j", "DROP"], shared, True)
    ensure(STAGE2, ["-j", "RETURN"], shared, False)
    return batch


def _filter_transact(family: int, what: str, make: Callable[[SavedTable], RestoreBatch]) -> None:
    runner.transact(what, lambda: make(parse_save(runner.iptables_save(family, "filter"), "filter")).render(),
                    lambda text: runner.iptables_restore(family, text), f"ipv{family}")


def _families(ips: Iterable[IPInterface]) -> list[int]:
    return sorted({ip.version for ip in ips})


def _of(ips: list[IPInterface], family: int) -> list[IPInterface]:
    return [ip for ip in ips if ip.version == family]


def ipt_allow(ips: list[IPInterface], admin_chain: str) -> None:
    runner.for_each_family(_families(ips), lambda fam: _filter_transact(
        fam, f"allow forwarding of {', '.join(str(ip.ip) for ip in _of(ips, fam))}",
        lambda saved: allow_batch(saved, _of(ips, fam), admin_chain)), "allow forwarding")


def ipt_revoke(ips: list[IPInterface]) -> None:
    runner.for_each_family(_families(ips), lambda fam: _filter_transact(
        fam, "remove forwarding rules", lambda saved: revoke_batch(saved, _of(ips, fam))), "remove forwarding rules")


def ipt_isolate(families: list[int], bridge: str, policy: str) -> None:
    runner.for_each_family(families, lambda fam: _filter_transact(
        fam, f"set up ingress policy {policy} of {bridge}", lambda saved: isolation_batch(saved, bridge, policy)),
        f"set up ingress policy {policy}")


def ipt_check(ips: list[IPInterface], admin_chain: str) -> list[str]:
    """Read-only (upstream's CHECK creates the chains first)."""
    missing: list[str] = []
    for fam in _families(ips):
        saved = parse_save(runner.iptables_save(fam, "filter"), "filter")
        missing += missing_rules(saved, _of(ips, fam), admin_chain)
    return missing


# ---------------------------------------------------------------------------------------------- nftables

NFT_TABLE = "cni_plugins_firewall"
NFT_T = f"inet {NFT_TABLE}"


def nft_comment(network: str, container_id: str, ifname: str) -> str:
    """The attachment a rule belongs to (double quotes dropped: nft cannot carry them in a comment)."""
    return f"net: {network}, id: {container_id}, if: {ifname}".replace('"', "")[:128]


def _nft_base() -> list[str]:
    return [f'add table {NFT_T} {{ comment "CNI firewall plugin" ; }}',
            f"add chain {NFT_T} forward {{ type filter hook forward priority filter ; policy accept ; }}",
            f'add chain {NFT_T} isolation {{ comment "ingressPolicy same-bridge and isolated" ; }}',
            f'add chain {NFT_T} admin {{ comment "the operator\'s rules, before the per-container accepts" ; }}',
            f"add chain {NFT_T} containers",
            f"flush chain {NFT_T} forward",
            f"add rule {NFT_T} forward jump isolation",
            f"add rule {NFT_T} forward jump admin",
            f"add rule {NFT_T} forward jump containers"]


def _nft_rules(listing: Optional[list[dict[str, Any]]], chain: str) -> list[dict[str, Any]]:
    return [obj["rule"] for obj in listing or [] if "rule" in obj and obj["rule"].get("chain") == chain]


def nft_allow_script(listing: Optional[list[dict[str, Any]]], ips: list[IPInterface], comment: str) -> str:
    lines = _nft_base()
    lines += [f"delete rule {NFT_T} containers handle {r['handle']}" for r in _nft_rules(listing, "containers")
              if r.get("comment") == comment]
    for ip in ips:
        fam = "ip" if ip.version == 4 else "ip6"
        lines.append(f'add rule {NFT_T} containers {fam} daddr {ip.ip} ct state established,related accept '
                     f'comment "{comment}"')
        lines.append(f'add rule {NFT_T} containers {fam} saddr {ip.ip} accept comment "{comment}"')
    return "\n".join(lines) + "\n"


def nft_isolation_script(listing: Optional[list[dict[str, Any]]], bridge: str, policy: str) -> Optional[str]:
    """Per bridge: frames in from it and out to another policy bridge are dropped (``same-bridge``), and for
    ``isolated`` also frames in and out of it. The set ``policy_bridges`` plays CNI-ISOLATION-STAGE-2."""
    want = [(f'iifname "{bridge}" oifname != "{bridge}" oifname @policy_bridges drop', bridge)]
    if policy == ISOLATED:
        want.insert(0, (f'iifname "{bridge}" oifname "{bridge}" drop', f"{bridge} isolated"))
    have = {str(r.get("comment", "")) for r in _nft_rules(listing, "isolation")}
    lines = _nft_base() + [f"add set {NFT_T} policy_bridges {{ type ifname ; }}",
                           f'add element {NFT_T} policy_bridges {{ "{bridge}" }}']
    lines += [f'add rule {NFT_T} isolation {rule} comment "{comment}"' for rule, comment in want
              if comment not in have]
    return "\n".join(lines) + "\n"


def _nft_listing() -> Optional[list[dict[str, Any]]]:
    return runner.nft_list("table", "inet", NFT_TABLE)


def nft_allow(ips: list[IPInterface], comment: str) -> None:
    runner.transact(f"allow forwarding ({comment})", lambda: nft_allow_script(_nft_listing(), ips, comment),
                    runner.nft_apply, runner.NFT_LOCK)


def _nft_remove(what: str, doomed: Callable[[str], bool]) -> None:
    """Delete the per-container rules whose comment ``doomed`` names, in one transaction (none: no exec)."""
    def build() -> Optional[str]:
        lines = [f"delete rule {NFT_T} containers handle {r['handle']}"
                 for r in _nft_rules(_nft_listing(), "containers") if doomed(str(r.get("comment", "")))]
        return "\n".join(lines) + "\n" if lines else None

    runner.transact(what, build, runner.nft_apply, runner.NFT_LOCK)


def nft_revoke(comment: str) -> None:
    _nft_remove(f"remove forwarding rules ({comment})", lambda c: c == comment)


def nft_gc(network: str, valid: set[tuple[str, str]]) -> None:
    """Remove this network's per-container rules whose attachment is not in ``valid`` {(containerID, ifname)}."""
    keep = {nft_comment(network, cid, ifname) for cid, ifname in valid}
    prefix = nft_comment(network, "", "").partition(", id: ")[0] + ", id: "
    _nft_remove(f"garbage-collect forwarding rules of {network!r}", lambda c: c.startswith(prefix) and c not in keep)


def nft_isolate(bridge: str, policy: str) -> None:
    runner.transact(f"set up ingress policy {policy} of {bridge}",
                    lambda: nft_isolation_script(_nft_listing(), bridge, policy), runner.nft_apply, runner.NFT_LOCK)


def nft_check(ips: list[IPInterface], comment: str) -> list[str]:
    rules = [r for r in _nft_rules(_nft_listing(), "containers") if r.get("comment") == comment]
    if len(rules) < 2 * len(ips):
        return [f"expected {2 * len(ips)} rules of {comment!r} in table {NFT_T}, found {len(rules)}"]
    return []
