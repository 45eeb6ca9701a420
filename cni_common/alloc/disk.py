"""host-local's on-disk store, byte-compatible with the Go plugin so both can share one data dir.

Layout of ``<dataDir>/<network>/`` (directory 0755), the compatibility contract:

- ``<ip>``: one file per reserved IP (mode 0600), containing ``<containerID>\\r\\n<ifname>``; files from old
  versions hold only ``<containerID>`` and match any ifname of that container;
- ``last_reserved_ip.<N>``: the last IP reserved in range set N (written atomically: temp file + rename);
- ``lock``: an empty file, ``flock(LOCK_EX)``-ed around every operation, exactly as go-filemutex does, so
  our processes and Go's exclude each other.

Beyond upstream, ``.cni-index.json`` caches ``ip -> (inode, containerID, ifname)``. It is only a cache: every
operation lists the directory (names and inode numbers, no file reads), reads just the IP files that are new
or whose inode changed (e.g. written by the Go plugin), and re-reads a file before removing it. So a DEL reads
a handful of files instead of all of them. When the index finds nothing for an attachment, DEL falls back to
reading every file, which also covers an inode number reused for the same IP name behind our back.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import re

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


class DiskStore:
    """The reservations of network ``network`` under ``data_dir``; implements :class:`.store.Store`."""

    def __init__(self, data_dir: str, network: str) -> None:
        validate_network_name(network)
        self.dir = os.path.join(data_dir, network)
        self._index: Optional[dict[str, _Entry]] = None
        self._index_dirty = False

    # ----------------------------------------------------------------- locking and the index cache
    def ensure_dir(self) -> None:
        """Create ``<dataDir>/<network>`` (0755) when missing."""
        try:
            os.makedirs(self.dir, mode=0o755, exist_ok=True)
        except OSError as exc:
            raise _store_error("create data dir", self.dir, exc) from exc

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """flock the ``lock`` file; the index is refreshed lazily inside and saved on the way out."""
        self.ensure_dir()
        path = os.path.join(self.dir, LOCK_NAME)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise _store_error("open lock file", path, exc) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._index, self._index_dirty = None, False
            try:
                yield
                self._save_index()
            finally:
                self._index = None
        finally:
            os.close(fd)  # closing drops the flock

    def _path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def _read_owner(self, name: str) -> Optional[Owner]:
        try:
            with open(self._path(name), "rb") as fh:
                return parse_owner(fh.read())
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("cannot read reservation %s: %s", self._path(name), exc)
            return None

    def _load_index_file(self) -> dict[str, _Entry]:
        """The saved index, unchecked: :meth:`index` validates each entry against the directory listing."""
        try:
            with open(self._path(INDEX_NAME), "rb") as fh:
                raw = json.load(fh)
            if isinstance(raw, dict) and raw.get("version") == _INDEX_VERSION and isinstance(raw.get("entries"), dict):
                return raw["entries"]
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
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
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            return False
        except OSError as exc:
            raise _store_error("reserve", path, exc) from exc
        try:
            try:
                os.write(fd, f"{container_id}\r\n{ifname}".encode())
                inode = os.fstat(fd).st_ino
            finally:
                os.close(fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise _store_error("write reservation", path, exc) from exc
        index[name] = [inode, container_id, ifname]
        self._index_dirty = True
        last_path = self._path(f"{LAST_RESERVED_PREFIX}{range_id}")
        try:
            _atomic_write(last_path, name.encode())
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(path)
            self._forget(name)
            raise _store_error("write", last_path, exc) from exc
        return True

    def last_reserved_ip(self, range_id: int) -> Optional[IPAddress]:
        try:
            with open(self._path(f"{LAST_RESERVED_PREFIX}{range_id}"), "rb") as fh:
                return ipaddress.ip_address(fh.read().decode().strip())
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
            if os.path.exists(lock_path) and not os.path.isfile(lock_path):
                return f"{lock_path} is not a regular file"
        return None


def _atomic_write(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same directory and ``os.replace``."""
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)
