"""host-local's IPAM configuration: range sets, requested IPs, routes, dataDir, resolvConf.

The keys and validation rules are upstream's (plugins/ipam/host-local/backend/allocator/{config,range,
range_set}.go), with our codes: every problem is a CNIError code 7 whose message names the offending value.
Only the stdlib ``ipaddress`` is used: every operation needed (contains, overlap, int arithmetic) is there,
and netaddr would add ~36 ms of import to every ADD for nothing.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from .. import version as versions
from ..config import args_cni, get_key, runtime_config
from ..errors import CNIError, ErrorCode, invalid_config
from ..record import field, record
from ..types import DNS, IPAddress, IPNetwork, Route

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~4 ms per plugin process)
if TYPE_CHECKING:
    from typing import Any, Iterator, Optional, Sequence

DEFAULT_DATA_DIR = "/var/lib/cni/networks"


@record(frozen=True)
class Range:
    """One subnet with its inclusive allocation bounds and its gateway (never handed out)."""

    subnet: IPNetwork
    start: IPAddress
    end: IPAddress
    gateway: Optional[IPAddress]

    def contains(self, ip: IPAddress) -> bool:
        """Whether ``ip`` may be allocated from this range (inside the subnet and the bounds)."""
        return ip.version == self.start.version and int(self.start) <= int(ip) <= int(self.end)

    def overlaps(self, other: "Range") -> bool:
        return (self.start.version == other.start.version
                and int(self.start) <= int(other.end) and int(other.start) <= int(self.end))

    def size(self) -> int:
        """Number of allocatable addresses (the gateway excluded when it lies inside the bounds)."""
        count = int(self.end) - int(self.start) + 1
        return count - 1 if self.gateway is not None and self.contains(self.gateway) else count

    def __str__(self) -> str:
        return f"{self.start}-{self.end}"


@record(frozen=True)
class RangeSet:
    """Disjoint ranges of one family; one IP is allocated per range set."""

    ranges: tuple[Range, ...]

    @property
    def family(self) -> int:
        return self.ranges[0].start.version

    def range_for(self, ip: IPAddress) -> Optional[Range]:
        """The range that may allocate ``ip``, or None."""
        return next((r for r in self.ranges if r.contains(ip)), None)

    def contains(self, ip: IPAddress) -> bool:
        return self.range_for(ip) is not None

    def overlaps(self, other: "RangeSet") -> bool:
        return any(a.overlaps(b) for a in self.ranges for b in other.ranges)

    def size(self) -> int:
        return sum(r.size() for r in self.ranges)

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.ranges)


@record
class IPAMConfig:
    """Everything host-local needs for one invocation, validated."""

    name: str
    range_sets: list[RangeSet] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    data_dir: str = DEFAULT_DATA_DIR
    resolv_conf: str = ""
    requested_ips: list[IPAddress] = field(default_factory=list)
    reclaim_after_reboot: bool = True


def _parse_ip(value: Any, label: str) -> IPAddress:
    if not isinstance(value, str):
        raise invalid_config(f"invalid {label}: {value!r} is not a string")
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError as exc:
        raise invalid_config(f"invalid {label} {value!r}: not an IP address") from exc


def parse_range(raw: Any, where: str) -> Range:
    """Validate one range object and fill in upstream's defaults (start .1, end broadcast-1, gateway .1)."""
    if not isinstance(raw, Mapping):
        raise invalid_config(f"invalid {where}: expected an object, got {raw!r}")
    subnet_text = get_key(raw, "subnet")
    if not subnet_text:
        raise invalid_config(f"invalid {where}: missing subnet")
    if not isinstance(subnet_text, str):
        raise invalid_config(f"invalid {where}: subnet {subnet_text!r} is not a string")
    try:
        iface = ipaddress.ip_interface(subnet_text.strip())
    except ValueError as exc:
        raise invalid_config(f"invalid {where}: invalid CIDR address {subnet_text!r}") from exc
    if "/" not in subnet_text:
        raise invalid_config(f"invalid {where}: invalid CIDR address {subnet_text!r} (no prefix length)")
    subnet = iface.network
    if iface.ip != subnet.network_address:
        raise invalid_config(f"invalid {where}: subnet {subnet_text} has host bits set",
                             f"for a prefix length of {subnet.prefixlen} the network address is "
                             f"{subnet.network_address}")
    if subnet.prefixlen > subnet.max_prefixlen - 2:
        raise invalid_config(f"invalid {where}: network {subnet} too small to allocate from",
                             "IPv4 needs /30 or larger, IPv6 /126 or larger")
    first = subnet.network_address + 1
    last = subnet.broadcast_address - 1 if subnet.version == 4 else subnet.broadcast_address

    def bound(key: str, default: IPAddress) -> IPAddress:
        value = get_key(raw, key)
        if not value:
            return default
        ip = _parse_ip(value, f"{where} {key}")
        if ip not in subnet:
            raise invalid_config(f"invalid {where}: {key} {ip} not in network {subnet}")
        return ip

    start = bound("rangeStart", first)
    end = bound("rangeEnd", last)
    if int(start) > int(end):  # one family: both are bounds inside the same subnet
        raise invalid_config(f"invalid {where}: rangeStart {start} is after rangeEnd {end}")
    gw_raw = get_key(raw, "gateway")
    gateway = _parse_ip(gw_raw, f"{where} gateway") if gw_raw else first
    if gateway.version != subnet.version:
        raise invalid_config(f"invalid {where}: gateway {gateway} is not of the family of {subnet}")
    return Range(subnet=subnet, start=start, end=end, gateway=gateway)


