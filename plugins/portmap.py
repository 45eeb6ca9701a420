"""The portmap plugin (chained only): forward host ports to the container, as upstream's plugins/meta/portmap.

Config (upstream keys and validation): ``snat`` (default true), ``masqAll``, ``markMasqBit`` (0..31, default
13), ``externalSetMarkChain``, ``conditionsV4``/``conditionsV6``, ``backend``; mappings come from
``runtimeConfig.portMappings``, whose keys are matched case-insensitively (containerd sends ``HostPort``...).

Beyond upstream: DEL removes this container's rules even without portMappings, UDP conntrack is flushed on
DEL as well as ADD, every call is one netfilter transaction per family, and GC is implemented (iptables).
All netfilter work happens in the namespace the plugin runs in, the host's, as with every CNI plugin.
"""

from __future__ import annotations

import ipaddress
import sys

from cni_common import config as cfg
from cni_common.errors import CNIError, ErrorCode, invalid_config
from cni_common.log import get_logger
from cni_common.record import record
from cni_common.skel import CmdArgs, CNIFuncs, plugin_main
from cni_common.types import Result
from cni_common.version import about_line

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~4 ms per plugin process)
if TYPE_CHECKING:
    from typing import Any, Optional

log = get_logger(__name__)

DEFAULT_MARK_BIT = 13
IPTABLES, NFTABLES = "iptables", "nftables"


@record
class PortMapConf:
    """The parsed plugin config; ``spec`` is what the netfilter layer needs, ``backend`` its name ("": the
    default choice, see :func:`choose_backend`)."""

    spec: Any  # cni_common.netfilter.PortMapSpec (imported lazily: netfilter is not on the VERSION path)
    backend: str
    prev_result: Optional[Result]
    ips: list[Any]  # the container's first IPv4 and first IPv6 interface address, when present


def _conditions(conf: dict[str, Any], key: str) -> list[str]:
    items = cfg.get_list(conf, key)
    if not all(isinstance(i, str) for i in items):
        raise invalid_config(f"invalid config: {key} must be a list of strings")
    return items


def conditions_backend(conditions: list[str]) -> str:
    """Which syntax a condition list uses: iptables tokens start with '-' or '!', anything else is nft."""
    if not conditions or not conditions[0]:
        return ""
    return IPTABLES if conditions[0][0] in "-!" else NFTABLES


def choose_backend(conf: dict[str, Any], cond_v4: list[str], cond_v6: list[str],
                   external_chain: Optional[str]) -> str:
    """Upstream's validateBackend: explicit choice, else nft-style conditions, else iptables unless only nft.

    Returns "" for that last case: the default is then taken by ``select_backend(None)`` when rules are
    written (it needs no probe on a host with iptables), and the options are validated against the name it gives.
    """
    options: dict[str, list[str]] = {IPTABLES: [], NFTABLES: []}
    if external_chain is not None:
        options[IPTABLES].append("externalSetMarkChain")
    for key, conds in (("conditionsV4", cond_v4), ("conditionsV6", cond_v6)):
        kind = conditions_backend(conds)
        if kind:
            options[kind].append(key)
    backend = cfg.optional_str(conf, "backend")
    default = backend is None and not (options[NFTABLES] and not options[IPTABLES])
    if backend is None:
        if options[NFTABLES] and not options[IPTABLES]:
            backend = NFTABLES
        else:
            from cni_common.netfilter import select_backend

            backend = select_backend(None).name
    if backend not in (IPTABLES, NFTABLES):
        raise invalid_config(f'unrecognized backend "{backend}"')
    wrong = NFTABLES if backend == IPTABLES else IPTABLES
    if options[wrong]:
        raise invalid_config(f"{backend} backend was requested but configuration contains {wrong}-specific options "
                             f"[{' '.join(options[wrong])}]")
    return "" if default else backend


