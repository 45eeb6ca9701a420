"""Durability of renames: what every writer of the suite's files (host-local's store, the installer) calls after
``os.replace`` when it promises that a change survives a power cut.

A rename is atomic but not durable until the directory entry itself reaches the disk: without the directory's
fsync, a crash right after we reported success can bring back the old name.
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
