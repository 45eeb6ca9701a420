"""host-local's on-disk store, byte-compatible with the Go plugin so both can share one data dir.

Layout of ``<dataDir>/<network>/`` (directory 0755), the compatibility contract:

- ``<ip>``: one file per reserved IP (mode 0600), containing ``<containerID>\\r\\n<ifname>``; files from old
  versions hold only ``<containerID>`` and match any ifname of that container;
- ``last_reserved_ip.<N>``: the last IP reserved in range set N (a hint: where the next walk starts);
- ``lock``: an empty file, ``flock(LOCK_EX)``-ed around every operation, exactly as go-filemutex does, so
  our processes and Go's exclude each other.

Beyond upstream, ``.cni-boot-id`` records the kernel's boot ID of the last call (see
:meth:`DiskStore.reclaim_after_reboot`), and ``.cni-index.json`` caches ``ip -> (inode, containerID, ifname,
boot ID it was reserved in)``. It is only a cache: every operation lists the directory (names and inode
numbers, no file reads), reads just the IP files that are new or whose inode changed (e.g. written by the Go
plugin), and re-reads a file before removing it. So a DEL reads a handful of files instead of all of them.
When the index finds nothing for an attachment, DEL falls back to reading every file, which also covers an
inode number reused for the same IP name behind our back.

Only the reservations are the store; ``last_reserved_ip.<N>``, the index and the boot-ID record are hints. A
hint that cannot be written (a full or read-only disk, a quota, an I/O error) is logged and never fails a
call; one that is missing, torn or unreadable reads as absent. They are rewritten in place, as Go writes
``last_reserved_ip``: a full disk has no page for a temporary copy, and a file's own blocks are reused. When
a reservation itself finds no space, the index and the boot-ID record are given up (deleted) once to make
room: on a full disk host-local holds as many addresses as Go's.

File safety (see docs/threat-model.md): every file in the network directory is opened with ``O_NOFOLLOW``
(a planted symlink is never followed, for reading or writing) and ``O_NONBLOCK`` (a planted FIFO cannot hang
a read); reservations are created ``O_EXCL``; a hint is rewritten only when what is there is a regular file
with one link (anything else, a planted symlink, FIFO or hard link, is replaced, never written through). A
reservation is fsync-ed, with its directory, before the ADD returns it. An empty reservation file (a power cut
between create and write) holds no one's address: it is logged and reused. Directories (``dataDir`` and the
network's) may be symlinks: the administrator chose them.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import ipaddress
import json
import os
import re
import stat

from ..durable import fsync_dir, write_all
from ..errors import CNIError, ErrorCode, PluginCode
from ..log import get_logger
from .store import Owner

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~4 ms per plugin process)
if TYPE_CHECKING:
    from typing import Optional

    from ..types import IPAddress

log = get_logger(__name__)

LOCK_NAME = "lock"
LAST_RESERVED_PREFIX = "last_reserved_ip."
INDEX_NAME = ".cni-index.json"
#: Beside the reservations, ignored by Go's host-local: its name is no IP and its contents ("boot_id: ...",
#: with a colon and a space) can never equal a container ID, which is all Go's release-by-ID compares.
BOOT_ID_NAME = ".cni-boot-id"
BOOT_ID_PREFIX = "boot_id: "
#: The kernel's random ID of the current boot.
KERNEL_BOOT_ID = "/proc/sys/kernel/random/boot_id"
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_REWRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
#: No room for a reservation: our own files are given up to make some.
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}
#: Larger than any file of ours (a reservation holds an ID and an ifname): a planted big file is not read whole.
_MAX_READ = 64 * 1024
_INDEX_VERSION = 2  # 2: entries carry the boot ID; an index of version 1 is rebuilt (the IDs then unknown)
#: One encoder for every save (``json.dumps`` with an argument builds one per call).
_INDEX_ENCODER = json.JSONEncoder(separators=(",", ":"))
_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.\-]*\Z")
_BOOT_ID_RE = re.compile(r"[0-9A-Za-z][0-9A-Za-z_.\-]*")

# ip name -> [inode, container id, ifname or None, boot ID or None]: the boot ID the reservation was made in,
# when we made it (None for files we found: made by Go's host-local, or behind our back). Kept as the JSON lists
# they are stored as, so loading and saving the index is one json call each (read and written on every call).
_Entry = list


def validate_network_name(name: str) -> None:
    """The network name becomes a directory under dataDir: refuse anything that could leave it."""
    if not _NAME_RE.match(name) or name in (".", ".."):
        raise CNIError(ErrorCode.INVALID_CONFIG, f"invalid network name {name!r} for a host-local data dir",
                       "must start with a letter or digit and contain only letters, digits, '_', '.' and '-'")


def validate_owner(container_id: str, ifname: str) -> None:
    """IDs and ifnames are written into reservation files: a line break or a '/' would corrupt the format."""
    if not _NAME_RE.match(container_id):
        raise CNIError(ErrorCode.INVALID_ENV, f"invalid container ID {container_id!r}")
    if not ifname or any(c in ifname for c in "/\r\n") or ifname.strip() != ifname:
        raise CNIError(ErrorCode.INVALID_ENV, f"invalid interface name {ifname!r}")


def ip_from_name(name: str) -> Optional[IPAddress]:
    """The IP a directory entry reserves, or None for lock, last_reserved_ip.*, the index and strangers."""
    if not name or name[0] == "." or name == LOCK_NAME or name.startswith(LAST_RESERVED_PREFIX):
        return None
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


def parse_owner(data: bytes) -> Owner:
    """File contents -> owner, trimmed as Go's strings.TrimSpace does; no ``\\r\\n`` means an id-only file."""
    text = data.decode("utf-8", errors="replace").strip()
    cid, sep, ifname = text.partition("\r\n")
    return Owner(cid.strip(), ifname if sep else None)


