"""The CNI result model, and the only module that knows the older result shapes.

Plugins build the newest shape (1.1.0) and convert once, at the edge (:mod:`cni_common.skel` prints
``result.to_dict(request_version)``). Results and ``prevResult`` of any supported version are read with
:meth:`Result.from_dict`. The conversion rules are those of the Go library (``pkg/types/{020,040,100}``):

- within 0.3.0/0.3.1/0.4.0, and between 1.0.0 and 1.1.0: relabel only;
- 0.3.x/0.4.0 -> 1.x: drop ``ips[].version``;
- 1.x -> 0.3.x/0.4.0: derive ``ips[].version`` from the address, drop the interface fields 1.1 added;
- anything -> 0.1.0/0.2.0: the first IPv4 and first IPv6 only (``ip4``/``ip6``), no interfaces, and an error
  when there is no IP at all.
"""

from __future__ import annotations

import ipaddress

from . import version as versions
from .errors import CNIError, ErrorCode
from .record import field, record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~4 ms per plugin process)
if TYPE_CHECKING:
    from typing import Any, Optional

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_ROUTE_EXTRAS_V11 = ("mtu", "advmss", "priority", "table", "scope")


def subnet_of(inner: IPNetwork, outer: IPNetwork) -> bool:
    """``inner.subnet_of(outer)`` for networks of either family, False across families (where ``ipaddress``
    raises TypeError). The ``isinstance`` tests are what lets a type checker see that both are one family."""
    if isinstance(inner, ipaddress.IPv4Network) and isinstance(outer, ipaddress.IPv4Network):
        return inner.subnet_of(outer)
    if isinstance(inner, ipaddress.IPv6Network) and isinstance(outer, ipaddress.IPv6Network):
        return inner.subnet_of(outer)
    return False


def _decode_error(what: str, value: Any, exc: Exception | None = None) -> CNIError:
    detail = str(exc) if exc else ""
    return CNIError(ErrorCode.DECODING_FAILURE, f"invalid {what} {value!r} in result", detail)


def parse_interface_address(value: Any, what: str = "address") -> IPInterface:
    """Parse ``"10.1.0.5/16"`` keeping the host bits (a CNI address is an address plus its prefix)."""
    if not isinstance(value, str) or "/" not in value:
        raise _decode_error(what, value)
    try:
        return ipaddress.ip_interface(value)
    except ValueError as exc:
        raise _decode_error(what, value, exc) from exc


def parse_ip(value: Any, what: str = "gateway") -> IPAddress:
    """Parse a bare IP address."""
    if not isinstance(value, str):
        raise _decode_error(what, value)
    try:
        return ipaddress.ip_address(value)
    except ValueError as exc:
        raise _decode_error(what, value, exc) from exc


def parse_network(value: Any, what: str = "route dst") -> IPNetwork:
    """Parse a route destination; host bits are tolerated and cleared, as Go's ParseCIDR does."""
    if not isinstance(value, str):
        raise _decode_error(what, value)
    try:
        return ipaddress.ip_network(value, strict=False)
    except ValueError as exc:
        raise _decode_error(what, value, exc) from exc


@record
class Interface:
    """One interface the attachment created (host side when ``sandbox`` is empty)."""

    name: str
    mac: str = ""
    sandbox: str = ""
    mtu: int = 0
    socket_path: str = ""
    pci_id: str = ""

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Interface":
        if not isinstance(d, dict):
            raise _decode_error("interface", d)
        return cls(name=str(d.get("name", "")), mac=str(d.get("mac", "") or ""),
                   sandbox=str(d.get("sandbox", "") or ""), mtu=int(d.get("mtu", 0) or 0),
                   socket_path=str(d.get("socketPath", "") or ""), pci_id=str(d.get("pciID", "") or ""))

    def to_dict(self, fam: str) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.mac:
            out["mac"] = self.mac
        if fam == "100":
            if self.mtu:
                out["mtu"] = self.mtu
        if self.sandbox:
            out["sandbox"] = self.sandbox
        if fam == "100":
            if self.socket_path:
                out["socketPath"] = self.socket_path
            if self.pci_id:
                out["pciID"] = self.pci_id
        return out


