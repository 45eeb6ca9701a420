"""The firewall plugin (chained): lets forwarded traffic of the container's addresses through the host's
firewall, as upstream's plugins/meta/firewall, and keeps bridges apart (``ingressPolicy``).

Config (upstream keys): ``backend`` (``iptables``, ``firewalld``, and ours: ``nftables``; anything else: firewalld
when it is on the system bus, else iptables), ``iptablesAdminChainName`` (``CNI-ADMIN``), ``firewalldZone``
(``trusted``), ``ingressPolicy`` (``open``, ``same-bridge``, ``isolated``). cniVersion 0.4.0 or later, as upstream.
The rules are the library's :mod:`cni_common.netfilter.firewall`; firewalld is reached over D-Bus
(:mod:`cni_common.dbus`), its zone ``addSource``/``removeSource``/``querySource`` per address.

Beyond upstream: ingressPolicy, the admin chain name and the bridge are validated before anything changes, and
a failed ADD removes the rules it added; CHECK changes nothing (upstream's creates chains) and firewalld's
CHECK honours querySource's answer; the nftables backend's rules carry the attachment, so DEL removes them
even without a prevResult and GC removes those of attachments the runtime no longer knows.
"""

from __future__ import annotations

import sys

from cni_common import config as cfg
from cni_common.errors import CNIError, PluginCode, check_failed, invalid_config
from cni_common.log import get_logger
from cni_common.record import record
from cni_common.skel import CmdArgs, CNIFuncs, plugin_main
from cni_common.types import Result
from cni_common.version import about_line

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~4 ms per plugin process)
if TYPE_CHECKING:
    from typing import Any, Optional

log = get_logger(__name__)

IPTABLES, FIREWALLD, NFTABLES = "iptables", "firewalld", "nftables"
POLICIES = ("", "open", "same-bridge", "isolated")
SUPPORTED_VERSIONS = ("0.4.0", "1.0.0", "1.1.0")
MAX_CHAIN_LEN = 28  # iptables' limit on chain names
FIREWALLD_NAME = "org.fedoraproject.FirewallD1"
FIREWALLD_PATH = "/org/fedoraproject/FirewallD1"
FIREWALLD_ZONE = "org.fedoraproject.FirewallD1.zone"


@record
class FirewallConf:
    backend: str  # as configured; "" or unknown: chosen by :func:`_choose_backend` when rules are written
    admin_chain: str
    zone: str
    ingress_policy: str
    prev_result: Optional[Result]


def parse_conf(args: CmdArgs) -> FirewallConf:
    conf = args.conf
    cfg.check_netconf_types(conf)
    admin_chain = cfg.get_str(conf, "iptablesAdminChainName") or "CNI-ADMIN"
    if len(admin_chain) > MAX_CHAIN_LEN or not admin_chain.isprintable() or " " in admin_chain:
        raise invalid_config(f"invalid iptablesAdminChainName {admin_chain!r}: an iptables chain name of at most "
                             f"{MAX_CHAIN_LEN} characters without spaces")
    policy = cfg.get_str(conf, "ingressPolicy")
    if policy not in POLICIES:
        raise invalid_config(f'unknown ingress policy: "{policy}" (ingressPolicy: want open, same-bridge or isolated)')
    prev_raw = cfg.get_key(conf, "prevResult")
    return FirewallConf(backend=cfg.get_str(conf, "backend"), admin_chain=admin_chain,
                        zone=cfg.get_str(conf, "firewalldZone") or "trusted",
                        ingress_policy="" if policy == "open" else policy,
                        prev_result=Result.from_dict(prev_raw, args.cni_version) if prev_raw else None)


def _require_prev(fc: FirewallConf) -> Result:
    if fc.prev_result is None:
        raise invalid_config("missing prevResult from earlier plugin (prevResult)")
    return fc.prev_result


def _bridge(fc: FirewallConf) -> str:
    """The bridge named by ``prevResult.interfaces[0]`` (upstream's rule), checked before anything changes."""
    prev = _require_prev(fc)
    if not prev.interfaces:
        raise invalid_config(f'interface needs to be set for ingress policy "{fc.ingress_policy}", make sure to chain '
                             f'"firewall" plugin with "bridge" (prevResult.interfaces)')
    name = prev.interfaces[0].name
    if not name:
        raise invalid_config("got empty bridge name (prevResult.interfaces[0].name)")
    if len(name) > 15 or not name.isprintable() or any(c.isspace() or c in "\"'\\/" for c in name):
        raise invalid_config(f"invalid bridge name {name!r} (prevResult.interfaces[0].name)")
    return name


def firewalld_running() -> bool:
    """Upstream's auto-detection: the system bus knows an owner of firewalld's name. No bus socket, no cost."""
    import os

    from cni_common.dbus import DBusError, SystemBus, system_bus_path

    if not os.path.exists(system_bus_path()):
        return False
    try:
        with SystemBus() as bus:
            bus.call("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "GetNameOwner",
                     FIREWALLD_NAME)
    except DBusError:
        return False
    return True


