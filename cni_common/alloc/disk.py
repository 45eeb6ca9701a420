"""host-local's on-disk store, byte-compatible with the Go plugin so both can share one data dir.

Layout of ``<dataDir>/<network>/`` (directory 0755), the compatibility contract:

- ``<ip>``: one file per reserved IP (mode 0600), containing ``<containerID>\\r\\n<ifname>``; files from old
  versions hold only ``<containerID>`` and match any ifname of that container;
- ``last_reserved_ip.<N>``: the last IP reserved in range set N (written atomically: temp file + rename);
- ``lock``: an empty file, ``flock(LOCK_EX)``-ed around every operation, exactly as go-filemutex does, so
  our processes and Go's exclude each other.

Beyond upstream, ``.cni-boot-id`` records the kernel's boot ID (see :meth:`DiskStore.reclaim_after_reboot`), and
``.cni-index.json`` caches ``ip -> (inode, containerID, ifname)``. It is only a cache: every
operation lists the directory (names and inode numbers, no file reads), reads just the IP files that are new
or whose inode changed (e.g. written by the Go plugin), and re-reads a file before removing it. So a DEL reads
a handful of files instead of all of them. When the index finds nothing for an attachment, DEL falls back to
reading every file, which also covers an inode number reused for the same IP name behind our back.

File safety (see docs/threat-model.md): every file in the network directory is opened with ``O_NOFOLLOW``
(a planted symlink is never followed, for reading or writing) and ``O_NONBLOCK`` (a planted FIFO cannot hang
a read); reservations are created ``O_EXCL``; rewritten files go through a temporary file of a random name
created ``O_EXCL`` in the same directory, then ``os.replace``. A reservation is fsync-ed, with its directory,
before the ADD returns it. An empty reservation file (a power cut between create and write) holds no one's
address: it is logged and reused. Directories (``dataDir`` and the network's) may be symlinks: the
administrator chose them.
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
    from typing import Iterator, Optional

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
#: Larger than any file of ours (a reservation holds an ID and an ifname): a planted big file is not read whole.
_MAX_READ = 64 * 1024
_INDEX_VERSION = 1
_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.\-]*\Z")

# ip name -> [inode, container id, ifname or None]; kept as the JSON lists they are stored as, so loading
# and saving the index is one json call each (it is read and written on every operation).
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
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
        return os.read(fd, limit)
    finally:
        os.close(fd)


def current_boot_id(path: str = KERNEL_BOOT_ID) -> Optional[str]:
    """The kernel's boot ID (None when it cannot be read: then no reclaim happens)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(128).decode("ascii", "replace").strip() or None
    except OSError:
        return None


def boot_time() -> float:
    """When this boot began, on the wall clock (``btime`` of /proc/stat), as file mtimes are recorded."""
    with open("/proc/stat", "rb") as fh:
        for line in fh:
            if line.startswith(b"btime "):
                return float(line.split()[1])
    raise OSError(errno.ENOENT, "no btime in /proc/stat")


