"""portmap's DNAT/hairpin rules, in upstream's iptables layout and its (newer) nftables layout.

iptables, nat table, per family (one ``ip(6)tables-restore`` each):
  PREROUTING, OUTPUT:  -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT        (shared, never removed)
  CNI-HOSTPORT-DNAT:   -m comment --comment 'dnat name: "N" id: "C"' -m multiport -p P --destination-ports ..
                       [conditions] -j CNI-DN-<hash>                            (prepended: newest wins)
  CNI-DN-<hash>:       per mapping: hairpin SETMARK, localhost SETMARK (v4), DNAT
  CNI-HOSTPORT-SETMARK / CNI-HOSTPORT-MASQ (+ POSTROUTING jump at position 1): the masquerade mark
nftables, tables ``ip cni_hostport`` and ``ip6 cni_hostport`` (both families in one transaction):
  prerouting/output: [conditions] fib daddr type local jump hostports_all
  hostports_all: jump hostip_hostports; jump hostports      hostports: per mapping DNAT, comment = containerID
  masquerading (postrouting, srcnat): hairpin (container subnet -> container) and localhost masquerade,
  comment = containerID

Beyond upstream: the nft hairpin rule matches the container subnet (as iptables does), a re-ADD replaces
this container's rules instead of stacking duplicates, and teardown needs no mappings (the chain name is a
hash of net+cid; nft rules carry the cid as comment).
"""

from __future__ import annotations

import ipaddress
import re

from .. import spawn
from ..log import get_logger
from ..record import field, record
from . import handles, names, runner
from .xtables import RestoreBatch, Rule, SavedTable, option_value, parse_save, target_of

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~4 ms per plugin process)
if TYPE_CHECKING:
    from typing import Any, Optional

log = get_logger(__name__)

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface

TOP_DNAT = "CNI-HOSTPORT-DNAT"
SETMARK = "CNI-HOSTPORT-SETMARK"
MARK_MASQ = "CNI-HOSTPORT-MASQ"
OLD_TOP_SNAT = "CNI-HOSTPORT-SNAT"
TOP_DNAT_ENTRY: Rule = ["-m", "addrtype", "--dst-type", "LOCAL", "-j", TOP_DNAT]
MASQ_ENTRY: Rule = ["-m", "comment", "--comment", "CNI portfwd requiring masquerade", "-j", MARK_MASQ]
MULTIPORT_MAX = 15

NFT_TABLE = "cni_hostport"
NFT_DNAT_CHAINS = ("hostports", "hostip_hostports")
NFT_MASQ_CHAIN = "masquerading"
NFT_OWNED_CHAINS = (*NFT_DNAT_CHAINS, NFT_MASQ_CHAIN)
NFT_ENTRY_CHAINS = ("hostports_all", "prerouting", "output")  # flushed and refilled by every full ADD script


@record(frozen=True)
class PortMapping:
    """One runtimeConfig.portMappings entry (validated by the plugin)."""

    host_port: int
    container_port: int
    protocol: str
    host_ip: str = ""


@record
class PortMapSpec:
    """What portmap must forward for one container."""

    network: str
    container_id: str
    mappings: list[PortMapping]
    snat: bool = True
    masq_all: bool = False
    mark_bit: int = 13
    external_set_mark_chain: Optional[str] = None
    conditions_v4: list[str] = field(default_factory=list)
    conditions_v6: list[str] = field(default_factory=list)

    def conditions(self, family: int) -> list[str]:
        return self.conditions_v4 if family == 4 else self.conditions_v6

    def mappings_for(self, family: int) -> list[tuple[PortMapping, str]]:
        """(mapping, destination host IP or "") for the mappings that apply to this family.

        A hostIP of the other family is skipped; 0.0.0.0 / :: means any address (no destination match).
        """
        out = []
        for m in self.mappings:
            if not m.host_ip:
                out.append((m, ""))
                continue
            host_ip = ipaddress.ip_address(m.host_ip)
            if host_ip.version == family:
                out.append((m, "" if host_ip.is_unspecified else m.host_ip))
        return out


def ip_port(ip: IPInterface, port: int) -> str:
    return f"[{ip.ip}]:{port}" if ip.version == 6 else f"{ip.ip}:{port}"