def _choose_backend(configured: str) -> str:
    """The configured backend; else upstream's choice (firewalld when running, else iptables), except that a
    node with no ``iptables`` at all but a working ``nft`` gets nftables (upstream fails there)."""
    if configured in (IPTABLES, FIREWALLD, NFTABLES):
        return configured
    if firewalld_running():
        return FIREWALLD
    from cni_common.netfilter import runner

    if not runner.on_path("iptables") and runner.supports_nftables():
        return NFTABLES
    return IPTABLES


def _sources(ips: list[Any]) -> list[str]:
    return [f"{ip.ip}/{ip.max_prefixlen}" for ip in ips]


def _firewalld(method: str, zone: str, source: str) -> object:
    from cni_common.dbus import SystemBus

    with SystemBus() as bus:
        return bus.call(FIREWALLD_NAME, FIREWALLD_PATH, FIREWALLD_ZONE, method, zone, source)


def _comment(args: CmdArgs) -> str:
    from cni_common.netfilter import firewall

    return firewall.nft_comment(args.network_name, args.container_id, args.ifname)


# ---------------------------------------------------------------------------------------------------- verbs

def _allow(backend: str, fc: FirewallConf, ips: list[Any], args: CmdArgs) -> None:
    from cni_common.dbus import DBusError
    from cni_common.netfilter import firewall

    if backend == IPTABLES:
        firewall.ipt_allow(ips, fc.admin_chain)
    elif backend == NFTABLES:
        firewall.nft_allow(ips, _comment(args))
    else:
        for source in _sources(ips):
            try:
                _firewalld("addSource", fc.zone, source)
            except DBusError as exc:
                if "ZONE_ALREADY_SET" not in exc.msg:
                    raise CNIError(PluginCode.NETFILTER_FAILURE,
                                   f"failed to add the address {source} to {fc.zone} zone: {exc.msg}") from exc


def _revoke(backend: str, fc: FirewallConf, ips: list[Any], args: CmdArgs) -> None:
    from cni_common.dbus import DBusError
    from cni_common.netfilter import firewall

    if backend == IPTABLES and ips:
        firewall.ipt_revoke(ips)
    elif backend == FIREWALLD:
        for source in _sources(ips):
            try:
                _firewalld("removeSource", fc.zone, source)
            except DBusError as exc:
                log.info("firewalld removeSource %s: %s", source, exc.msg)
    firewall.nft_revoke(_comment(args))  # also after a switch of backend; no table, no exec


def cmd_add(args: CmdArgs) -> Result:
    from cni_common.netfilter import firewall

    fc = parse_conf(args)
    prev = _require_prev(fc)
    bridge = _bridge(fc) if fc.ingress_policy else ""
    ips = [ip.address for ip in prev.ips]
    backend = _choose_backend(fc.backend)
    _allow(backend, fc, ips, args)
    if bridge:
        families: list[int] = sorted({ip.version for ip in ips})
        try:
            if backend == NFTABLES:
                firewall.nft_isolate(bridge, fc.ingress_policy)
            elif families:
                firewall.ipt_isolate(families, bridge, fc.ingress_policy)
        except CNIError:
            _revoke(backend, fc, ips, args)
            raise
    return prev


def cmd_del(args: CmdArgs) -> None:
    """Remove this container's rules; without a prevResult only the nftables ones (upstream removes nothing).
    Shared chains and isolation rules stay: other containers and bridges may use them."""
    fc = parse_conf(args)
    ips = [ip.address for ip in fc.prev_result.ips] if fc.prev_result else []
    _revoke(_choose_backend(fc.backend), fc, ips, args)


def cmd_check(args: CmdArgs) -> None:
    from cni_common.netfilter import firewall

    fc = parse_conf(args)
    ips = [ip.address for ip in _require_prev(fc).ips]
    backend = _choose_backend(fc.backend)
    if backend == IPTABLES:
        missing = firewall.ipt_check(ips, fc.admin_chain)
    elif backend == NFTABLES:
        missing = firewall.nft_check(ips, _comment(args))
    else:
        missing = [f"failed to find the address {source} in {fc.zone} zone" for source in _sources(ips)
                   if _firewalld("querySource", fc.zone, source) is not True]
    if missing:
        raise check_failed("; ".join(missing))


def cmd_gc(args: CmdArgs) -> None:
    """Remove this network's nftables rules of attachments the runtime no longer knows. The iptables rules
    name only addresses and firewalld's sources only addresses too: those are left to DEL, as upstream."""
    from cni_common.netfilter import firewall

    parse_conf(args)
    valid = cfg.valid_attachments(args.conf)
    if valid is not None:
        firewall.nft_gc(args.network_name, valid)


def main(**streams: Any) -> int:
    """``streams`` (environ, stdin, stdout, stderr) let tests drive the plugin in-process."""
    return plugin_main(CNIFuncs(add=cmd_add, delete=cmd_del, check=cmd_check, gc=cmd_gc),
                       about=about_line("firewall"), supported=SUPPORTED_VERSIONS, **streams)


if __name__ == "__main__":
    sys.exit(main())
