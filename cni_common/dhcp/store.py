"""Lease records on disk: what a restarted daemon needs to keep (re-acquire) the containers' addresses.

Upstream keeps leases in memory only (containernetworking/plugins#235): after a restart nothing is renewed and
the server hands the still-used addresses to others. One file per lease, named by a hash of its key, holds the
request that made it (netns, ifname, ipam config) and the server's last ACK. Written as every durable file of the
suite is: a temporary file in the same directory (``mkstemp``: ``O_EXCL``), fsync, rename, fsync of the directory.
Read with ``O_NOFOLLOW`` (a link planted in the directory is never followed); a torn or foreign file is logged
and removed, never fatal.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
from typing import Any

from cni_common.durable import fsync_dir, write_all
from cni_common.log import get_logger

log = get_logger(__name__)

DEFAULT_LEASE_DIR = "/var/lib/cni/dhcp"
SUFFIX = ".lease.json"
RECORD_VERSION = 1


class LeaseStore:
    """The directory of lease records (created 0700 on first use)."""

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def _path(self, key: str) -> str:
        return os.path.join(self.directory, hashlib.sha256(key.encode()).hexdigest() + SUFFIX)

    def save(self, key: str, record: dict[str, Any]) -> None:
        """Write ``record`` for ``key`` durably (whole or not at all)."""
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        data = json.dumps({"version": RECORD_VERSION, "key": key, **record}, sort_keys=True).encode()
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=SUFFIX)
        try:
            write_all(fd, data)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            os.unlink(tmp)
            raise
        os.close(fd)
        os.replace(tmp, self._path(key))
        fsync_dir(self.directory)

    def remove(self, key: str) -> None:
        try:
            os.unlink(self._path(key))
        except FileNotFoundError:
            return
        fsync_dir(self.directory)

    def load_all(self) -> list[dict[str, Any]]:
        """Every readable record; torn, foreign or linked files are logged and removed."""
        try:
            names = sorted(os.listdir(self.directory))
        except FileNotFoundError:
            return []
        records = []
        for name in names:
            if not name.endswith(SUFFIX):
                continue
            path = os.path.join(self.directory, name)
            if name.startswith(".tmp-"):
                _discard(path, "a write a crash interrupted")
                continue
            record = _read(path)
            if record is None:
                continue
            if self._path(record["key"]) != path:
                _discard(path, "its name does not match its key")
                continue
            records.append(record)
        return records


def _read(path: str) -> dict[str, Any] | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        _discard(path, f"cannot be opened without following a link: {exc.strerror}")
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            _discard(path, "not a regular file")
            return None
        with os.fdopen(fd, "rb", closefd=False) as stream:
            data = stream.read(1 << 20)
    finally:
        os.close(fd)
    try:
        record = json.loads(data)
    except ValueError:
        _discard(path, "torn or not JSON")
        return None
    if (not isinstance(record, dict) or record.get("version") != RECORD_VERSION
            or not isinstance(record.get("key"), str) or not isinstance(record.get("request"), dict)):
        _discard(path, "not a lease record of this version")
        return None
    return record


def _discard(path: str, why: str) -> None:
    log.warning("dhcp lease store: removing %s: %s", path, why)
    try:
        os.unlink(path)
    except OSError as exc:
        log.warning("dhcp lease store: cannot remove %s: %s", path, exc)