def _store_error(what: str, path: str, exc: OSError) -> CNIError:
    return CNIError(PluginCode.STORE_FAILURE, f"failed to {what} {path}: {exc.strerror or exc}", repr(exc))


#: Whose fault a failure to create or open the data dir is: a path that cannot be a directory is the config's
#: (ipam.dataDir, code 7); missing rights or a read-only file system is the environment's (code 4).
_CONFIG_ERRNOS = {errno.ENOTDIR, errno.EEXIST, errno.ENAMETOOLONG, errno.ELOOP}
_ENV_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS}


def _data_dir_error(path: str, exc: OSError) -> CNIError:
    reason = exc.strerror or str(exc)
    if exc.errno in _CONFIG_ERRNOS:
        return CNIError(ErrorCode.INVALID_CONFIG, f"invalid ipam.dataDir: cannot create {path}: {reason}",
                        "dataDir must name a directory (or a path where one can be created)")
    if exc.errno in _ENV_ERRNOS:
        return CNIError(ErrorCode.INVALID_ENV, f"ipam.dataDir {path} is not writable: {reason}", repr(exc))
    return _store_error("create data dir", path, exc)


def read_small(path: str, limit: int = _MAX_READ) -> bytes:
    """A file's first ``limit`` bytes, never through a symlink and never blocking on a FIFO.

    Raises FileNotFoundError when it is missing, another OSError (ELOOP for a symlink) when unreadable.
    """
    fd = os.open(path, _READ_FLAGS)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
        # The size fstat gave, not ``limit``: os.read allocates what it is asked for (16 MiB for the index: an
        # mmap and a munmap per call). One byte more than the size, so a file that grew since is still cut at
        # ``limit`` at most; an empty size (a file being written) reads up to ``limit`` as before.
        return os.read(fd, min(limit, st.st_size + 1) if st.st_size else limit)
    finally:
        os.close(fd)


