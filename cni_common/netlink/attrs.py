"""Decoding of netlink attributes (TLVs), with nothing but :mod:`struct`.

Messages of the netlink layer go through pyroute2's classes (:mod:`.msg`); this stays for what they do not
cover: the extended-ack attributes of NLMSG_ERROR read by :mod:`.conn`, MAC address text, and the hot path of
link look-ups (:mod:`.ifinfo` reads a link's few scalars without pyroute2's full decode). (The tests build
kernel replies with the encoders in ``tests/helpers/nlattrs.py``.)
"""

from __future__ import annotations

import struct
from typing import Iterator

_TYPE_MASK = 0x3FFF  # drops NLA_F_NESTED and NLA_F_NET_BYTEORDER
_HDR = struct.Struct("=HH")


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


def get_str(attrs: dict[int, bytes], kind: int) -> str:
    """The NUL-terminated string attribute ``kind`` ("" when absent; bytes that are not UTF-8 become U+FFFD)."""
    value = attrs.get(kind)
    return value.split(b"\0", 1)[0].decode(errors="replace") if value else ""


def mac_to_bytes(mac: str) -> bytes:
    """``"0a:58:0a:f4:01:05"`` to 6 bytes; raises ValueError on anything else."""
    raw = bytes.fromhex(mac.replace(":", "").replace("-", ""))
    if len(raw) != 6 or len(mac) != 17:
        raise ValueError(f"invalid MAC address {mac!r}")
    return raw


def mac_to_str(raw: bytes | None) -> str:
    """Bytes to the lower-case colon form the CNI result uses ("" when absent)."""
    return ":".join(f"{b:02x}" for b in raw) if raw else ""
