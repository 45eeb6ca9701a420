"""Writes that are whole and durable: what every writer of the suite's files (host-local's store, the installer)
and of a child's input (:mod:`cni_common.spawn`) calls.

``os.write`` may write less than it was given; :func:`write_all` loops until every byte is written, so a file
is never left torn by a short write. A rename is atomic but not durable until the directory entry itself
reaches the disk: without the directory's fsync (:func:`fsync_dir`, after ``os.replace``), a crash right after
we reported success can bring back the old name.
"""

from __future__ import annotations

import os


def fsync_dir(directory: str) -> None:
    """Make the renames and creations in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd``, however many ``os.write`` calls that takes."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
