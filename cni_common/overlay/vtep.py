"""The VTEP MAC of a node: derived, not random, so it never changes across reboots or device re-creation.

flannel picks a random MAC and has to publish and re-read it (flannel#1795, #533: a changed MAC leaves peers
with stale permanent entries). Deriving the MAC from (VNI, underlay address) makes it a pure function of what a
peer already knows, so static peers need no MAC at all and a re-created device comes back with the same one.
"""

from __future__ import annotations

import ipaddress

try:  # the interpreter's own SHA-256: hashlib would load OpenSSL's libcrypto first (~10 ms per vxlan call)
    from _sha256 import sha256  # type: ignore[import-not-found]  # Python 3.11 (3.12: _sha2); no stub
except ImportError:  # pragma: no cover - another interpreter build
    from hashlib import sha256


def vtep_mac(vni: int, underlay_ip: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """A locally administered unicast MAC from SHA-256 of ``"<vni>/<underlay ip>"`` (first 6 bytes)."""
    ip = ipaddress.ip_address(str(underlay_ip))
    digest = bytearray(sha256(f"{vni}/{ip.compressed}".encode()).digest()[:6])
    digest[0] = (digest[0] & 0xFC) | 0x02  # clear multicast bit, set locally-administered bit
    return ":".join(f"{b:02x}" for b in digest)


def normalize_mac(mac: str) -> str:
    """``AA-BB-...``/``aa:bb:...`` to lower-case colon form; ValueError when it is not a unicast MAC."""
    parts = mac.replace("-", ":").lower().split(":")
    if len(parts) != 6 or any(len(p) != 2 for p in parts):
        raise ValueError(f"not a MAC address: {mac!r}")
    raw = bytes(int(p, 16) for p in parts)
    if raw[0] & 0x01 or raw == b"\0" * 6:
        raise ValueError(f"not a unicast MAC address: {mac!r}")
    return ":".join(parts)
