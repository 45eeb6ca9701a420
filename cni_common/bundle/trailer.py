"""The trailer that ends every single-file build: how to tell which build a file on disk is.

Layout (shared with ``launcher.c`` and ``pack.py``): 8-byte magic, u64 payload offset, u64 payload size, u64
meta size, then the payload's SHA-256 as 64 hex characters. The hash also names the launcher's cache folder, so
a running plugin knows its own build from ``sys.executable`` and can recognise a delegate of the same build
without running it.
"""

from __future__ import annotations

import os

MAGIC = b"CNIPYBN2"
SIZE = 8 + 8 + 8 + 8 + 64


def build_hash(path: str) -> str:
    """The build hash of the single-file executable at ``path``, or ``""`` if it is not one of ours."""
    try:
        with open(path, "rb") as f:
            f.seek(-SIZE, os.SEEK_END)
            trailer = f.read(SIZE)
    except OSError:
        return ""
    return hash_in(trailer)


def hash_in(tail: bytes) -> str:
    """The build hash in ``tail``, a file's last :data:`SIZE` bytes, or ``""`` if they are not our trailer."""
    if len(tail) != SIZE or not tail.startswith(MAGIC):
        return ""
    return tail[32:].decode("ascii", "replace")
