"""bridge ipMasq: per-container SNAT for traffic leaving the container's subnet, in both upstream layouts.

iptables (nat table, per family): ``POSTROUTING -s <ip> -j CNI-<hash>``; ``CNI-<hash>``: ACCEPT to the
subnet, MASQUERADE anything but multicast. Every rule carries ``name: "<net>" id: "<cid>"``.
nftables: table ``inet cni_plugins_masquerade``, one rule per IP in ``masq_checks`` with a hashed comment.

Beyond upstream: teardown needs no IPs (the POSTROUTING jumps are found by their target chain, whose name
is a hash of net+cid), and the iptables layout has GC too (chains are attributed through their comments).
"""

from __future__ import annotations

import ipaddress
import re

from . import handles, names, runner
from .xtables import RestoreBatch, Rule, SavedTable, option_value, target_of

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~4 ms per plugin process)
if TYPE_CHECKING:
    from typing import Any, Iterable, Optional

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface

NFT_TABLE = "cni_plugins_masquerade"
NFT_CHAIN = "masq_checks"
NFT_TABLE_COMMENT = "Masquerading for plugins from github.com/containernetworking/plugins"
NFT_CHAIN_COMMENT = "Masquerade traffic from certain IPs to any (non-multicast) IP outside their subnet"
MULTICAST = {4: "224.0.0.0/4", 6: "ff00::/8"}
_CHAIN_RE = re.compile(r"^CNI-[0-9a-f]{24}\Z")
_COMMENT_RE = re.compile(r'^name: "(?P<net>(?:[^"\\]|\\.)*)" id: "(?P<cid>(?:[^"\\]|\\.)*)"\Z')


# ---------------------------------------------------------------------------------------------- iptables

def ipt_jump_rule(ip: IPInterface, chain: str, comment: str) -> Rule:
    """The POSTROUTING rule sending the container's traffic to its chain (canonical save form)."""
    return ["-s", f"{ip.ip}/{ip.max_prefixlen}", "-m", "comment", "--comment", comment, "-j", chain]


def ipt_chain_rules(ip: IPInterface, comment: str) -> list[Rule]:
    """The two rules of the per-container chain, for one IP."""
    return [["-d", str(ip.network), "-m", "comment", "--comment", comment, "-j", "ACCEPT"],
            ["!", "-d", MULTICAST[ip.version], "-m", "comment", "--comment", comment, "-j", "MASQUERADE"]]


def ipt_setup_batch(saved: SavedTable, ips: list[IPInterface], chain: str, comment: str) -> RestoreBatch:
    """Missing rules only (upstream AppendUnique semantics), so ADD is idempotent."""
    batch = RestoreBatch()
    if not saved.has_chain(chain):
        batch.new_chain(chain)
    wanted = list(saved.rules(chain))
    for ip in ips:
        for rule in ipt_chain_rules(ip, comment):
            if rule not in wanted:
                batch.append(chain, rule)
                wanted.append(rule)
    for ip in ips:
        jump = ipt_jump_rule(ip, chain, comment)
        if not saved.has_rule("POSTROUTING", jump):
            batch.append("POSTROUTING", jump)
    return batch


def _is_jump_for(rule: Rule, ip: IPInterface) -> bool:
    """True for the jump of this IP: ``-s ip/32`` or the old ``-s ip/prefix`` form (saved as the network)."""
    src = option_value(rule, "-s")
    return src in (f"{ip.ip}/{ip.max_prefixlen}", str(ip.network), str(ip.with_prefixlen))


def ipt_teardown_batch(saved: SavedTable, ips: Optional[list[IPInterface]], chain: str) -> RestoreBatch:
    """Delete the jumps (those of ``ips``, or all when ``ips`` is None); drop the chain once nothing uses it.

    Keeping the chain while another jump remains matters because ifname is not part of the chain name: a
    second interface of the same container on the same network shares it.
    """
    batch = RestoreBatch()
    jumps = saved.jumps_to("POSTROUTING", chain)
    doomed = [r for r in jumps if ips is None or any(_is_jump_for(r, ip) for ip in ips)]
    for rule in doomed:
        batch.delete("POSTROUTING", rule)
    if saved.has_chain(chain) and len(doomed) == len(jumps):
        batch.flush_chain(chain)
        batch.delete_chain(chain)
    return batch


def _comment_of(rule: Rule) -> str:
    return option_value(rule, "--comment")


