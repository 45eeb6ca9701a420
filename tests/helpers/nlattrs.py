"""Encoders (and scalar decoders) of netlink attributes, to build the kernel's replies in unit tests and to
check the bytes pyroute2 puts on the wire; what the suite itself decodes is in :mod:`cni_common.netlink.attrs`,
re-exported here so a test needs one name."""

from __future__ import annotations

import ipaddress
import struct
from typing import Union

from cni_common.netlink.attrs import get_str, iterate, mac_to_bytes, mac_to_str, parse  # noqa: F401
from cni_common.netlink.consts import NLA_F_NESTED

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
_HDR = struct.Struct("=HH")
_U16 = struct.Struct("=H")
_U32 = struct.Struct("=I")
_BE16 = struct.Struct("!H")


def attr(kind: int, payload: bytes) -> bytes:
    """One attribute: header, payload, padding to 4 bytes."""
    size = _HDR.size + len(payload)
    return _HDR.pack(size, kind) + payload + b"\0" * (-size % 4)


def nested(kind: int, *children: bytes) -> bytes:
    """An attribute holding other attributes."""
    return attr(kind | NLA_F_NESTED, b"".join(children))


def u8(kind: int, value: int) -> bytes:
    return attr(kind, bytes((value,)))


def u16(kind: int, value: int) -> bytes:
    return attr(kind, _U16.pack(value))


def be16(kind: int, value: int) -> bytes:
    """Network byte order, as ports are (IFLA_VXLAN_PORT)."""
    return attr(kind, _BE16.pack(value))


def u32(kind: int, value: int) -> bytes:
    return attr(kind, _U32.pack(value))


def string(kind: int, value: str) -> bytes:
    """A NUL-terminated string (interface names, link kinds)."""
    return attr(kind, value.encode() + b"\0")


def ip(kind: int, value: IPAddress) -> bytes:
    return attr(kind, value.packed)


def get_u8(attrs: dict[int, bytes], kind: int, default: int = 0) -> int:
    value = attrs.get(kind)
    return value[0] if value else default


def get_u16(attrs: dict[int, bytes], kind: int, default: int = 0) -> int:
    value = attrs.get(kind)
    return _U16.unpack_from(value)[0] if value else default


def get_be16(attrs: dict[int, bytes], kind: int, default: int = 0) -> int:
    value = attrs.get(kind)
    return _BE16.unpack_from(value)[0] if value else default


def get_u32(attrs: dict[int, bytes], kind: int, default: int = 0) -> int:
    value = attrs.get(kind)
    return _U32.unpack_from(value)[0] if value else default


def get_ip(attrs: dict[int, bytes], kind: int) -> IPAddress | None:
    value = attrs.get(kind)
    if value is None or len(value) not in (4, 16):
        return None
    return ipaddress.ip_address(bytes(value))