# ---------------------------------------------------------------------------------------------- iptables

def mark_value(bit: int) -> str:
    """Go's ``%#x/%#x`` of 1<<bit."""
    return f"{1 << bit:#x}/{1 << bit:#x}"


def setmark_rule(bit: int) -> Rule:
    return ["-m", "comment", "--comment", "CNI portfwd masquerade mark", "-j", "MARK", "--set-xmark",
            mark_value(bit)]


def masq_rule(bit: int) -> Rule:
    return ["-m", "mark", "--mark", mark_value(bit), "-j", "MASQUERADE"]


def entry_rules(spec: PortMapSpec, family: int) -> list[Rule]:
    """The CNI-HOSTPORT-DNAT rules jumping to this container's chain: per protocol, 15 ports at a time."""
    chain = names.dnat_chain(spec.network, spec.container_id)
    comment = names.dnat_comment(spec.network, spec.container_id)
    by_proto: dict[str, list[int]] = {}
    for m in spec.mappings:
        by_proto.setdefault(m.protocol, []).append(m.host_port)
    rules = []
    for proto in sorted(by_proto):
        ports = by_proto[proto]
        for i in range(0, len(ports), MULTIPORT_MAX):
            spec_ports = ",".join(str(p) for p in ports[i:i + MULTIPORT_MAX])
            rules.append(["-m", "comment", "--comment", comment, "-m", "multiport", "-p", proto,
                          "--destination-ports", spec_ports, *spec.conditions(family), "-j", chain])
    return rules


def dnat_rules(spec: PortMapSpec, ip: IPInterface) -> list[Rule]:
    """The per-container chain: hairpin mark, localhost mark (v4), DNAT, for every applicable mapping."""
    setmark = spec.external_set_mark_chain or SETMARK
    rules = []
    for m, host_ip in spec.mappings_for(ip.version):
        base = ["-p", m.protocol, "--dport", str(m.host_port)] + (["-d", host_ip] if host_ip else [])
        if spec.snat:
            src = ("0.0.0.0/0" if ip.version == 4 else "::/0") if spec.masq_all else str(ip.network)
            rules.append([*base, "-s", src, "-j", setmark])
            if ip.version == 4 and not spec.masq_all:
                rules.append([*base, "-s", "127.0.0.1", "-j", setmark])
        rules.append([*base, "-j", "DNAT", "--to-destination", ip_port(ip, m.container_port)])
    return rules


def _ensure_chain_with(batch: RestoreBatch, saved: SavedTable, chain: str, rule: Rule) -> None:
    if not saved.has_chain(chain):
        batch.new_chain(chain)
    if not saved.has_rule(chain, rule):
        batch.append(chain, rule)


def _remove_chain(batch: RestoreBatch, saved: SavedTable, chain: str, entry_chain: str) -> None:
    for rule in saved.jumps_to(entry_chain, chain):
        batch.delete(entry_chain, rule)
    if saved.has_chain(chain):
        batch.flush_chain(chain)
        batch.delete_chain(chain)


def ipt_forward_batch(saved: SavedTable, spec: PortMapSpec, ip: IPInterface) -> RestoreBatch:
    """All of one family's ADD changes; the container chain is rewritten whole, its entries replaced."""
    batch = RestoreBatch()
    if spec.snat and spec.external_set_mark_chain is None:
        _ensure_chain_with(batch, saved, SETMARK, setmark_rule(spec.mark_bit))
        _ensure_chain_with(batch, saved, MARK_MASQ, masq_rule(spec.mark_bit))
        if not saved.has_rule("POSTROUTING", MASQ_ENTRY):
            batch.insert("POSTROUTING", MASQ_ENTRY)
    if not saved.has_chain(TOP_DNAT):
        batch.new_chain(TOP_DNAT)
    for entry in ("PREROUTING", "OUTPUT"):
        if not saved.has_rule(entry, TOP_DNAT_ENTRY):
            batch.append(entry, TOP_DNAT_ENTRY)
    chain = names.dnat_chain(spec.network, spec.container_id)
    batch.declare_flushed(chain)
    for rule in dnat_rules(spec, ip):
        batch.append(chain, rule)
    for rule in saved.jumps_to(TOP_DNAT, chain):
        batch.delete(TOP_DNAT, rule)
    for rule in reversed(entry_rules(spec, ip.version)):
        batch.insert(TOP_DNAT, rule)
    return batch