@record
class IPConfig:
    """An address given to the container; ``interface`` indexes :attr:`Result.interfaces`."""

    address: IPInterface
    gateway: Optional[IPAddress] = None
    interface: Optional[int] = None

    @property
    def family(self) -> int:
        return self.address.version

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "IPConfig":
        if not isinstance(d, dict):
            raise _decode_error("ips entry", d)
        gw = d.get("gateway")
        iface = d.get("interface")
        if iface is not None and (not isinstance(iface, int) or isinstance(iface, bool) or iface < 0):
            raise _decode_error("ips[].interface", iface)
        return cls(address=parse_interface_address(d.get("address")),
                   gateway=parse_ip(gw) if gw else None, interface=iface)

    def to_dict(self, fam: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.interface is not None:
            out["interface"] = self.interface
        if fam == "040":
            out["version"] = str(self.address.version)
        out["address"] = str(self.address)
        if self.gateway is not None:
            out["gateway"] = str(self.gateway)
        return out


@record
class Route:
    """A route for the container; 1.1.0 added the optional fields after ``gw``."""

    dst: IPNetwork
    gw: Optional[IPAddress] = None
    mtu: Optional[int] = None
    advmss: Optional[int] = None
    priority: Optional[int] = None
    table: Optional[int] = None
    scope: Optional[int] = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Route":
        if not isinstance(d, dict):
            raise _decode_error("route", d)
        gw = d.get("gw")
        extras: dict[str, Optional[int]] = {}
        for key in _ROUTE_EXTRAS_V11:
            value = d.get(key)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise _decode_error(f"route {key}", value)
            extras[key] = value
        return cls(dst=parse_network(d.get("dst")), gw=parse_ip(gw, "route gw") if gw else None, **extras)

    def to_dict(self, fam: str = "100") -> dict[str, Any]:
        out: dict[str, Any] = {"dst": str(self.dst)}
        if self.gw is not None:
            out["gw"] = str(self.gw)
        if fam != "020":
            for key in _ROUTE_EXTRAS_V11:
                value = getattr(self, key)
                if value is not None and (value != 0 or key in ("table", "scope")):
                    out[key] = value
        return out


@record
class DNS:
    """Resolver settings; every field is optional and an empty object is common."""

    nameservers: list[str] = field(default_factory=list)
    domain: str = ""
    search: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)

    @classmethod
    def from_dict(cls, d: Any) -> "DNS":
        if d is None:
            return cls()
        if not isinstance(d, dict):
            raise _decode_error("dns", d)
        return cls(nameservers=_str_list(d.get("nameservers"), "dns.nameservers"),
                   domain=str(d.get("domain", "") or ""),
                   search=_str_list(d.get("search"), "dns.search"),
                   options=_str_list(d.get("options"), "dns.options"))

    def is_empty(self) -> bool:
        return not (self.nameservers or self.domain or self.search or self.options)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.nameservers:
            out["nameservers"] = list(self.nameservers)
        if self.domain:
            out["domain"] = self.domain
        if self.search:
            out["search"] = list(self.search)
        if self.options:
            out["options"] = list(self.options)
        return out


