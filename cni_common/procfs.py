"""Whole reads of the kernel's small files (``/proc``, ``/proc/sys``, ``/sys``) through plain descriptors.

Why not ``open()``: a text-mode file object builds an io stack and a decoder and makes four more system calls per
file, for a value of a few bytes; in a warm child each object it touches is a page copied from the warm process
(docs/packaging.md, "Copy-on-write, measured"). The sysctls and the warm process's mount table are read here
(the warm child's reads of its caller are C: ``cni_common/bundle/warm_child.h``).
"""

from __future__ import annotations

import os


def read(path: str) -> bytes:
    """All of the file's bytes (read until its end: a ``/proc`` file may come in pieces); OSError when it cannot
    be opened or read."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)