def parse_mappings(conf: dict[str, Any]) -> list[Any]:
    """runtimeConfig.portMappings, keys case-insensitive; ports must be > 0 (upstream has no upper bound)."""
    from cni_common.netfilter import PortMapping

    out = []
    for i, entry in enumerate(cfg.get_list(cfg.runtime_config(conf), "portMappings", where="runtimeConfig")):
        if not isinstance(entry, dict):
            raise invalid_config("invalid config: runtimeConfig.portMappings entries must be objects")
        where = f"runtimeConfig.portMappings[{i}]"
        container_port = cfg.get_int(entry, "containerPort", 0, where)
        host_port = cfg.get_int(entry, "hostPort", 0, where)
        # upstream's messages, with the key they are about
        if container_port <= 0:
            raise invalid_config(f"Invalid container port number: {container_port} ({where}.containerPort)")
        if host_port <= 0:
            raise invalid_config(f"Invalid host port number: {host_port} ({where}.hostPort)")
        host_ip = cfg.get_str(entry, "hostIP", "", where)
        if host_ip:
            try:
                ipaddress.ip_address(host_ip)
            except ValueError as exc:
                raise invalid_config(f"Invalid host IP: {host_ip!r} ({where}.hostIP)") from exc
        protocol = (cfg.get_str(entry, "protocol", "", where) or "tcp").lower()
        out.append(PortMapping(host_port, container_port, protocol, host_ip))
    return out


def container_ips(result: Result, ifname: str) -> list[Any]:
    """The first IPv4 and first IPv6 address on the sandbox interface ``ifname`` (or with no interface index)."""
    chosen: dict[int, Any] = {}
    for ip in result.ips:
        version = ip.address.version
        if version in chosen:
            continue
        idx = ip.interface
        if idx is not None and 0 <= idx < len(result.interfaces):
            iface = result.interfaces[idx]
            if iface.name != ifname or not iface.sandbox:
                continue
        chosen[version] = ip.address
    return [chosen[v] for v in (4, 6) if v in chosen]


def parse_conf(args: CmdArgs) -> PortMapConf:
    """Validate the config in upstream's order and with upstream's messages."""
    from cni_common.netfilter import PortMapSpec

    conf = args.conf
    cfg.check_netconf_types(conf)
    prev_raw = cfg.get_key(conf, "prevResult")
    prev = Result.from_dict(prev_raw, args.cni_version) if prev_raw else None
    snat = cfg.get_bool(conf, "snat", True)
    mark_bit = cfg.get_typed(conf, "markMasqBit", int, None)
    external_chain = cfg.optional_str(conf, "externalSetMarkChain")
    if mark_bit is not None and external_chain is not None:
        raise invalid_config("Cannot specify externalSetMarkChain and markMasqBit")
    mark_bit = DEFAULT_MARK_BIT if mark_bit is None else mark_bit
    if not 0 <= mark_bit <= 31:
        raise invalid_config(f"MasqMarkBit must be between 0 and 31 (markMasqBit: {mark_bit})")  # upstream's, + the key
    cond_v4, cond_v6 = _conditions(conf, "conditionsV4"), _conditions(conf, "conditionsV6")
    backend = choose_backend(conf, cond_v4, cond_v6, external_chain)
    spec = PortMapSpec(network=args.network_name, container_id=args.container_id, mappings=parse_mappings(conf),
                       snat=snat, masq_all=cfg.get_bool(conf, "masqAll"), mark_bit=mark_bit,
                       external_set_mark_chain=external_chain, conditions_v4=cond_v4, conditions_v6=cond_v6)
    ips = container_ips(prev, args.ifname) if prev else []
    return PortMapConf(spec=spec, backend=backend, prev_result=prev, ips=ips)


def _parse_for(args: CmdArgs) -> PortMapConf:
    try:
        return parse_conf(args)
    except CNIError as exc:
        raise CNIError(exc.code, f"failed to parse config: {exc.msg}", exc.details) from exc