def _unquote_go(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def ipt_owner(rule: Rule, network: str) -> Optional[str]:
    """The container ID a masquerade rule of ``network`` belongs to, from its comment (None: not ours)."""
    match = _COMMENT_RE.match(_comment_of(rule))
    if not match:
        return None
    cid = _unquote_go(match.group("cid"))
    return cid if names.ipt_comment(network, cid) == _comment_of(rule) else None


def ipt_gc_batch(saved: SavedTable, network: str, valid_ids: set[str]) -> RestoreBatch:
    """Remove jumps and chains of this network whose container is not in ``valid_ids``."""
    batch = RestoreBatch()
    stale_chains: set[str] = set()
    for rule in saved.rules("POSTROUTING"):
        cid = ipt_owner(rule, network)
        if cid is not None and cid not in valid_ids and target_of(rule) == names.masq_chain(network, cid):
            batch.delete("POSTROUTING", rule)
            stale_chains.add(target_of(rule))
    for chain, rules in saved.chains.items():
        if not _CHAIN_RE.match(chain):
            continue
        for rule in rules:
            cid = ipt_owner(rule, network)
            if cid is not None and cid not in valid_ids and chain == names.masq_chain(network, cid):
                stale_chains.add(chain)
    for chain in sorted(stale_chains):
        if saved.has_chain(chain):
            batch.flush_chain(chain)
            batch.delete_chain(chain)
    return batch


def _ipt_create_new(family: int, batch: RestoreBatch) -> bool:
    """The usual ADD in one exec instead of two: the container's chain does not exist yet.

    Then a fresh iptables-save would show nothing of this attachment (no rule can jump to a chain that does not
    exist), so the batch computed from an empty table is the right one. It starts with ``-N chain``, which
    fails the whole restore, changing nothing, when the chain exists: False then, and the caller takes the
    read-modify-write path. No read happens here, so there is nothing for :func:`runner.suite_lock` to guard.
    """
    text = batch.render()
    return text is not None and runner.iptables_restore(family, text).returncode == 0


def _ipt_remove_known(family: int, ips: list[IPInterface], chain: str, comment: str) -> bool:
    """The usual DEL in one exec instead of two: exactly what :func:`ipt_setup` made for ``ips`` is there.

    Deleting those jumps, then flushing and deleting the chain, is then what the read-modify-write path would
    do. If anything differs (a jump missing, an old-form jump or another interface's jump still using the
    chain), a step fails and with it the whole restore, changing nothing: False, and the caller takes that path.
    """
    batch = RestoreBatch()
    for ip in ips:
        batch.delete("POSTROUTING", ipt_jump_rule(ip, chain, comment))
    batch.flush_chain(chain)
    batch.delete_chain(chain)
    return runner.iptables_restore(family, batch.render() or "").returncode == 0


def _families(ips: Iterable[IPInterface]) -> list[int]:
    return sorted({ip.version for ip in ips})


def ipt_setup(network: str, container_id: str, ips: list[IPInterface]) -> None:
    chain, comment = names.masq_chain(network, container_id), names.ipt_comment(network, container_id)

    def setup_family(family: int) -> None:
        fam_ips = [ip for ip in ips if ip.version == family]
        if not _ipt_create_new(family, ipt_setup_batch(SavedTable(), fam_ips, chain, comment)):
            runner.ipt_transact(family, f"set up masquerading chain {chain} (IPv{family})",
                                lambda saved: ipt_setup_batch(saved, fam_ips, chain, comment))

    runner.for_each_family(_families(ips), setup_family, f"set up masquerading chain {chain}")


def ipt_teardown(network: str, container_id: str, ips: list[IPInterface]) -> None:
    chain, comment = names.masq_chain(network, container_id), names.ipt_comment(network, container_id)

    def teardown_family(family: int) -> None:
        fam_ips = [ip for ip in ips if ip.version == family] if ips else None
        if runner.ipt_nat_absent(family):
            return  # no nat table of this family at all (a node on the nftables layout): nothing of ours there
        if fam_ips and _ipt_remove_known(family, fam_ips, chain, comment):
            return
        # With addresses of this family, the table must be usable; without any, a cleanup of what may be there.
        transact = runner.ipt_transact if fam_ips else runner.ipt_clean
        transact(family, f"tear down masquerading chain {chain} (IPv{family})",
                 lambda saved: ipt_teardown_batch(saved, fam_ips, chain))

    runner.for_each_family((4, 6), teardown_family, f"tear down masquerading chain {chain}")


def ipt_gc(network: str, valid_ids: set[str]) -> None:
    runner.for_each_family((4, 6), lambda family: runner.ipt_clean(
        family, f"garbage-collect masquerading of {network!r} (IPv{family})",
        lambda saved: ipt_gc_batch(saved, network, valid_ids)), f"garbage-collect masquerading of {network!r}")


# ---------------------------------------------------------------------------------------------- nftables

def nft_rules_by_comment(listing: Optional[list[dict[str, Any]]], prefix: str) -> list[int]:
    """Handles of masq_checks rules whose comment starts with ``prefix``."""
    handles = []
    for obj in listing or []:
        rule = obj.get("rule")
        if rule and rule.get("chain") == NFT_CHAIN and str(rule.get("comment", "")).startswith(prefix):
            handles.append(int(rule["handle"]))
    return handles


def nft_rule_comments(listing: Optional[list[dict[str, Any]]]) -> dict[int, str]:
    """handle -> comment for every masq_checks rule."""
    out = {}
    for obj in listing or []:
        rule = obj.get("rule")
        if rule and rule.get("chain") == NFT_CHAIN:
            out[int(rule["handle"])] = str(rule.get("comment", ""))
    return out


def nft_setup_script(ips: list[IPInterface], comment: str, stale: list[int], declare: bool = True) -> str:
    """One transaction: ensure table and chains, rebuild postrouting, replace this attachment's rules.

    ``declare=False``: only this attachment's lines, for when the table, chains and postrouting's rules are known
    to be as a full script left them (:func:`handles.add`'s entry chains)."""
    t = f"inet {NFT_TABLE}"
    lines = [] if not declare else [
        f'add table {t} {{ comment "{NFT_TABLE_COMMENT}" ; }}',
        f'add chain {t} {NFT_CHAIN} {{ comment "{NFT_CHAIN_COMMENT}" ; }}',
        f"add chain {t} postrouting {{ type nat hook postrouting priority srcnat ; }}",
        f"flush chain {t} postrouting",
        f"add rule {t} postrouting ip daddr == 224.0.0.0/4 return",
        f"add rule {t} postrouting ip6 daddr == ff00::/8 return",
        f"add rule {t} postrouting goto {NFT_CHAIN}",
    ]
    lines += [f"delete rule {t} {NFT_CHAIN} handle {h}" for h in stale]
    for ip in ips:
        fam = "ip" if ip.version == 4 else "ip6"
        lines.append(f'add rule {t} {NFT_CHAIN} {fam} saddr == {ip.ip} {fam} daddr != {ip.network} masquerade '
                     f'comment "{comment}"')
    return "\n".join(lines) + "\n"


def nft_delete_script(handles: Iterable[int]) -> Optional[str]:
    lines = [f"delete rule inet {NFT_TABLE} {NFT_CHAIN} handle {h}" for h in handles]
    return "\n".join(lines) + "\n" if lines else None


def _nft_listing() -> Optional[list[dict[str, Any]]]:
    """The masq_checks chain, or None when it does not exist."""
    return runner.nft_list("chain", "inet", NFT_TABLE, NFT_CHAIN)


def nft_setup(network: str, container_id: str, ifname: str, ips: list[IPInterface]) -> None:
    """One transaction; the rules' handles are recorded (:mod:`.handles`) for the DEL."""
    prefix = names.nft_instance_hash(network, ifname, container_id)
    comment = names.nft_masq_comment(network, ifname, container_id)

    def listed() -> list[handles.RuleRef]:
        return [("inet", NFT_TABLE, NFT_CHAIN, h) for h in nft_rules_by_comment(_nft_listing(), prefix)]

    handles.add(f"set up nftables masquerading for {container_id}/{ifname}", ("masq", network, ifname, container_id),
                lambda stale, declare: nft_setup_script(ips, comment, [h for _, _, _, h in stale], declare), listed,
                (NFT_CHAIN,), comment, [("inet", NFT_TABLE, "postrouting")])


def nft_teardown(network: str, container_id: str, ifname: str) -> None:
    prefix = names.nft_instance_hash(network, ifname, container_id)
    handles.delete(f"tear down nftables masquerading for {container_id}/{ifname}",
                   ("masq", network, ifname, container_id),
                   lambda: nft_delete_script(nft_rules_by_comment(_nft_listing(), prefix)))


def nft_gc_handles(listing: Optional[list[dict[str, Any]]], network: str,
                   valid: set[tuple[str, str]]) -> list[int]:
    """Rules of this network whose comment is not that of a valid (containerID, ifname)."""
    keep = {names.nft_masq_comment(network, ifname, cid) for cid, ifname in valid}
    prefix = names.nft_network_hash(network)
    return [h for h, c in nft_rule_comments(listing).items() if c.startswith(prefix) and c not in keep]


def nft_gc(network: str, valid: set[tuple[str, str]]) -> None:
    runner.transact(f"garbage-collect nftables masquerading of {network!r}",
                    lambda: nft_delete_script(nft_gc_handles(_nft_listing(), network, valid)),
                    runner.nft_apply, runner.NFT_LOCK)