class DiskStore:
    """The reservations of network ``network`` under ``data_dir``; implements :class:`.store.Store`."""

    def __init__(self, data_dir: str, network: str) -> None:
        validate_network_name(network)
        self.dir = os.path.join(data_dir, network)
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

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """flock the ``lock`` file; the index is refreshed lazily inside and saved on the way out.

        The lock is opened ``O_NOFOLLOW`` (a planted symlink, dangling or not, is refused, never created or
        locked in its place) and must be a regular file (a FIFO there would hang the open without
        ``O_NONBLOCK``). Refusing is the only safe answer: replacing it while Go's host-local holds a lock on
        the file it points to would break the mutual exclusion.
        """
        self.ensure_dir()
        path = os.path.join(self.dir, LOCK_NAME)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)
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
            self._index, self._index_dirty, self._unsynced = None, False, []
            try:
                yield
                self._make_durable()
                self._save_index()
            finally:
                self._index, self._unsynced = None, []
        finally:
            os.close(fd)  # closing drops the flock

    def _make_durable(self) -> None:
        """fsync the reservations written under this lock, then the directory (their names, and the renamed
        ``last_reserved_ip.N``), before the lock is released and the ADD returns: an address handed to a pod
        must not be handed out again after a power cut. Once per ADD, whatever the number of range sets (one
        journal commit, not one per file: ~2-5 ms each on a VM disk). When that fails, the ADD fails: the
        reservations are removed, so it leaves the store as it found it."""
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
        return os.path.join(self.dir, name)

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
            raw = json.loads(read_small(self._path(INDEX_NAME), 16 * 1024 * 1024))
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
                    if type(known) is list and len(known) == 3 and known[0] == entry.inode():
                        fresh[entry.name] = known  # the name was checked to be an IP when it was indexed
                        continue
                    if ip_from_name(entry.name) is None:
                        continue
                    owner = self._read_owner(entry.name)
                    if owner is not None:
                        fresh[entry.name] = [entry.inode(), owner.container_id, owner.ifname]
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
        try:
            _atomic_write(self._path(INDEX_NAME), json.dumps(body, separators=(",", ":")).encode())
        except OSError as exc:
            log.warning("cannot save index %s: %s", self._path(INDEX_NAME), exc)
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
        try:
            fd = self._create_reservation(path)
        except OSError as exc:
            raise _store_error("reserve", path, exc) from exc
        if fd is None:
            return False
        try:
            try:
                write_all(fd, f"{container_id}\r\n{ifname}".encode())
                inode = os.fstat(fd).st_ino
            finally:
                os.close(fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise _store_error("write reservation", path, exc) from exc
        index[name] = [inode, container_id, ifname]
        self._index_dirty = True
        self._unsynced.append(path)
        last_path = self._path(f"{LAST_RESERVED_PREFIX}{range_id}")
        try:
            _atomic_write(last_path, name.encode())
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(path)
            self._forget(name)
            raise _store_error("write", last_path, exc) from exc
        return True

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
        for name, (inode, cid, ifn) in list(index.items()):
            if cid != container_id or (ifn is not None and ifn != ifname):  # Owner.matches, inlined: hot loop
                continue
            owner = self._read_owner(name)
            if owner is None:
                self._forget(name)
            elif owner.matches(container_id, ifname):
                names.append(name)
            else:
                index[name] = [inode, owner.container_id, owner.ifname]
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
        try:
            with os.scandir(self.dir) as entries:
                for entry in entries:
                    ip = ip_from_name(entry.name)
                    if ip is None:
                        continue
                    owner = self._read_owner(entry.name)
                    if owner is not None:
                        out.append((ip, owner))
                        fresh[entry.name] = [entry.inode(), owner.container_id, owner.ifname]
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
        """The boot ID recorded by the last call (None when never recorded or unreadable)."""
        try:
            text = read_small(self._path(BOOT_ID_NAME), 256).decode("ascii", "replace").strip()
        except OSError:
            return None
        if not text.startswith(BOOT_ID_PREFIX):
            return None
        return text[len(BOOT_ID_PREFIX):].strip() or None

    def reclaim_after_reboot(self, boot_id: Optional[str]) -> list[IPAddress]:
        """Release every reservation made in an earlier boot; the caller holds the lock.

        No attachment survives a reboot, and after a hard one no runtime sends the DELs (containerd never
        calls GC either): without this, the addresses of every pod that died with the node leak. The boot ID
        is recorded in ``.cni-boot-id``; the first call that finds another one releases each reservation
        whose file is older than this boot (its mtime before ``btime``), so reservations Go's host-local made
        in this boot before our first call are kept. A missing record (first run, upgrade) releases nothing.
        Costs one small read per call when nothing changed.
        """
        if boot_id is None:
            return []
        recorded = self.recorded_boot_id()
        if recorded == boot_id:
            return []
        released: list[IPAddress] = []
        if recorded is not None:
            try:
                booted = boot_time()
            except OSError as exc:
                log.warning("no reboot reclaim: cannot read the boot time: %s", exc)
                booted = None
            if booted is not None:
                released = self._release_older_than(booted)
                log.info("boot ID changed (%s -> %s): released %d reservations of the earlier boot: %s",
                         recorded, boot_id, len(released), ", ".join(map(str, released)) or "none")
        try:
            _atomic_write(self._path(BOOT_ID_NAME), f"{BOOT_ID_PREFIX}{boot_id}\n".encode(), durable=True)
            fsync_dir(self.dir)
        except OSError as exc:
            raise _store_error("record the boot ID in", self._path(BOOT_ID_NAME), exc) from exc
        return released

    def _release_older_than(self, when: float) -> list[IPAddress]:
        released = []
        try:
            with os.scandir(self.dir) as entries:
                stale = [e.name for e in entries
                         if ip_from_name(e.name) is not None and e.stat(follow_symlinks=False).st_mtime < when]
        except OSError as exc:
            raise _store_error("list", self.dir, exc) from exc
        for name in stale:
            ip = ipaddress.ip_address(name)
            self.release_ip(ip)
            released.append(ip)
        return released

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


def _atomic_write(path: str, data: bytes, durable: bool = False) -> None:
    """Write ``data`` to ``path`` via a new temp file in the same directory and ``os.replace``.

    The temp file is what ``tempfile.mkstemp`` makes (a random name, ``O_EXCL | O_NOFOLLOW``, mode 0600), made
    here without importing ``tempfile`` (and ``random``, ``shutil``...: milliseconds on every ADD). A fixed
    name could be a planted symlink. Its name starts with a dot: never taken for an IP, by us or by Go.
    ``os.replace`` swaps a symlink planted at ``path`` itself for the file, never writing through it.
    ``durable`` fsyncs the data before the rename (the caller fsyncs the directory).
    """
    directory, base = os.path.split(path)
    for _ in range(100):
        tmp = os.path.join(directory, f".{base}.{os.urandom(6).hex()}.tmp")
        try:
            fd = os.open(tmp, _CREATE_FLAGS, 0o600)
            break
        except FileExistsError:
            continue
    else:
        raise OSError(errno.EEXIST, "no free temporary name", path)
    try:
        try:
            write_all(fd, data)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