def enable_route_localnet(container_ip: Any) -> None:
    """Let 127.0.0.1-sourced (localhost) traffic be routed to the container: route_localnet=1 on the host
    interface that routes to it. Main-table longest-prefix match, like the kernel's answer without rules."""
    from cni_common import sysctl

    ifname = route_iface(int(container_ip.ip), _read_text(ROUTES_V4))
    if ifname:
        sysctl.write(1, *sysctl.iface("ipv4", ifname, "route_localnet"))


#: The main routing table, IPv4 (route_localnet is an IPv4 setting): read as text instead of asking rtnetlink,
#: which would load netlink message classes (and pyroute2) into every portmap call for one lookup.
ROUTES_V4 = "/proc/net/route"
_RTF_UP = 0x1


def _read_text(path: str) -> str:
    with open(path, encoding="ascii") as f:
        return f.read()


def route_iface(addr: int, table: str) -> str:
    """The interface of the longest-prefix route for ``addr`` (an IPv4 address as int) in a
    ``/proc/net/route`` listing, or "" if none; routes without an interface (``*``) are skipped."""
    best, best_len = "", -1
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8 or fields[0] == "*" or not int(fields[3], 16) & _RTF_UP:
            continue
        # Addresses are the kernel's big-endian u32 printed in host byte order.
        dst = int.from_bytes(bytes.fromhex(fields[1]), sys.byteorder)
        mask = int.from_bytes(bytes.fromhex(fields[7]), sys.byteorder)
        prefix_len = bin(mask).count("1")
        if addr & mask == dst and prefix_len > best_len:
            best, best_len = fields[0], prefix_len
    return best


def cmd_add(args: CmdArgs) -> Result:
    from cni_common import netfilter

    pm = _parse_for(args)
    if pm.prev_result is None:
        raise CNIError(ErrorCode.INVALID_CONFIG, "must be called as chained plugin (the config has no prevResult)")
    if not pm.spec.mappings or not pm.ips:
        return pm.prev_result
    netfilter.forward_ports(netfilter.select_backend(pm.backend or None), pm.spec, pm.ips)
    for ip in pm.ips:
        netfilter.flush_udp_conntrack(pm.spec.mappings, ip.version)
    v4 = next((ip for ip in pm.ips if ip.version == 4), None)
    if pm.spec.snat and v4 is not None:
        try:
            enable_route_localnet(v4)
        except CNIError as exc:
            raise CNIError(exc.code, f"unable to enable route_localnet: {exc.msg}", exc.details) from exc
    return pm.prev_result


def cmd_del(args: CmdArgs) -> None:
    """Remove this container's rules from both layouts, with or without portMappings; flush UDP conntrack."""
    from cni_common import netfilter

    pm = _parse_for(args)
    netfilter.unforward_ports(pm.spec.network, pm.spec.container_id)
    for family in (4, 6):
        netfilter.flush_udp_conntrack(pm.spec.mappings, family)


def cmd_check(args: CmdArgs) -> None:
    from cni_common import netfilter

    pm = parse_conf(args)
    if pm.prev_result is None:
        raise CNIError(ErrorCode.INVALID_CONFIG, "Required prevResult missing")
    if not pm.spec.mappings or not pm.ips:
        return
    netfilter.check_ports(netfilter.select_backend(pm.backend or None), pm.spec, pm.ips)


def cmd_gc(args: CmdArgs) -> None:
    """Remove the rules of this network's containers that are not in ``cni.dev/valid-attachments``
    (nothing when the runtime sent no list at all)."""
    from cni_common import netfilter

    valid = cfg.valid_attachments(args.conf)
    if valid is not None:
        netfilter.gc_ports(args.network_name, {cid for cid, _ in valid})


def main(**streams: Any) -> int:
    """``streams`` (environ, stdin, stdout, stderr) let tests drive the plugin in-process."""
    return plugin_main(CNIFuncs(add=cmd_add, delete=cmd_del, check=cmd_check, gc=cmd_gc),
                       about=about_line("portmap"), **streams)


if __name__ == "__main__":
    sys.exit(main())