def ipt_unforward_batch(saved: SavedTable, network: str, container_id: str) -> RestoreBatch:
    """Remove the container chain (found by its hash, so no mappings are needed) and the legacy SNAT chain."""
    batch = RestoreBatch()
    _remove_chain(batch, saved, names.dnat_chain(network, container_id), TOP_DNAT)
    _remove_chain(batch, saved, names.old_snat_chain(network, container_id), OLD_TOP_SNAT)
    return batch


_DNAT_COMMENT = re.compile(r'^dnat name: "(?P<net>.*)" id: "(?P<cid>[^"]*)"\Z')


def ipt_gc_batch(saved: SavedTable, network: str, valid_ids: set[str]) -> RestoreBatch:
    """Remove the chains of this network's containers that are not in ``valid_ids`` (found by comment)."""
    batch = RestoreBatch()
    stale = set()
    for rule in saved.rules(TOP_DNAT):
        match = _DNAT_COMMENT.match(option_value(rule, "--comment"))
        if match and match.group("net") == network and match.group("cid") not in valid_ids:
            if target_of(rule) == names.dnat_chain(network, match.group("cid")):
                stale.add(match.group("cid"))
    for cid in sorted(stale):
        _remove_chain(batch, saved, names.dnat_chain(network, cid), TOP_DNAT)
    return batch


def ipt_forward_new_batch(spec: PortMapSpec, ip: IPInterface) -> RestoreBatch:
    """What :func:`ipt_forward_batch` does when earlier ADDs made the shared chains and jumps and this container
    has no chain yet (the usual ADD), with that state asserted: ``-C`` for each shared rule, ``-N`` for the
    container's chain. If the state differs, that line fails the whole restore, which then changes nothing."""
    batch = RestoreBatch()
    if spec.snat and spec.external_set_mark_chain is None:
        batch.check(SETMARK, setmark_rule(spec.mark_bit))
        batch.check(MARK_MASQ, masq_rule(spec.mark_bit))
        batch.check("POSTROUTING", MASQ_ENTRY)
    for entry in ("PREROUTING", "OUTPUT"):
        batch.check(entry, TOP_DNAT_ENTRY)
    chain = names.dnat_chain(spec.network, spec.container_id)
    batch.new_chain(chain)
    for rule in dnat_rules(spec, ip):
        batch.append(chain, rule)
    for rule in reversed(entry_rules(spec, ip.version)):
        batch.insert(TOP_DNAT, rule)
    return batch


def ipt_forward(spec: PortMapSpec, ips: list[IPInterface]) -> None:
    """Per family, both at once: the usual ADD in one exec (:func:`ipt_forward_new_batch`), else
    read-modify-write."""
    by_family: dict[int, IPInterface] = {ip.version: ip for ip in ips}  # at most one per family (forward_ports)

    def forward(family: int) -> None:
        ip = by_family[family]
        if runner.iptables_restore(family, ipt_forward_new_batch(spec, ip).render() or "").returncode != 0:
            runner.ipt_transact(family, f"set up port forwarding to {ip.ip}",
                                lambda saved: ipt_forward_batch(saved, spec, ip))

    runner.for_each_family(sorted(by_family), forward, f"set up port forwarding for {spec.container_id}")


def ipt_unforward(network: str, container_id: str) -> None:
    runner.for_each_family((4, 6), lambda family: runner.ipt_clean(
        family, f"remove port forwarding of {container_id} (IPv{family})",
        lambda saved: ipt_unforward_batch(saved, network, container_id)), f"remove port forwarding of {container_id}")


def ipt_gc(network: str, valid_ids: set[str]) -> None:
    runner.for_each_family((4, 6), lambda family: runner.ipt_clean(
        family, f"garbage-collect port forwarding of {network!r} (IPv{family})",
        lambda saved: ipt_gc_batch(saved, network, valid_ids)), f"garbage-collect port forwarding of {network!r}")


