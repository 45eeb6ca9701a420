"""The ipam keys ``provide`` and ``request`` (upstream's names and rules), read into :class:`ClientSettings`.

Upstream's client-ID is ``<ContainerID>/<network name>/<ifname>`` cut to 254 bytes, sent as option 61 with a
0x00 type byte; servers key leases on it, so a container re-created with the same identity gets its address back.
"""

from __future__ import annotations

from typing import Any

from cni_common.config import get_key, parse_cni_args
from cni_common.errors import CNIError, ErrorCode
from cni_common.record import field, record

#: Upstream's option names (the ones its parser knows) and their codes.
OPTION_NAMES = {
    "subnet-mask": 1, "routers": 3, "dns-servers": 6, "domain-name": 15, "host-name": 12,
    "vendor-class-identifier": 60, "dhcp-client-identifier": 61, "user-class": 77,
    "classless-static-routes": 121, "static-routes": 33,
}
#: The ``provide`` options pyroute2's client can send (the library encodes options by name).
PROVIDABLE = {12: "host_name", 60: "vendor_id", 61: "client_id"}
SUBNET_MASK, ROUTERS, DNS_SERVERS, DOMAIN_NAME = 1, 3, 6, 15
MAX_VALUE = 255


@record
class ClientSettings:
    """What the DHCP client sends for one lease."""

    client_id: bytes
    requested: list[int] = field(default_factory=list)
    host_name: str | None = None
    vendor_id: str | None = None

    @property
    def wants_dns(self) -> bool:
        return DNS_SERVERS in self.requested


def client_id(container_id: str, network: str, ifname: str) -> bytes:
    """Upstream's lease key and option-61 value (without the type byte)."""
    return f"{container_id}/{network}/{ifname}".encode()[:254]


def option_code(value: Any, where: str) -> int:
    """A name of :data:`OPTION_NAMES` or a decimal code 0-255."""
    if isinstance(value, str) and value.strip().lower() in OPTION_NAMES:
        return OPTION_NAMES[value.strip().lower()]
    text = str(value).strip() if isinstance(value, (str, int)) and not isinstance(value, bool) else None
    if text is None or not text.isdigit() or not 0 <= int(text) <= 255:
        raise CNIError(ErrorCode.INVALID_CONFIG, f"Can not parse option {value!r} in ipam.{where}",
                       f"an option is a decimal code 0-255 or one of {', '.join(sorted(OPTION_NAMES))}")
    return int(text)


def _entries(ipam: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = get_key(ipam, key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise CNIError(ErrorCode.INVALID_CONFIG, f"ipam.{key} must be a list of objects", repr(value)[:200])
    return value


def settings(ipam: dict[str, Any], container_id: str, network: str, ifname: str, cni_args: str) -> ClientSettings:
    """The client settings of one lease from the plugin's ``ipam`` block and ``CNI_ARGS``."""
    out = ClientSettings(client_id=client_id(container_id, network, ifname))
    skip_default = False
    for idx, entry in enumerate(_entries(ipam, "request")):
        code = option_code(get_key(entry, "option"), f"request[{idx}].option")
        skip_default = skip_default or get_key(entry, "skipDefault") is True
        if code not in out.requested:
            out.requested.append(code)
    if not skip_default:
        out.requested = [code for code in (ROUTERS, SUBNET_MASK) if code not in out.requested] + out.requested
    args = parse_cni_args(cni_args)
    for idx, entry in enumerate(_entries(ipam, "provide")):
        code = option_code(get_key(entry, "option"), f"provide[{idx}].option")
        from_arg = get_key(entry, "fromArg")
        value = args.get(from_arg, "") if isinstance(from_arg, str) and from_arg else get_key(entry, "value", "")
        if not isinstance(value, str):
            raise CNIError(ErrorCode.INVALID_CONFIG, f"ipam.provide[{idx}].value must be a string")
        if len(value.encode()) > MAX_VALUE:
            raise CNIError(ErrorCode.INVALID_CONFIG, f"value too long for option {code} in ipam.provide[{idx}]",
                           f"{len(value.encode())} bytes, at most {MAX_VALUE}")
        if code not in PROVIDABLE:
            raise CNIError(ErrorCode.INVALID_CONFIG, f"ipam.provide[{idx}]: option {code} is not supported",
                           "supported: host-name (12), vendor-class-identifier (60), dhcp-client-identifier (61)")
        if not value:
            continue
        if code == 61:
            out.client_id = value.encode()
        elif code == 12:
            out.host_name = value
        else:
            out.vendor_id = value
    return out