def parse_range_set(raw: Any, index: int, source: str = "") -> RangeSet:
    """Validate one range set: non-empty, one family, no two ranges overlapping. ``source`` names the key it
    came from (``ipam.ranges[1]``, ``runtimeConfig.ipRanges[0]``) for the messages."""
    where = f"range set {index} ({source})" if source else f"range set {index}"
    if not isinstance(raw, list):
        raise invalid_config(f"invalid {where}: expected a list of ranges, got {raw!r}")
    if not raw:
        raise invalid_config(f"invalid {where}: empty range set")
    ranges = tuple(parse_range(r, f"{where} range {i}") for i, r in enumerate(raw))
    if len({r.start.version for r in ranges}) > 1:
        raise invalid_config(f"invalid {where}: mixed address families",
                             ", ".join(str(r.subnet) for r in ranges))
    for i, a in enumerate(ranges):
        for b in ranges[i + 1:]:
            if a.overlaps(b):
                raise invalid_config(f"invalid {where}: subnets {a} and {b} overlap")
    return RangeSet(ranges)


def _requested_ips(conf: Mapping[str, Any], cni_args: Mapping[str, str]) -> list[IPAddress]:
    """Requested IPs from CNI_ARGS ``IP=`` (comma-separated), ``args.cni.ips`` and ``runtimeConfig.ips``.

    Entries may carry a prefix length (``10.1.0.5/24``); only the address matters. Duplicates are dropped.
    """
    texts: list[tuple[str, str]] = []
    if cni_args.get("IP"):
        texts += [(t, "CNI_ARGS IP") for t in cni_args["IP"].split(",") if t.strip()]
    for source, block in (("args.cni.ips", args_cni(conf)), ("runtimeConfig.ips", runtime_config(conf))):
        values = get_key(block, "ips")
        values = [] if values is None else values  # "" or {} is a wrong type (Go refuses it), not "none"
        if not isinstance(values, list):
            raise invalid_config(f"invalid {source}: expected a list, got {values!r}")
        texts += [(v, source) for v in values]
    out: list[IPAddress] = []
    for text, source in texts:
        if not isinstance(text, str):
            raise invalid_config(f"invalid IP {text!r} in {source}")
        ip = _parse_ip(text.strip().split("/", 1)[0], f"IP in {source}")
        if ip not in out:
            out.append(ip)
    return out


def parse_routes(raw: Any) -> list[Route]:
    """``ipam.routes``: a list of routes (1.1.0 fields kept), each refused naming the entry (code 7)."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise invalid_config(f"invalid ipam routes: expected a list, got {raw!r}")
    routes = []
    for entry in raw:
        try:
            routes.append(Route.from_dict(entry))
        except CNIError as exc:
            raise invalid_config(f"invalid ipam route {entry!r}", exc.msg) from exc
    return routes


def _string(ipam: Mapping[str, Any], key: str, default: str) -> str:
    value = get_key(ipam, key)
    if value is None or value == "":
        return default
    if not isinstance(value, str):
        raise invalid_config(f"invalid ipam {key}: {value!r} is not a string")
    return value


def ipam_section(conf: Mapping[str, Any]) -> Mapping[str, Any]:
    """The ``ipam`` object; host-local cannot run without one."""
    ipam = get_key(conf, "ipam")
    if not isinstance(ipam, Mapping):
        raise invalid_config("IPAM config missing 'ipam' key" if ipam is None else f"invalid ipam: {ipam!r}")
    for key in ("type", "name"):  # decoded by Go's host-local in every verb: a number there fails it too
        value = get_key(ipam, key)
        if value is not None and not isinstance(value, str):
            raise invalid_config(f"invalid ipam {key}: {value!r} is not a string")
    return ipam


def data_dir(conf: Mapping[str, Any]) -> str:
    """Just ``ipam.dataDir``: what DEL and GC need, so they work even when the ranges no longer validate."""
    return _string(ipam_section(conf), "dataDir", DEFAULT_DATA_DIR)


def store_settings(conf: Mapping[str, Any]) -> tuple[str, bool]:
    """``ipam.dataDir`` and ``ipam.reclaimAfterReboot``: all that DEL and GC read, so they work even when the
    ranges no longer validate. The ``ipam`` section is validated once for both (it was twice, one function per
    key), the keys checked in the same order."""
    ipam = ipam_section(conf)
    return _string(ipam, "dataDir", DEFAULT_DATA_DIR), _reclaim_after_reboot(ipam)


def _reclaim_after_reboot(ipam: Mapping[str, Any]) -> bool:
    """``ipam.reclaimAfterReboot`` (ours; default true): release the reservations of an earlier boot on the
    first call after a reboot (see docs/host-local.md). Go's host-local ignores the key."""
    value = get_key(ipam, "reclaimAfterReboot")
    if value is None:
        return True
    if not isinstance(value, bool):
        raise invalid_config(f"invalid ipam reclaimAfterReboot: {value!r} is not a boolean")
    return value