def _ipt_has(family: int, chain: str, rule: Rule) -> bool:
    """``iptables -C``: the kernel's own comparison, robust to user-supplied condition tokens."""
    argv = [runner.iptables_cmd(family), "-w", runner.XTABLES_WAIT_SECONDS, "-t", "nat", "-C", chain, *rule]
    return runner.run(argv).returncode == 0


def ipt_check(spec: PortMapSpec, ips: list[IPInterface]) -> None:
    """CHECK as upstream: the container chain exists and holds every rule, and the entry rules exist."""
    chain = names.dnat_chain(spec.network, spec.container_id)
    for ip in ips:
        if not parse_save(runner.iptables_save(ip.version)).has_chain(chain):
            raise runner.NetfilterError(f"chain {chain} not found in iptables table nat (IPv{ip.version})")
        for rule in dnat_rules(spec, ip):
            if not _ipt_has(ip.version, chain, rule):
                raise runner.NetfilterError(f"rule {' '.join(rule)!r} not found in chain {chain}")
        for rule in entry_rules(spec, ip.version):
            if not _ipt_has(ip.version, TOP_DNAT, rule):
                raise runner.NetfilterError(f"rule {' '.join(rule)!r} not found in chain {TOP_DNAT}")


# ---------------------------------------------------------------------------------------------- nftables

def _nft_family(family: int) -> str:
    return "ip" if family == 4 else "ip6"


def nft_owned_handles(listing: Optional[list[dict[str, Any]]], container_id: str) -> list[tuple[str, int]]:
    """(chain, handle) of the rules of this container in the chains portmap owns."""
    out = []
    for obj in listing or []:
        rule = obj.get("rule")
        if rule and rule.get("chain") in NFT_OWNED_CHAINS and rule.get("comment") == container_id:
            out.append((rule["chain"], int(rule["handle"])))
    return out


def nft_forward_lines(spec: PortMapSpec, ip: IPInterface, stale: list[tuple[str, int]],
                      declare: bool = True) -> list[str]:
    """One family's part of the ADD transaction. ``declare=False``: only this container's lines, for when the
    table, chains and entry rules are known to be as a full script left them (:func:`handles.add`)."""
    fam = _nft_family(ip.version)
    t = f"{fam} {NFT_TABLE}"
    cond = " ".join(spec.conditions(ip.version))
    cond = cond + " " if cond else ""
    cid = spec.container_id
    lines = [f'add table {t} {{ comment "CNI portmap plugin" ; }}',
             *(f"add chain {t} {c}" for c in (*NFT_DNAT_CHAINS, "hostports_all")),
             f"flush chain {t} hostports_all",
             f"add rule {t} hostports_all jump hostip_hostports",
             f"add rule {t} hostports_all jump hostports"]
    # "dstnat" (-100) is a valid priority name only on the prerouting hook in nft 1.0.x: spell it out for output.
    for chain, priority in (("prerouting", "dstnat"), ("output", "-100")):
        lines += [f"add chain {t} {chain} {{ type nat hook {chain} priority {priority} ; }}",
                  f"flush chain {t} {chain}",
                  f"add rule {t} {chain} {cond}fib daddr type local jump hostports_all"]
    if spec.snat:
        lines.append(f"add chain {t} {NFT_MASQ_CHAIN} {{ type nat hook postrouting priority srcnat ; }}")
    if not declare:
        lines = []
    lines += [f"delete rule {t} {chain} handle {h}" for chain, h in stale]
    for m, host_ip in spec.mappings_for(ip.version):
        daddr = f"{fam} daddr {host_ip} " if host_ip else ""
        lines.append(f"add rule {t} hostports {daddr}{m.protocol} dport {m.host_port} "
                     f'dnat to {ip_port(ip, m.container_port)} comment "{cid}"')
    if spec.snat:
        # The whole container subnet, as the iptables layout does (upstream PR #469), not just the container:
        # a neighbour's hairpin reply is bridged straight back and never un-DNATed unless br_netfilter is on.
        src = ("0.0.0.0/0" if ip.version == 4 else "::/0") if spec.masq_all else str(ip.network)
        lines.append(f'add rule {t} {NFT_MASQ_CHAIN} {fam} saddr {src} {fam} daddr {ip.ip} masquerade '
                     f'comment "{cid}"')
        if ip.version == 4 and not spec.masq_all:
            lines.append(f'add rule {t} {NFT_MASQ_CHAIN} ip saddr 127.0.0.1 ip daddr {ip.ip} masquerade '
                         f'comment "{cid}"')
    return lines


