"""The installer's file work: put files into directories a container runtime reads while we write.

A runtime execs ``/opt/cni/bin/<type>`` and reads ``/etc/cni/net.d`` at any moment, so nothing here ever opens
an existing file for writing (that is what makes "text file busy" and half-written files): every new file is
written under a temporary name in the SAME directory (``mkstemp``: ``O_EXCL``, no symlink followed), flushed to
disk, and only then renamed over the old name. A reader sees the old file or the new one, never a mix, and a
failure at any step (disk full, read-only mount) leaves the old file as it was.

Temporary names start with ``.cni-suite-`` and end in ``.tmp``: the runtimes load only ``*.conf``,
``*.conflist`` and ``*.json`` from the config directory, and look plugins up by their exact type name, so a
temporary file is never picked up. Leftovers of a killed installer are removed by the next run.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import stat
from contextlib import contextmanager
from typing import Iterator

TEMP_PREFIX = ".cni-suite-"
TEMP_SUFFIX = ".tmp"


class InstallError(Exception):
    """A file could not be installed or removed; the message names the path and the reason."""


def describe(exc: OSError, what: str) -> InstallError:
    """An :class:`InstallError` whose message says what failed and why, in the operator's words."""
    reasons = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
               errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
               errno.EPERM: "operation not permitted", errno.ENOENT: "no such file or directory"}
    return InstallError(f"{what}: {reasons.get(exc.errno or 0, exc.strerror or str(exc))}")


@contextmanager
def locked_dir(directory: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``directory`` itself: two installers (an old pod still stopping, a new
    one starting) never interleave their renames or remove each other's temporary files, and no lock file is
    left in a directory the runtime reads."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise describe(exc, f"cannot open directory {directory}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def remove_leftovers(directory: str | int) -> None:
    """Remove temporary files of an installer that was killed mid-write (regular files with our prefix only).
    ``directory``: a path, or a descriptor of the folder (then no path is looked up again)."""
    dir_fd = directory if isinstance(directory, int) else None
    for entry in os.scandir(directory):
        if entry.name.startswith(TEMP_PREFIX) and entry.is_file(follow_symlinks=False):
            try:
                os.unlink(entry.path, dir_fd=dir_fd)
            except FileNotFoundError:
                pass


def file_digest(path: str) -> str:
    """SHA-256 of a regular file at ``path``; "" when it is absent, a symlink or not a regular file (then it
    is replaced, not followed)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return ""
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            return ""
        return hashlib.file_digest(f, "sha256").hexdigest()


class DigestCache:
    """:func:`file_digest` once per file (device, inode, size, mtime): hard links share one answer."""

    def __init__(self) -> None:
        self._seen: dict[tuple[int, int, int, int], str] = {}

    def of(self, path: str) -> str:
        try:
            st = os.lstat(path)
        except OSError:
            return ""
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        if key not in self._seen:
            self._seen[key] = file_digest(path)
        return self._seen[key]


def write_temp(directory: str, data: bytes, mode: int) -> str:
    """Write ``data`` to a new temporary file in ``directory``, with ``mode``, fsync'd; returns its path.

    On failure (disk full, read-only, not writable) the temporary file is removed and :class:`InstallError`
    raised: nothing visible changed.
    """
    import tempfile

    try:
        fd, path = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX, dir=directory)
    except OSError as exc:
        raise describe(exc, f"cannot create a file in {directory}") from exc
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
    except OSError as exc:
        _unlink_quietly(path)
        raise describe(exc, f"cannot write {len(data)} bytes into {directory}") from exc
    return path


def publish(temp: str, final: str) -> None:
    """Rename ``temp`` over ``final`` (atomic in one directory; replaces a symlink, never follows it)."""
    try:
        os.rename(temp, final)
    except OSError as exc:
        _unlink_quietly(temp)
        raise describe(exc, f"cannot rename into {final}") from exc


def link_all(staged: str, finals: list[str]) -> None:
    """Make every path in ``finals`` a hard link to ``staged``, each appearing by one rename: an upgrade
    replaces the plugin a runtime execs between two calls, never under one."""
    for final in finals:
        link = f"{staged}.{os.path.basename(final)}"
        try:
            os.link(staged, link)
        except OSError as exc:
            raise describe(exc, f"cannot link {final}") from exc
        publish(link, final)


def remove_if_present(path: str) -> bool:
    """Unlink ``path``; False when it was already gone."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise describe(exc, f"cannot remove {path}") from exc
    return True


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
