"""Encoding and decoding of netlink attributes (TLVs), with nothing but :mod:`struct`.

Messages of the netlink layer go through pyroute2's classes (:mod:`.msg`); this stays for what they do not
cover: the extended-ack attributes of NLMSG_ERROR read by :mod:`.conn`, MAC validation, and tests that check
the bytes pyroute2 puts on the wire.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import Iterator, Union

from .consts import NLA_F_NESTED

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
_TYPE_MASK = 0x3FFF  # drops NLA_F_NESTED and NLA_F_NET_BYTEORDER
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


def parse(buf: bytes, offset: int = 0) -> dict[int, bytes]:
    """Attributes from ``offset`` on, by type; for a repeated type the last one wins."""
    return dict(iterate(buf, offset))


def iterate(buf: bytes, offset: int = 0) -> Iterator[tuple[int, bytes]]:
    """(type, payload) for each attribute, in order, repeated ones included (e.g. bridge VLAN entries)."""
    end = len(buf)
    while offset + _HDR.size <= end:
        size, kind = _HDR.unpack_from(buf, offset)
        if size < _HDR.size or offset + size > end:
            break
        yield kind & _TYPE_MASK, buf[offset + _HDR.size : offset + size]
        offset += (size + 3) & ~3


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


def get_str(attrs: dict[int, bytes], kind: int) -> str:
    value = attrs.get(kind)
    return value.split(b"\0", 1)[0].decode() if value else ""


def get_ip(attrs: dict[int, bytes], kind: int) -> IPAddress | None:
    value = attrs.get(kind)
    if value is None or len(value) not in (4, 16):
        return None
    return ipaddress.ip_address(bytes(value))


def mac_to_bytes(mac: str) -> bytes:
    """``"0a:58:0a:f4:01:05"`` to 6 bytes; raises ValueError on anything else."""
    raw = bytes.fromhex(mac.replace(":", "").replace("-", ""))
    if len(raw) != 6 or len(mac) != 17:
        raise ValueError(f"invalid MAC address {mac!r}")
    return raw


def mac_to_str(raw: bytes | None) -> str:
    """Bytes to the lower-case colon form the CNI result uses ("" when absent)."""
    return ":".join(f"{b:02x}" for b in raw) if raw else ""
