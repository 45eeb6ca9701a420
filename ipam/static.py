"""static IPAM: the addresses, routes and DNS that the config or the runtime names, nothing allocated, nothing kept.

Drop-in for upstream's ``static``: the same keys under ``ipam`` (``addresses: [{address, gateway}]``, ``routes``,
``dns``), the same sources of addresses (config ``addresses`` plus CNI_ARGS ``IP=``, replaced by
``args.cni.ips``, then by runtimeConfig ``ips``), the same result (addresses keep their host bits; no
``interface`` index), the same messages for malformed addresses.
Beyond upstream: CNI_ARGS ``GATEWAY=`` sets the gateway of every address of its subnet, whatever its source
(upstream's reaches only CNI_ARGS addresses, so it is ignored for configured ones); an address of ``args.cni`` or
runtimeConfig ``ips`` keeps the gateway configured for its subnet (upstream's drops every gateway, so ptp
cannot use them); CHECK wants every address in
``prevResult`` (upstream's passes when one is missing); unknown CNI_ARGS keys are ignored, as by every plugin of
the suite (each plugin of a chain sees every other's).
"""

from __future__ import annotations

import ipaddress
import sys

from cni_common.config import get_key
from cni_common.errors import CNIError, ErrorCode, check_failed, invalid_config
from cni_common.record import record
from cni_common.skel import CmdArgs, CNIFuncs, plugin_main
from cni_common.types import DNS, IPAddress, IPConfig, IPInterface, Result, Route
from cni_common.version import about_line

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~4 ms per plugin process)
if TYPE_CHECKING:
    from typing import Any, Mapping

# ---------------------------------------------------------------------------------------------------- config


@record
class StaticConf:
    """What ADD returns: the addresses (with their gateways), routes and DNS, every source applied."""

    ips: list[IPConfig]
    routes: list[Route]
    dns: DNS


def _cidr(text: Any, field: str, template: str) -> IPInterface:
    """``10.10.0.1/24`` as an address with its prefix (host bits kept); a prefix is required."""
    if not isinstance(text, str) or "/" not in text:
        raise invalid_config(template.format(text if isinstance(text, str) else repr(text)), f"in {field}")
    try:
        return ipaddress.ip_interface(text.strip())
    except ValueError as exc:
        raise invalid_config(template.format(text), f"in {field}: {exc}") from exc


def _ip(text: Any, template: str) -> IPAddress:
    if not isinstance(text, str):
        raise invalid_config(template.format(repr(text)))
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError as exc:
        raise invalid_config(template.format(text)) from exc


def _list(block: Mapping[str, Any], key: str, where: str) -> list[Any] | None:
    """``block[key]`` as a list, None when absent or null."""
    value = get_key(block, key)
    if value is not None and not isinstance(value, list):
        raise invalid_config(f"invalid config: {where}{key} must be a list", f"got {value!r}")
    return value


def _configured_ips(ipam: Mapping[str, Any]) -> list[IPConfig]:
    out = []
    for entry in _list(ipam, "addresses", "ipam.") or []:
        if not isinstance(entry, dict):
            raise invalid_config(f"invalid config: ipam.addresses entry must be an object, got {entry!r}")
        address = _cidr(get_key(entry, "address"), "ipam.addresses",
                        "the 'address' field is expected to be in CIDR notation, got: '{}'")
        gateway = get_key(entry, "gateway")
        out.append(IPConfig(address=address, gateway=_ip(gateway, "invalid IP address: {} (ipam.addresses gateway)")
                            if gateway not in (None, "") else None))
    return out


def _runtime_ips(block: Mapping[str, Any], where: str) -> list[IPConfig] | None:
    """``ips`` of ``args.cni`` or ``runtimeConfig``: when present, they replace every other address."""
    values = _list(block, "ips", where)
    if values is None:
        return None
    return [IPConfig(address=_cidr(v, f"{where}ips", "an entry in the 'ips' field is NOT in CIDR notation, "
                                   "got: '{}'")) for v in values]


def load_conf(conf: dict[str, Any], cni_args: Mapping[str, str], cni_version: str) -> StaticConf:
    """Every source of addresses, in upstream's order (later replaces earlier), then CNI_ARGS ``GATEWAY``."""
    from cni_common import config
    from cni_common.alloc.config import ipam_section, parse_routes

    ipam = ipam_section(conf)
    ips = _configured_ips(ipam)
    ips += [IPConfig(address=_cidr(t, "CNI_ARGS IP", "the 'ip' field is expected to be in CIDR notation, got: '{}'"))
            for t in cni_args.get("IP", "").split(",") if t.strip()]
    configured = ips
    for where, block in (("args.cni.", config.args_cni(conf)), ("runtimeConfig.", config.runtime_config(conf))):
        replacing = _runtime_ips(block, where)
        if replacing is not None:
            ips = replacing
    for ip in ips:
        if ip.gateway is None:  # a replacing address keeps the gateway configured for its subnet
            ip.gateway = next((c.gateway for c in configured if c.gateway is not None
                               and c.address.network == ip.address.network), None)
    gateways = [_ip(t, "invalid gateway address: {} (CNI_ARGS GATEWAY)")
                for t in cni_args.get("GATEWAY", "").split(",") if t.strip()]
    for ip in ips:
        ip.gateway = next((gw for gw in gateways if gw in ip.address.network), ip.gateway)
    if cni_version in ("0.1.0", "0.2.0", ""):
        for family in (4, 6):
            if sum(1 for ip in ips if ip.address.version == family) > 1:
                raise invalid_config(f"CNI version {cni_version} does not support more than 1 address per family")
    try:
        dns = DNS.from_dict(get_key(ipam, "dns"))
    except CNIError as exc:
        raise invalid_config("invalid config: ipam.dns", exc.msg) from exc
    return StaticConf(ips=ips, routes=parse_routes(get_key(ipam, "routes")), dns=dns)


# ---------------------------------------------------------------------------------------------------- verbs


def cmd_add(args: CmdArgs) -> Result:
    conf = load_conf(args.conf, args.cni_args(), args.cni_version)
    return Result(ips=conf.ips, routes=conf.routes, dns=conf.dns, cni_version=args.cni_version)


def cmd_del(args: CmdArgs) -> None:
    """Nothing was allocated: nothing to release (a config that no longer parses does not block the DEL)."""


def cmd_check(args: CmdArgs) -> None:
    """Every address of the config must be in ``prevResult``, with the configured gateway when there is one."""
    conf = load_conf(args.conf, args.cni_args(), args.cni_version)
    prev_raw = args.conf.get("prevResult")
    if not prev_raw:
        raise CNIError(ErrorCode.INVALID_CONFIG, "Required prevResult missing")
    prev = Result.from_dict(prev_raw, args.cni_version)
    for want in conf.ips:
        found = next((ip for ip in prev.ips if ip.address == want.address), None)
        if found is None or (want.gateway is not None and found.gateway != want.gateway):
            raise check_failed(f"static: Failed to match addr {want.address.ip} on interface "
                               f"{args.ifname}")


def main(**streams: Any) -> int:
    """Run static; ``streams`` (environ, stdin, stdout, stderr) let a plugin of the same build run it in-process
    as its delegate (:mod:`cni_common.invoke`)."""
    return plugin_main(CNIFuncs(add=cmd_add, delete=cmd_del, check=cmd_check), about=about_line("static"),
                       **streams)


if __name__ == "__main__":
    sys.exit(main())