def _str_list(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _decode_error(what, value)
    return list(value)


@record
class Result:
    """An ADD result in the 1.1.0 shape; ``cni_version`` records the version it was read as (informational)."""

    interfaces: list[Interface] = field(default_factory=list)
    ips: list[IPConfig] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    dns: DNS = field(default_factory=DNS)
    cni_version: str = versions.LATEST

    @classmethod
    def from_dict(cls, d: Any, default_version: str) -> "Result":
        """Read a result of any supported version; a missing ``cniVersion`` means ``default_version``.

        Go plugins read prevResult with the config's version when the result carries none (cni #862), and
        libcni does the same for a plugin's output, so the caller passes the config's version here.
        """
        if not isinstance(d, dict):
            raise CNIError(ErrorCode.DECODING_FAILURE, "result is not a JSON object", repr(d)[:200])
        ver = d.get("cniVersion") or default_version
        if not isinstance(ver, str):
            raise _decode_error("cniVersion", ver)
        fam = versions.family(ver)
        if fam == "020":
            return cls._from_legacy(d, ver)
        ifaces = d.get("interfaces") or []
        ips = d.get("ips") or []
        routes = d.get("routes") or []
        for name, value in (("interfaces", ifaces), ("ips", ips), ("routes", routes)):
            if not isinstance(value, list):
                raise _decode_error(name, value)
        return cls(interfaces=[Interface.from_dict(i) for i in ifaces], ips=[IPConfig.from_dict(i) for i in ips],
                   routes=[Route.from_dict(r) for r in routes], dns=DNS.from_dict(d.get("dns")), cni_version=ver)

    @classmethod
    def _from_legacy(cls, d: dict[str, Any], ver: str) -> "Result":
        """Read the 0.1.0/0.2.0 ``ip4``/``ip6`` shape: one IP per family, routes kept per family."""
        result = cls(dns=DNS.from_dict(d.get("dns")), cni_version=ver)
        for key in ("ip4", "ip6"):
            block = d.get(key)
            if block is None:
                continue
            if not isinstance(block, dict):
                raise _decode_error(key, block)
            gw = block.get("gateway")
            result.ips.append(IPConfig(address=parse_interface_address(block.get("ip"), f"{key}.ip"),
                                       gateway=parse_ip(gw) if gw else None))
            for route in block.get("routes") or []:
                result.routes.append(Route.from_dict(route))
        return result

    def container_index(self, ifname: str) -> Optional[int]:
        """The index in ``interfaces`` of the container interface ``ifname`` (the one in a sandbox); None when
        the result has none."""
        return next((i for i, itf in enumerate(self.interfaces) if itf.name == ifname and itf.sandbox), None)

    def addresses_of(self, ifname: str) -> list[IPInterface]:
        """The addresses the result gives the container interface ``ifname``; an IP that names no interface
        counts as its."""
        ours = {i for i, itf in enumerate(self.interfaces) if itf.name == ifname and itf.sandbox}
        return [ip.address for ip in self.ips if ip.interface is None or ip.interface in ours]

    def to_dict(self, version: str) -> dict[str, Any]:
        """The result in the shape of ``version`` (the request's), following the Go conversion rules."""
        fam = versions.family(version)
        if fam == "020":
            return self._to_legacy(version)
        out: dict[str, Any] = {"cniVersion": version}
        if self.interfaces:
            out["interfaces"] = [i.to_dict(fam) for i in self.interfaces]
        if self.ips:
            out["ips"] = [i.to_dict(fam) for i in self.ips]
        if self.routes:
            out["routes"] = [r.to_dict(fam) for r in self.routes]
        out["dns"] = self.dns.to_dict()
        return out

    def _to_legacy(self, version: str) -> dict[str, Any]:
        out: dict[str, Any] = {"cniVersion": version}
        for fam_number, key in ((4, "ip4"), (6, "ip6")):
            ip = next((i for i in self.ips if i.family == fam_number), None)
            if ip is None:
                continue
            block: dict[str, Any] = {"ip": str(ip.address)}
            if ip.gateway is not None:
                block["gateway"] = str(ip.gateway)
            routes = [r.to_dict("020") for r in self.routes if r.dst.version == fam_number]
            if routes:
                block["routes"] = routes
            out[key] = block
        if "ip4" not in out and "ip6" not in out:
            raise CNIError(ErrorCode.INCOMPATIBLE_VERSION, "cannot convert: no valid IP addresses",
                           f"a result without IPs has no {version} form")
        out["dns"] = self.dns.to_dict()
        return out


def prev_result_addresses(conf: dict[str, Any], cni_version: str, ifname: str) -> list[IPInterface]:
    """The addresses the request's ``prevResult`` gives the container interface ``ifname``
    (:meth:`Result.addresses_of`); [] when there is no ``prevResult`` or it does not decode: the DELs that
    look here for addresses to clean up must not fail on it."""
    prev = conf.get("prevResult")
    if not isinstance(prev, dict) or not prev:
        return []
    try:
        return Result.from_dict(prev, cni_version).addresses_of(ifname)
    except CNIError:
        return []