def current_boot_id(path: str = KERNEL_BOOT_ID) -> Optional[str]:
    """The kernel's boot ID (None when it cannot be read: then no reclaim happens)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)  # no buffered file object: 3 system calls, not 7
        try:
            data = os.read(fd, 128)
        finally:
            os.close(fd)
    except OSError:
        return None
    return data.decode("ascii", "replace").strip() or None


def boot_time() -> float:
    """When this boot began, on the wall clock (``btime`` of /proc/stat), as file mtimes are recorded."""
    with open("/proc/stat", "rb") as fh:
        for line in fh:
            if line.startswith(b"btime "):
                return float(line.split()[1])
    raise OSError(errno.ENOENT, "no btime in /proc/stat")


class _Locked:
    """What :meth:`DiskStore.lock` returns. A class, not a ``contextlib.contextmanager`` generator: four
    functions of ``contextlib`` and a generator fewer per call, and each function a warm child runs for the
    first time costs it copied pages of the warm process (~3 µs each on a VM)."""

    __slots__ = ("store", "fd")

    def __init__(self, store: DiskStore) -> None:
        self.store = store
        self.fd = -1

    def __enter__(self) -> None:
        self.fd = self.store._acquire()

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.store._release(self.fd, exc_type is None)


class DiskStore:
    """The reservations of network ``network`` under ``data_dir``; implements :class:`.store.Store`.

    ``boot_id`` (the kernel's, None when the reboot reclaim is off) is recorded with each reservation made.
    """

    def __init__(self, data_dir: str, network: str, boot_id: Optional[str] = None) -> None:
        validate_network_name(network)
        self.dir = os.path.join(data_dir, network)
        self.boot_id = boot_id
        self._index: Optional[dict[str, _Entry]] = None
        self._index_dirty = False
        self._unsynced: list[str] = []  # reservations written under the current lock, not yet fsync-ed

    # ----------------------------------------------------------------- locking and the index cache
    def ensure_dir(self) -> None:
        """Create ``<dataDir>/<network>`` (0755) when missing."""
        try:
            os.makedirs(self.dir, mode=0o755, exist_ok=True)
        except OSError as exc:
            raise _data_dir_error(self.dir, exc) from exc

    def lock(self) -> _Locked:
        """flock the ``lock`` file (``with store.lock():``); the index is refreshed lazily inside and saved on
        the way out, after the reservations made inside are fsync-ed.

        The lock is opened ``O_NOFOLLOW`` (a planted symlink, dangling or not, is refused, never created or
        locked in its place) and must be a regular file (a FIFO there would hang the open without
        ``O_NONBLOCK``). Refusing is the only safe answer: replacing it while Go's host-local holds a lock on
        the file it points to would break the mutual exclusion.
        """
        return _Locked(self)

    def _acquire(self) -> int:
        """Open and flock the lock file (:meth:`lock`); its descriptor.

        The open comes first and :meth:`ensure_dir` only when it fails: the directory exists on every call but
        a network's first, and ``os.makedirs`` costs three system calls and four library functions per call.
        A failed open runs it, so a missing directory is created and one that cannot be gets the verdict it
        always got (code 7 or 4, :func:`_data_dir_error`); then the open is retried and judged as before."""
        path = self._path(LOCK_NAME)
        flags = os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            try:
                fd = os.open(path, flags, 0o600)
            except OSError:
                self.ensure_dir()
                fd = os.open(path, flags, 0o600)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise CNIError(PluginCode.STORE_FAILURE, f"refusing to follow the symbolic link {path}",
                               "the lock must be a regular file: remove the link") from exc
            raise _store_error("open lock file", path, exc) from exc
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise CNIError(PluginCode.STORE_FAILURE, f"{path} is not a regular file",
                               "the lock must be a regular file: remove what is there")
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self._index, self._index_dirty, self._unsynced = None, False, []
        return fd

    def _release(self, fd: int, completed: bool) -> None:
        """Leave the lock (:meth:`lock`): when the work inside ``completed``, make its reservations durable and
        save the index first."""
        try:
            if completed:
                self._make_durable()
                self._save_index()
        finally:
            self._index, self._unsynced = None, []
            os.close(fd)  # closing drops the flock

    def _make_durable(self) -> None:
        """fsync the reservations written under this lock, then the directory (their names), before the lock
        is released and the ADD returns: an address handed to a pod must not be handed out again after a power
        cut. Once per ADD, whatever the number of range sets (one journal commit, not one per file). When that
        fails, the ADD fails: the reservations are removed, so it leaves the store as it found it.

        What the promise costs (Go's host-local fsyncs nothing), measured on the 2-core VM's ext4, 2026-12-07:
        0.34 ms wall per ADD (median of 60; p90 0.4-1.4 ms) and 0.11 ms CPU; the file's fsync is the journal
        commit, the directory's after it ~0.07 ms on a quiet disk but ~1.5 ms under neighbours' writes (the
        device's cache flush). Kept: ext4's journal happens to commit the new name with the file, but POSIX
        promises a name only after the directory's fsync, and not every filesystem behaves like ext4."""
        if not self._unsynced:
            return
        try:
            for path in self._unsynced:
                fd = os.open(path, _READ_FLAGS)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            fsync_dir(self.dir)
        except OSError as exc:
            for path in self._unsynced:
                with contextlib.suppress(OSError):
                    os.unlink(path)
                self._forget(os.path.basename(path))
            raise _store_error("sync reservations in", self.dir, exc) from exc
        finally:
            self._unsynced = []

    def _path(self, name: str) -> str:
        """``os.path.join(self.dir, name)`` without its library Python (eight calls per ADD): ``self.dir``
        never ends in '/' (the network name is validated, non-empty) and no name of ours starts with one."""
        return f"{self.dir}/{name}"

    def _read_owner(self, name: str) -> Optional[Owner]:
        """The owner recorded in a reservation file; None when it is gone or unreadable (a symlink, a
        directory: then the IP stays taken, as its name is there, and no one's DEL or GC can match it)."""
        try:
            data = read_small(self._path(name))
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("cannot read reservation %s: %s", self._path(name), exc)
            return None
        if not data.strip():
            log.warning("reservation %s is empty (a crash between its creation and its write?): it holds no "
                        "one's address and will be reused", self._path(name))
        return parse_owner(data)

    def _load_index_file(self) -> dict[str, _Entry]:
        """The saved index, unchecked: :meth:`index` validates each entry against the directory listing."""
        try:
            raw = json.loads(read_small(self._path(INDEX_NAME), 16 * 1024 * 1024).decode())  # text: no encoding guess
            if isinstance(raw, dict) and raw.get("version") == _INDEX_VERSION and isinstance(raw.get("entries"), dict):
                return raw["entries"]
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, RecursionError) as exc:
            log.warning("ignoring unreadable index %s: %s", self._path(INDEX_NAME), exc)
        self._index_dirty = True
        return {}

    def index(self) -> dict[str, _Entry]:
        """The index, checked against a listing of the directory (names and inode numbers only)."""
        if self._index is not None:
            return self._index
        cached = self._load_index_file()
        fresh: dict[str, _Entry] = {}
        try:
            with os.scandir(self.dir) as entries:
                for entry in entries:
                    known = cached.get(entry.name)
                    if type(known) is list and len(known) == 4 and known[0] == entry.inode():
                        fresh[entry.name] = known  # the name was checked to be an IP when it was indexed
                        continue
                    if ip_from_name(entry.name) is None:
                        continue
                    owner = self._read_owner(entry.name)
                    if owner is not None:
                        fresh[entry.name] = [entry.inode(), owner.container_id, owner.ifname, None]
        except OSError as exc:
            raise _store_error("list", self.dir, exc) from exc
        if fresh != cached:
            self._index_dirty = True
        self._index = fresh
        return fresh

    def _save_index(self) -> None:
        if not self._index_dirty or self._index is None:
            return
        body = {"version": _INDEX_VERSION, "entries": self._index}
        _rewrite_hint(self._path(INDEX_NAME), _INDEX_ENCODER.encode(body).encode())
        self._index_dirty = False

    def _forget(self, name: str) -> None:
        if self.index().pop(name, None) is not None:
            self._index_dirty = True

    # ----------------------------------------------------------------- the Store protocol
    def reserve(self, container_id: str, ifname: str, ip: IPAddress, range_id: int) -> bool:
        validate_owner(container_id, ifname)
        name = str(ip)
        path = self._path(name)
        index = self.index()
        data = f"{container_id}\r\n{ifname}".encode()
        try:
            inode = self._write_reservation(path, data)
        except OSError as exc:
            if exc.errno not in _NO_SPACE or not self._give_up_own_files():
                raise _store_error("reserve", path, exc) from exc
            try:
                inode = self._write_reservation(path, data)
            except OSError as exc2:
                raise _store_error("reserve", path, exc2) from exc2
        if inode is None:
            return False
        index[name] = [inode, container_id, ifname, self.boot_id]
        self._index_dirty = True
        self._unsynced.append(path)
        _rewrite_hint(self._path(f"{LAST_RESERVED_PREFIX}{range_id}"), name.encode())
        return True

    def _write_reservation(self, path: str, data: bytes) -> Optional[int]:
        """Create the reservation file holding ``data``; its inode, or None when the IP is taken. On a failure
        nothing of it is left (OSError)."""
        fd = self._create_reservation(path)
        if fd is None:
            return None
        try:
            try:
                write_all(fd, data)
                return os.fstat(fd).st_ino
            finally:
                os.close(fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise

    def _give_up_own_files(self) -> bool:
        """No room for a reservation: delete the index and the boot-ID record, hints only we read (the index
        is rebuilt from the reservations; without a record the reclaim decides by the IDs the index recorded,
        now none). True when anything was deleted. The reservation is what the call is for."""
        freed = False
        for name in (INDEX_NAME, BOOT_ID_NAME):
            try:
                os.unlink(self._path(name))
                freed = True
            except OSError:
                pass
        if freed:
            log.warning("%s is full: deleted the index and the boot-ID record to make room for a reservation",
                        self.dir)
        return freed

    def _create_reservation(self, path: str) -> Optional[int]:
        """A new reservation file's fd, or None when the IP is taken. ``O_EXCL`` fails on anything already
        there, a symlink included. An empty regular file there is a crash's leftover (written under this same
        lock, a reservation is never seen half-made): it is replaced, once."""
        try:
            return os.open(path, _CREATE_FLAGS, 0o600)
        except FileExistsError:
            pass
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            st = None
        if st is not None and not (stat.S_ISREG(st.st_mode) and st.st_size == 0):
            return None
        if st is not None:
            log.warning("reusing %s: an empty reservation file holds no one's address", path)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            self._forget(os.path.basename(path))
        try:
            return os.open(path, _CREATE_FLAGS, 0o600)
        except FileExistsError:
            return None

    def last_reserved_ip(self, range_id: int) -> Optional[IPAddress]:
        """The hint where the last walk stopped; None when missing, torn or unreadable (the walk then starts at
        the range's beginning)."""
        try:
            return ipaddress.ip_address(read_small(self._path(f"{LAST_RESERVED_PREFIX}{range_id}"), 256)
                                        .decode().strip())
        except (OSError, ValueError, UnicodeDecodeError):
            return None

    def release_ip(self, ip: IPAddress) -> None:
        name = str(ip)
        try:
            os.unlink(self._path(name))
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise _store_error("release", self._path(name), exc) from exc
        self._forget(name)

    def release_if_ownerless(self, ip: IPAddress) -> bool:
        """Release ``ip`` when its file names no owner (empty or blank: torn by a crash), so the DEL of the
        attachment that the runtime says held it (its ``prevResult``) still frees it. A file naming anyone is
        left alone: the address may have been handed to someone else since."""
        owner = self._read_owner(str(ip))
        if owner is None or owner.container_id:
            return False
        self.release_ip(ip)
        return True

    def _matching(self, container_id: str, ifname: str) -> list[str]:
        """Index entries of the attachment, each confirmed by reading its file (the source of truth)."""
        container_id = container_id.strip()
        names = []
        index = self.index()
        for name, (inode, cid, ifn, _) in list(index.items()):
            if cid != container_id or (ifn is not None and ifn != ifname):  # Owner.matches, inlined: hot loop
                continue
            owner = self._read_owner(name)
            if owner is None:
                self._forget(name)
            elif owner.matches(container_id, ifname):
                names.append(name)
            else:
                index[name] = [inode, owner.container_id, owner.ifname, None]
                self._index_dirty = True
        return names

    def _matching_by_full_scan(self, container_id: str, ifname: str) -> list[str]:
        """Read every reservation file, as upstream does on each DEL; refreshes the index on the way."""
        return [str(ip) for ip, owner in self.reservations() if owner.matches(container_id, ifname)]

    def get_by_id(self, container_id: str, ifname: str) -> list[IPAddress]:
        return [ipaddress.ip_address(n) for n in self._matching(container_id, ifname)]

    def find_by_id(self, container_id: str, ifname: str) -> list[IPAddress]:
        """Like :meth:`get_by_id`, but reads every file when the index knows nothing (for CHECK)."""
        names = self._matching(container_id, ifname) or self._matching_by_full_scan(container_id, ifname)
        return [ipaddress.ip_address(n) for n in names]

    def release_by_id(self, container_id: str, ifname: str) -> list[IPAddress]:
        names = self._matching(container_id, ifname) or self._matching_by_full_scan(container_id, ifname)
        released = []
        for name in names:
            ip = ipaddress.ip_address(name)
            self.release_ip(ip)
            released.append(ip)
        return released

    def reservations(self) -> list[tuple[IPAddress, Owner]]:
        """Read every reservation file (the source of truth) and rebuild the index from what was read."""
        out: list[tuple[IPAddress, Owner]] = []
        fresh: dict[str, _Entry] = {}
        known = self._index if self._index is not None else self._load_index_file()
        try:
            with os.scandir(self.dir) as entries:
                for entry in entries:
                    ip = ip_from_name(entry.name)
                    if ip is None:
                        continue
                    owner = self._read_owner(entry.name)
                    if owner is not None:
                        out.append((ip, owner))
                        now = [entry.inode(), owner.container_id, owner.ifname]
                        was = known.get(entry.name)
                        made_in = was[3] if type(was) is list and len(was) == 4 and was[:3] == now else None
                        fresh[entry.name] = [*now, made_in]
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise _store_error("list", self.dir, exc) from exc
        if fresh != self._index:
            self._index_dirty = True
        self._index = fresh
        return out

    # ----------------------------------------------------------------- reboot reclaim
    def recorded_boot_id(self) -> Optional[str]:
        """The boot ID recorded by the last call; None when never recorded, unreadable or torn (the record ends
        with a line break: a write cut short reads as no record)."""
        try:
            text = read_small(self._path(BOOT_ID_NAME), 256).decode("ascii", "replace")
        except OSError:
            return None
        if not (text.startswith(BOOT_ID_PREFIX) and text.endswith("\n")):
            return None
        boot_id = text[len(BOOT_ID_PREFIX):-1]
        return boot_id if _BOOT_ID_RE.fullmatch(boot_id) else None

    def reclaim_after_reboot(self) -> list[IPAddress]:
        """Release every reservation made in an earlier boot than :attr:`boot_id`; the caller holds the lock.

        No attachment survives a reboot, and after a hard one no runtime sends the DELs (containerd never
        calls GC either): without this, the addresses of every pod that died with the node leak. The first call
        that finds another boot ID in ``.cni-boot-id`` than the kernel's decides, for each reservation:

        - made by us (the index recorded the boot ID it was made in, and the file is still the one recorded:
          same inode, same owner): released when that ID is not this boot's. No clock is involved;
        - any other file (made by Go's host-local, or an index lost): released when its mtime is before this
          boot's start (``btime``), and only when a record of an earlier boot exists (a first run or an upgrade
          cannot know which boot a file is from). A clock stepped forward after boot can make a file of this
          boot look older: that is the limit of what a file without a boot ID can tell.

        Then the new ID is recorded (a hint: when it cannot be written the next call decides again, the same
        way). Costs one small read per call when nothing changed.
        """
        if self.boot_id is None:
            return []
        recorded = self.recorded_boot_id()
        if recorded == self.boot_id:
            return []
        booted: Optional[float] = None
        if recorded is not None:
            try:
                booted = boot_time()
            except OSError as exc:
                log.warning("reboot reclaim by boot ID only: cannot read the boot time: %s", exc)
        released = [ipaddress.ip_address(name) for name in self._earlier_boots(booted)]
        for ip in released:
            self.release_ip(ip)
        if released or recorded is not None:
            log.info("boot ID changed (%s -> %s): released %d reservations of an earlier boot: %s",
                     recorded, self.boot_id, len(released), ", ".join(map(str, released)) or "none")
        _rewrite_hint(self._path(BOOT_ID_NAME), f"{BOOT_ID_PREFIX}{self.boot_id}\n".encode())
        return released

    def _earlier_boots(self, booted: Optional[float]) -> list[str]:
        """Names of the reservations made in an earlier boot (see :meth:`reclaim_after_reboot`); ``booted``
        None: only those whose boot ID we recorded."""
        stale = []
        for name, (_inode, cid, ifname, made_in) in list(self.index().items()):
            if isinstance(made_in, str):
                owner = self._read_owner(name)
                if owner is not None and (owner.container_id, owner.ifname) == (cid, ifname):
                    if made_in != self.boot_id:
                        stale.append(name)
                    continue
            if booted is not None:
                try:
                    if os.lstat(self._path(name)).st_mtime < booted:
                        stale.append(name)
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    raise _store_error("stat", self._path(name), exc) from exc
        return stale

    # ----------------------------------------------------------------- read-only views (no lock)
    def listed_ips(self) -> list[IPAddress]:
        """IPs reserved according to the file names alone (cheap; STATUS uses it). [] when the dir is missing."""
        try:
            with os.scandir(self.dir) as entries:
                return [ip for ip in (ip_from_name(e.name) for e in entries) if ip is not None]
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise _store_error("list", self.dir, exc) from exc

    def unusable_reason(self) -> Optional[str]:
        """Why ADD could not write here (None when it can): checked without creating anything."""
        path = self.dir
        while not os.path.exists(path):
            parent = os.path.dirname(path)
            if parent == path:
                break
            path = parent
        if not os.path.isdir(path):
            return f"{path} is not a directory"
        if not os.access(path, os.W_OK | os.X_OK):
            return f"{path} is not writable"
        if path == self.dir:
            lock_path = self._path(LOCK_NAME)
            try:
                if not stat.S_ISREG(os.lstat(lock_path).st_mode):
                    return f"{lock_path} is not a regular file"
            except FileNotFoundError:
                pass
        return None


def _rewrite_hint(path: str, data: bytes) -> None:
    """Write a hint (``last_reserved_ip.N``, the index, the boot-ID record) in place, as Go writes
    ``last_reserved_ip``; when it cannot be written, that is logged: a hint never fails a call.

    In place, not through a temporary file and a rename: on a full disk the file's own pages take the new
    contents, where a temporary copy needs more (and ext4 writes a third of the bytes). A write cut short (a
    crash, no space) leaves a partial file, which reads as absent (or, for ``last_reserved_ip``, as another
    place to start the walk). Whatever is at ``path`` is written only when it is a regular file of one link;
    anything else (a planted symlink, FIFO or hard link) is replaced, never written through.
    """
    try:
        fd = _open_for_rewrite(path)
        try:
            _overwrite(fd, data)
        finally:
            os.close(fd)
    except OSError as exc:
        log.warning("cannot write %s: %s (a hint: the call goes on, a later one rewrites it)", path,
                    exc.strerror or exc)


def _overwrite(fd: int, data: bytes) -> None:
    """``data`` over the file's start, then the file cut to its length: the blocks (pages) it has are reused,
    so a full disk has room for it, and ext4 starts no writeback of its own (it does on close after a
    truncation to zero). Cut short, the file holds the new start with the old tail: no longer a valid index
    or boot-ID record (absent)."""
    view = memoryview(data)
    offset = 0
    while offset < len(view):
        offset += os.pwrite(fd, view[offset:], offset)
    os.ftruncate(fd, len(view))


def _open_for_rewrite(path: str) -> int:
    """A writable fd on ``path``: the regular file of one link there, or a new one in place of anything else."""
    try:
        fd = os.open(path, _REWRITE_FLAGS, 0o600)
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.ENXIO):  # a symlink; a FIFO without a reader
            raise
    else:
        try:
            st = os.fstat(fd)
        except OSError:
            os.close(fd)
            raise
        if stat.S_ISREG(st.st_mode) and st.st_nlink == 1:
            return fd
        os.close(fd)
    os.unlink(path)
    return os.open(path, _CREATE_FLAGS, 0o600)
