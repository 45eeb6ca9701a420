"""The installer's ``--warm``: the node's switch for the plugins' warm path, written where the launcher reads it.

The launcher of every plugin file reads the first word of ``<cache>/warm-mode`` (``cni_common/bundle/warm.h``,
docs/packaging.md "The warm path"); ``cni-suite install --warm off|on|auto`` writes that file, so a DaemonSet sets
the switch of its nodes the way it sets their plugins and config. The cache folder is the launcher's: root-only,
and a launcher that finds it otherwise refuses to run at all (``launcher.c``: ``ensure_private_dir``). So this
module treats it as the launcher does, and a little stricter, because it may be the first to create it:

- absent: created as the launcher creates it (``mkdir`` 0700; its parent must exist, as for the launcher);
- a symlink or not a directory: refused, never followed (the folder is opened ``O_NOFOLLOW`` once, and every
  step after works on that descriptor, so nobody can swap the folder between the checks and the write);
- not owned by us (root in the DaemonSet): refused; it is not ours to take over;
- writable by group or others (a 0777 ``emptyDir``): refused, as the launcher does, because files someone else
  could have planted there (a socket, a build folder) stay after a ``chmod``; remove it instead;
- any other mode (``0755``: what a hostPath volume of type ``DirectoryOrCreate`` makes): set to 0700, what the
  launcher would have made.

The file appears by rename from a temporary file in the same folder (``O_EXCL|O_NOFOLLOW``, fsync'd, then the
folder fsync'd), so a launcher reads the old word or the new one, never a torn file. Its second line marks it as
the installer's: ``--uninstall --remove-binaries`` removes only a file bearing it (an operator's hand-written file
stays).
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from contextlib import contextmanager
from typing import Any, Iterator

from cni_common.durable import write_all
from cni_common.warm.server import MODE_FILE
from plugins.install_files import TEMP_PREFIX, TEMP_SUFFIX, InstallError, describe, remove_leftovers

#: The switch's words, as the launcher reads them (``warm.h``: ``parse_warm_mode``).
WARM_MODES = ("off", "on", "auto")
DEFAULT_CACHE_DIR = "/host/var/cache/cni-suite"
#: The second line of a file this installer wrote (the launcher reads only the first word).
MARK = "# written by cni-suite install --warm"
FILE_MODE = 0o644  # inside a 0700 folder: only root reaches it anyway
FOLDER_MODE = 0o700


def content(mode: str) -> bytes:
    """The file's bytes for ``mode``: the word the launcher reads, then the installer's mark."""
    return f"{mode}\n{MARK}\n".encode()


@contextmanager
def cache_folder(path: str) -> Iterator[int]:
    """A descriptor of the launcher cache folder ``path`` (created if absent), checked and made private as
    described above, held under an exclusive ``flock`` (two installers, an old pod stopping and a new one
    starting, never interleave)."""
    try:
        os.mkdir(path, FOLDER_MODE)
    except FileExistsError:
        pass
    except OSError as exc:
        raise describe(exc, f"cannot create the launcher cache folder {path}") from exc
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise InstallError(f"launcher cache {path} is a symlink or not a directory: refused (the plugins' "
                               "launcher refuses it too); make it a directory of root's, mode 0700") from exc
        raise describe(exc, f"cannot open the launcher cache folder {path}") from exc
    try:
        _make_private(fd, path)
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)


def _make_private(fd: int, path: str) -> None:
    st = os.fstat(fd)
    if st.st_uid != os.geteuid():
        raise InstallError(f"launcher cache {path} belongs to uid {st.st_uid}, not to {os.geteuid()}: refused "
                           "(the plugins' launcher refuses it too); remove it, the plugins' next call re-creates it")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o022:
        raise InstallError(f"launcher cache {path} is writable by others (mode {mode:04o}): refused, files planted "
                           "in it would stay after a chmod; remove it, the plugins' next call re-creates it")
    if mode != FOLDER_MODE:
        try:
            os.fchmod(fd, FOLDER_MODE)
        except OSError as exc:
            raise describe(exc, f"cannot make {path} private (mode {mode:04o} to 0700)") from exc


def write_mode(cache_dir: str, mode: str) -> bool:
    """Make ``<cache_dir>/warm-mode`` say ``mode``; False when it already did (nothing written)."""
    data = content(mode)
    with cache_folder(cache_dir) as fd:
        remove_leftovers(fd)  # of an installer killed mid-write (the launcher's own are ``.tmp-*``: never touched)
        if _read(fd) == data:
            return False
        temp = f"{TEMP_PREFIX}{os.urandom(8).hex()}{TEMP_SUFFIX}"
        try:
            out = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE,
                          dir_fd=fd)
        except OSError as exc:
            raise describe(exc, f"cannot create a file in {cache_dir}") from exc
        try:
            try:
                write_all(out, data)
                os.fchmod(out, FILE_MODE)  # whatever the umask
                os.fsync(out)
            finally:
                os.close(out)
            os.rename(temp, MODE_FILE, src_dir_fd=fd, dst_dir_fd=fd)  # replaces a symlink, never follows it
        except OSError as exc:
            try:
                os.unlink(temp, dir_fd=fd)
            except OSError:
                pass
            raise describe(exc, f"cannot write {mode_path(cache_dir)}") from exc
        os.fsync(fd)
    return True


def remove_mode(cache_dir: str) -> bool:
    """Remove ``<cache_dir>/warm-mode`` when this installer wrote it; False when absent or someone else's. An
    absent folder stays absent (an uninstall makes nothing)."""
    if not os.path.lexists(cache_dir):
        return False
    with cache_folder(cache_dir) as fd:
        if MARK.encode() not in _read(fd).splitlines():
            return False
        try:
            os.unlink(MODE_FILE, dir_fd=fd)
        except OSError as exc:
            raise describe(exc, f"cannot remove {mode_path(cache_dir)}") from exc
        os.fsync(fd)
    return True


def mode_path(cache_dir: str) -> str:
    return os.path.join(cache_dir, MODE_FILE)


def fingerprint(cache_dir: str) -> Any:
    """Identity of the written file, for ``--watch``: someone replacing or removing it makes a re-install."""
    try:
        st = os.lstat(mode_path(cache_dir))
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _read(folder: int) -> bytes:
    """The file's bytes; b"" when absent or not a regular file (then it is replaced, not followed)."""
    try:
        fd = os.open(MODE_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=folder)
    except OSError:
        return b""
    try:
        return os.read(fd, 4096) if stat.S_ISREG(os.fstat(fd).st_mode) else b""
    finally:
        os.close(fd)
