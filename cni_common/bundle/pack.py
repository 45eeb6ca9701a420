"""Pack a PyInstaller one-folder bundle behind the launcher into one self-installing executable.

Usage: ``python -m cni_common.bundle.pack LAUNCHER BUNDLE_DIR OUTPUT TYPE...``. The format is documented in
``launcher.c``, the only reader. The meta block carries the plugin names (build.sh passes the suite's table of
types, ``plugins/multicall.py``) and the VERSION answer (:mod:`cni_common.version`), so the launcher can answer
VERSION itself without a second source of truth. Files are zlib-compressed one by one (the suite's footprint in
/opt/cni/bin matters); the trailer carries the SHA-256 of the payload, which names the launcher's cache folder,
so every build unpacks into a folder of its own and identical builds share one.
"""

from __future__ import annotations

import hashlib
import os
import stat
import struct
import sys
import zlib
from pathlib import Path

from .trailer import MAGIC

WARM_DIR = "warm"


def _entry(kind: bytes, mode: int, rel: str, stored: bytes, original_len: int) -> bytes:
    name = rel.encode()
    return kind + struct.pack("<II", mode, len(name)) + name + struct.pack("<QQ", len(stored), original_len) + stored


def _normal_mode(st_mode: int) -> int:
    """0755 or 0644, whatever the build's umask was: the payload (and so the build hash) stays reproducible."""
    return 0o755 if stat.S_ISDIR(st_mode) or st_mode & 0o111 else 0o644


def payload(bundle_dir: Path) -> bytes:
    """All entries of ``bundle_dir`` in a stable order (parents before children), then the end mark."""
    parts: list[bytes] = []
    for root, dirs, files in os.walk(bundle_dir):
        dirs.sort()
        for name in sorted(dirs + files):
            path = Path(root) / name
            rel = path.relative_to(bundle_dir).as_posix()
            info = path.lstat()
            mode = _normal_mode(info.st_mode)
            if stat.S_ISLNK(info.st_mode):
                target = os.readlink(path).encode()
                parts.append(_entry(b"l", mode, rel, target, len(target)))
            elif stat.S_ISDIR(info.st_mode):
                parts.append(_entry(b"d", mode, rel, b"", 0))
            else:
                data = path.read_bytes()
                parts.append(_entry(b"f", mode, rel, zlib.compress(data, 9), len(data)))
    # The warm processes' sockets and locks (cni_common/bundle/warm.h) live in this folder, made at unpack time, so
    # they never change the build folder itself (whose mtime says when it was unpacked).
    parts.append(_entry(b"d", 0o700, WARM_DIR, b"", 0))
    parts.append(b"E")
    return b"".join(parts)


def meta(plugin_types: list[str]) -> bytes:
    """Plugin names (NUL-terminated, then an empty one) followed by the VERSION answer."""
    from cni_common.version import version_info_json

    names = b"".join(name.encode() + b"\0" for name in sorted(plugin_types))
    return names + b"\0" + version_info_json().encode()


def pack(launcher: Path, bundle_dir: Path, output: Path, plugin_types: list[str]) -> str:
    """Write ``output`` = launcher + payload + meta + trailer; returns the payload hash."""
    head = launcher.read_bytes()
    body = payload(bundle_dir)
    info = meta(plugin_types)
    digest = hashlib.sha256(body).hexdigest()
    trailer = MAGIC + struct.pack("<QQQ", len(head), len(body), len(info)) + digest.encode()
    tmp = output.with_name(output.name + ".tmp")
    tmp.write_bytes(head + body + info + trailer)
    tmp.chmod(0o755)
    tmp.replace(output)
    return digest


if __name__ == "__main__":
    if len(sys.argv) < 5:
        sys.stderr.write("usage: python -m cni_common.bundle.pack LAUNCHER BUNDLE_DIR OUTPUT TYPE...\n")
        sys.exit(2)
    print(pack(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4:]))