def _raw_range_sets(conf: Mapping[str, Any], ipam: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    """runtimeConfig.ipRanges first, then the legacy top-level range, then ``ranges``, as upstream orders them;
    each with the key it came from."""
    runtime_ranges = get_key(runtime_config(conf), "ipRanges")
    runtime_ranges = [] if runtime_ranges is None else runtime_ranges
    if not isinstance(runtime_ranges, list):
        raise invalid_config(f"invalid runtimeConfig.ipRanges: expected a list, got {runtime_ranges!r}")
    yield from ((f"runtimeConfig.ipRanges[{i}]", raw) for i, raw in enumerate(runtime_ranges))
    if get_key(ipam, "subnet"):
        yield "ipam.subnet", [{k: get_key(ipam, k) for k in ("subnet", "rangeStart", "rangeEnd", "gateway")}]
    ranges = get_key(ipam, "ranges")
    ranges = [] if ranges is None else ranges
    if not isinstance(ranges, list):
        raise invalid_config(f"invalid ipam ranges: expected a list of range sets, got {ranges!r}")
    yield from ((f"ipam.ranges[{i}]", raw) for i, raw in enumerate(ranges))


def check_version_limits(range_sets: Sequence[RangeSet], cni_version: str) -> None:
    """Results older than 0.3.0 carry one ``ip4`` and one ``ip6``: refuse more range sets than that."""
    if versions.at_least(cni_version, "0.3.0"):
        return
    for fam in (4, 6):
        if sum(1 for s in range_sets if s.family == fam) > 1:
            raise invalid_config(f"CNI version {cni_version} does not support more than 1 address per family",
                                 f"{sum(1 for s in range_sets if s.family == fam)} IPv{fam} range sets configured")


def load(conf: Mapping[str, Any], cni_args: Mapping[str, str], cni_version: str) -> IPAMConfig:
    """Parse and validate the full IPAM config of an ADD/CHECK/STATUS request."""
    ipam = ipam_section(conf)
    range_sets = [parse_range_set(raw, i, source) for i, (source, raw) in enumerate(_raw_range_sets(conf, ipam))]
    if not range_sets:
        raise invalid_config("no IP ranges specified", "set ipam.ranges (or the legacy ipam.subnet)")
    for i, a in enumerate(range_sets):
        for j in range(i + 1, len(range_sets)):
            if a.overlaps(range_sets[j]):
                raise invalid_config(f"range set {i} ({a}) overlaps with range set {j} ({range_sets[j]})")
    check_version_limits(range_sets, cni_version)
    return IPAMConfig(name=str(conf.get("name", "")), range_sets=range_sets,
                      routes=parse_routes(get_key(ipam, "routes")),
                      data_dir=_string(ipam, "dataDir", DEFAULT_DATA_DIR),
                      resolv_conf=_string(ipam, "resolvConf", ""),
                      requested_ips=_requested_ips(conf, cni_args), reclaim_after_reboot=_reclaim_after_reboot(ipam))


def parse_resolv_conf(path: str) -> DNS:
    """The nameserver/domain/search/options lines of a resolv.conf, as upstream's parseResolvConf reads them."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            lines = fh.readlines()
    except OSError as exc:
        raise CNIError(ErrorCode.IO_FAILURE, f"cannot read resolvConf {path!r}", str(exc)) from exc
    dns = DNS()
    for line in lines:
        words = line.split()
        if not words or words[0].startswith(("#", ";")):
            continue
        key, rest = words[0], words[1:]
        if key == "nameserver" and rest:
            dns.nameservers.append(rest[0])
        elif key == "domain" and rest:
            dns.domain = rest[0]
        elif key == "search":
            dns.search = list(rest)
        elif key == "options":
            dns.options.extend(rest)
    return dns
