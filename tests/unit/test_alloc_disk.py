"""The disk store in temp dirs: upstream's file format, the index cache (never trusted over the files), GC."""

from __future__ import annotations

import ipaddress
import json
import os
import stat
from pathlib import Path

import pytest

from cni_common.alloc import disk, gc
from cni_common.alloc.store import Owner
from cni_common.errors import CNIError, ErrorCode

ip = ipaddress.ip_address


@pytest.fixture
def store(tmp_path: Path) -> disk.DiskStore:
    return disk.DiskStore(str(tmp_path), "net1")


def names(store: disk.DiskStore) -> set[str]:
    return set(os.listdir(store.dir))


def test_reserve_writes_upstream_format(store):
    with store.lock():
        assert store.reserve("c1", "eth0", ip("10.0.0.2"), 0)
        assert store.reserve("c1", "eth0", ip("fd00::2"), 1)
        assert not store.reserve("c2", "eth0", ip("10.0.0.2"), 0)
    d = Path(store.dir)
    assert (d / "10.0.0.2").read_bytes() == b"c1\r\neth0"
    assert (d / "fd00::2").read_bytes() == b"c1\r\neth0"
    assert (d / "last_reserved_ip.0").read_bytes() == b"10.0.0.2"
    assert (d / "last_reserved_ip.1").read_bytes() == b"fd00::2"
    assert (d / "lock").read_bytes() == b""
    assert stat.S_IMODE((d / "10.0.0.2").stat().st_mode) == 0o600
    assert stat.S_IMODE(d.stat().st_mode) == 0o755
    assert not [n for n in names(store) if n.endswith(".tmp")]
    with store.lock():
        assert store.last_reserved_ip(0) == ip("10.0.0.2") and store.last_reserved_ip(5) is None


def test_release_by_id_and_legacy_files(store):
    with store.lock():
        store.reserve("c1", "eth0", ip("10.0.0.2"), 0)
        store.reserve("c1", "eth1", ip("10.0.0.3"), 0)
    Path(store.dir, "10.0.0.4").write_bytes(b"c1")           # id-only file of an old version
    Path(store.dir, "10.0.0.5").write_bytes(b"c2\r\neth0\n")  # trailing space is trimmed as Go does
    with store.lock():
        assert sorted(map(str, store.release_by_id("c1", "eth0"))) == ["10.0.0.2", "10.0.0.4"]
        assert store.release_by_id("c1", "eth0") == []
        assert store.get_by_id("c2", "eth0") == [ip("10.0.0.5")]
    assert names(store) >= {"10.0.0.3", "10.0.0.5", "lock", "last_reserved_ip.0"}
    assert "10.0.0.2" not in names(store) and "10.0.0.4" not in names(store)


def test_release_reads_only_the_attachments_files(store, monkeypatch):
    with store.lock():
        for i in range(2, 60):
            store.reserve(f"c{i}", "eth0", ip(f"10.0.0.{i}"), 0)
    reads: list[str] = []
    real = disk.DiskStore._read_owner
    monkeypatch.setattr(disk.DiskStore, "_read_owner", lambda self, n: reads.append(n) or real(self, n))
    with store.lock():
        assert store.release_by_id("c7", "eth0") == [ip("10.0.0.7")]
    assert reads == ["10.0.0.7"]


def test_files_written_behind_the_index_are_seen(store):
    """Go's host-local does not maintain the index: new files and replaced files must still be found."""
    with store.lock():
        store.reserve("c1", "eth0", ip("10.0.0.2"), 0)
    Path(store.dir, "10.0.0.9").write_bytes(b"go1\r\neth0")    # a reservation made by Go
    os.unlink(Path(store.dir, "10.0.0.2"))                     # Go released c1 ...
    Path(store.dir, "10.0.0.2").write_bytes(b"go2\r\neth0")    # ... and gave the IP to go2
    with store.lock():
        assert store.get_by_id("go1", "eth0") == [ip("10.0.0.9")]
        assert store.release_by_id("c1", "eth0") == []
        assert store.release_by_id("go2", "eth0") == [ip("10.0.0.2")]