def _nft_table(family: int) -> Optional[list[dict[str, Any]]]:
    return runner.nft_list("table", _nft_family(family), NFT_TABLE)


def nft_forward(spec: PortMapSpec, ips: list[IPInterface]) -> None:
    """One transaction for both families; the rules' handles are recorded (:mod:`.handles`) for the DEL."""
    def script(stale: list[handles.RuleRef], declare: bool) -> str:
        lines: list[str] = []
        for ip in ips:
            fam = _nft_family(ip.version)
            lines += nft_forward_lines(spec, ip, [(c, h) for f, t, c, h in stale if f == fam and t == NFT_TABLE],
                                       declare)
        return "\n".join(lines) + "\n"

    def listed() -> list[handles.RuleRef]:
        return [(_nft_family(ip.version), NFT_TABLE, chain, handle) for ip in ips
                for chain, handle in nft_owned_handles(_nft_table(ip.version), spec.container_id)]

    entry = [(_nft_family(ip.version), NFT_TABLE, chain) for ip in ips for chain in NFT_ENTRY_CHAINS]
    handles.add(f"set up nftables port forwarding for {spec.container_id}", ("portmap", spec.container_id),
                script, listed, NFT_OWNED_CHAINS, spec.container_id, entry)


def nft_delete_lines(family: int, handles: list[tuple[str, int]]) -> list[str]:
    return [f"delete rule {_nft_family(family)} {NFT_TABLE} {chain} handle {h}" for chain, h in handles]


def nft_unforward(container_id: str) -> None:
    """Both families, one transaction: by the handles the ADD recorded, else by listing both tables (a family
    whose table does not exist costs no exec; on an iptables node nothing is executed at all)."""
    def build() -> Optional[str]:
        lines = [line for fam in (4, 6)
                 for line in nft_delete_lines(fam, nft_owned_handles(_nft_table(fam), container_id))]
        return "\n".join(lines) + "\n" if lines else None

    handles.delete(f"remove nftables port forwarding of {container_id}", ("portmap", container_id), build)


def nft_check(spec: PortMapSpec, ips: list[IPInterface]) -> None:
    """CHECK as upstream: enough rules commented with the container ID in each chain."""
    for ip in ips:
        listing = _nft_table(ip.version) or []
        found: dict[str, int] = {}
        for chain, _ in nft_owned_handles(listing, spec.container_id):
            found[chain] = found.get(chain, 0) + 1
        want_dnat = len(spec.mappings_for(ip.version))
        want_masq = (2 if ip.version == 4 and not spec.masq_all else 1) if spec.snat else 0
        if found.get("hostports", 0) + found.get("hostip_hostports", 0) < want_dnat:
            raise runner.NetfilterError(f'missing hostport rules in "hostports" chain ({_nft_family(ip.version)})')
        if found.get(NFT_MASQ_CHAIN, 0) < want_masq:
            raise runner.NetfilterError(f'missing hostport rules in "{NFT_MASQ_CHAIN}" chain '
                                        f"({_nft_family(ip.version)})")


# ---------------------------------------------------------------------------------------------- conntrack

def flush_udp_conntrack(mappings: list[PortMapping], family: int) -> None:
    """Delete UDP conntrack entries to the mapped host ports, so stale flows do not blackhole new traffic.

    Failures are only logged, as upstream does (the rules are in place either way).
    """
    for m in mappings:
        if m.protocol.lower() != "udp":
            continue
        argv = ["conntrack", "-D", "-f", "ipv4" if family == 4 else "ipv6", "-p", "udp",
                "--orig-port-dst", str(m.host_port)]
        try:
            proc = spawn.run(argv)
        except OSError as exc:
            log.warning("conntrack not available, UDP entries for port %d kept: %s", m.host_port, exc)
            return
        # Exit status 1 with "0 flow entries" just means there was nothing to delete.
        if proc.returncode not in (0, 1):
            log.warning("failed to flush UDP conntrack for port %d: %s", m.host_port, proc.error_text())