def test_stale_index_entry_never_releases_someone_else(store):
    with store.lock():
        store.reserve("c1", "eth0", ip("10.0.0.2"), 0)
    # Rewrite the file in place (same inode): the index still says c1, the file says c2.
    with open(Path(store.dir, "10.0.0.2"), "r+b") as fh:
        fh.write(b"c2\r\neth0")
    with store.lock():
        assert store.release_by_id("c1", "eth0") == []
        assert store.get_by_id("c2", "eth0") == [ip("10.0.0.2")]


def test_index_miss_falls_back_to_reading_every_file(store):
    with store.lock():
        store.reserve("c1", "eth0", ip("10.0.0.2"), 0)
    index_path = Path(store.dir, disk.INDEX_NAME)
    body = json.loads(index_path.read_text())
    body["entries"]["10.0.0.2"][1] = "someone-else"  # a wrong cache with the right inode
    index_path.write_text(json.dumps(body))
    with store.lock():
        assert store.release_by_id("c1", "eth0") == [ip("10.0.0.2")]


def test_corrupt_or_missing_index_is_rebuilt(store):
    with store.lock():
        store.reserve("c1", "eth0", ip("10.0.0.2"), 0)
    Path(store.dir, disk.INDEX_NAME).write_text("{not json")
    with store.lock():
        assert store.get_by_id("c1", "eth0") == [ip("10.0.0.2")]
    assert json.loads(Path(store.dir, disk.INDEX_NAME).read_text())["entries"]["10.0.0.2"][1:] == ["c1", "eth0", None]
    os.unlink(Path(store.dir, disk.INDEX_NAME))
    with store.lock():
        assert store.release_by_id("c1", "eth0") == [ip("10.0.0.2")]


def test_reservations_ignore_bookkeeping_files(store):
    with store.lock():
        store.reserve("c1", "eth0", ip("10.0.0.2"), 0)
        Path(store.dir, "README").write_text("x")
        assert store.reservations() == [(ip("10.0.0.2"), Owner("c1", "eth0"))]
    assert sorted(map(str, store.listed_ips())) == ["10.0.0.2"]


@pytest.mark.parametrize("name", ["../etc", "a/b", ".hidden", "", "..", "x\ny"])
def test_network_name_cannot_escape_data_dir(tmp_path, name):
    with pytest.raises(CNIError) as exc:
        disk.DiskStore(str(tmp_path), name)
    assert exc.value.code == ErrorCode.INVALID_CONFIG


@pytest.mark.parametrize("cid,ifname", [("a\r\nb", "eth0"), ("../x", "eth0"), ("c1", "et\r\nh0"), ("c1", "a/b"),
                                        ("c1", "")])
def test_owner_cannot_corrupt_the_format(store, cid, ifname):
    with store.lock(), pytest.raises(CNIError):
        store.reserve(cid, ifname, ip("10.0.0.2"), 0)
    assert "10.0.0.2" not in names(store)


def test_gc_keeps_valid_releases_the_rest(store):
    with store.lock():
        store.reserve("keep", "eth0", ip("10.0.0.2"), 0)
        store.reserve("keep", "eth1", ip("10.0.0.3"), 0)
        store.reserve("gone", "eth0", ip("10.0.0.4"), 0)
    Path(store.dir, "10.0.0.5").write_bytes(b"keep")   # legacy, its container is still valid
    Path(store.dir, "10.0.0.6").write_bytes(b"gone2")  # legacy, stale
    with store.lock():
        released = gc.collect(store, {("keep", "eth0")})
    assert sorted(map(str, released)) == ["10.0.0.3", "10.0.0.4", "10.0.0.6"]
    assert names(store) == {"10.0.0.2", "10.0.0.5", "lock", "last_reserved_ip.0", disk.INDEX_NAME}
    with store.lock():
        gc.collect(store, set())
    assert names(store) == {"lock", "last_reserved_ip.0", disk.INDEX_NAME}


def test_unusable_reason(tmp_path):
    assert disk.DiskStore(str(tmp_path / "not" / "yet"), "n").unusable_reason() is None
    (tmp_path / "file").write_text("x")
    assert "not a directory" in disk.DiskStore(str(tmp_path / "file"), "n").unusable_reason()
