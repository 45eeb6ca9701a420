"""host-local's files against planted symlinks and FIFOs, torn files, durability, and the reboot reclaim.

Regression tests of issue 12 (defect 5 and "What to build" 3 and 4): each planted-file test wrote through the
link, created its target, hung, or handed out an address twice before the fix.
"""

from __future__ import annotations

import errno
import io
import ipaddress
import json
import os
import stat
import threading
from pathlib import Path
from typing import Any, Callable

import pytest

from cni_common.alloc import disk, gc
from cni_common.errors import CNIError, ErrorCode, PluginCode
from ipam import host_local

ip = ipaddress.ip_address


@pytest.fixture
def store(tmp_path: Path) -> disk.DiskStore:
    return disk.DiskStore(str(tmp_path / "data"), "net1")


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A file an attacker would like overwritten or created (stands in for /etc/shadow)."""
    path = tmp_path / "victim"
    path.write_bytes(b"precious")
    return path


def finishes(fn: Callable[[], Any], timeout: float = 20.0) -> Any:
    """Run ``fn`` on a thread; fail (instead of hanging the suite) when it blocks, e.g. on a FIFO."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "blocked (a planted FIFO was opened without O_NONBLOCK?)"
    if "error" in box:
        raise box["error"]
    return box.get("value")


# ------------------------------------------------------------------------------------------ planted files

@pytest.mark.parametrize("planted", [".last_reserved_ip.0.tmp", "..cni-index.json.tmp"])
def test_fixed_temporary_names_are_never_written_through(store, victim, planted):
    store.ensure_dir()
    os.symlink(victim, os.path.join(store.dir, planted))
    with store.lock():
        assert store.reserve("c1", "eth0", ip("10.0.0.2"), 0)
    assert victim.read_bytes() == b"precious"
    assert Path(store.dir, "last_reserved_ip.0").read_bytes() == b"10.0.0.2"
    assert not [n for n in os.listdir(store.dir) if n.endswith(".tmp") and n != planted]


def test_a_symlink_in_place_of_a_rewritten_file_is_replaced_not_followed(store, victim):
    store.ensure_dir()
    os.symlink(victim, os.path.join(store.dir, "last_reserved_ip.0"))
    os.symlink(victim, os.path.join(store.dir, disk.INDEX_NAME))
    with store.lock():
        assert store.reserve("c1", "eth0", ip("10.0.0.2"), 0)
    assert victim.read_bytes() == b"precious"
    assert not os.path.islink(os.path.join(store.dir, "last_reserved_ip.0"))


@pytest.mark.parametrize("dangling", [True, False])
def test_a_lock_that_is_a_symlink_is_refused(store, tmp_path, victim, dangling):
    store.ensure_dir()
    target = tmp_path / "created-by-attacker" if dangling else victim
    os.symlink(target, os.path.join(store.dir, "lock"))
    with pytest.raises(CNIError) as err:
        with store.lock():
            pass
    assert err.value.code == PluginCode.STORE_FAILURE and "symbolic link" in err.value.msg
    assert not (tmp_path / "created-by-attacker").exists()
    assert victim.read_bytes() == b"precious"


def test_a_lock_that_is_a_fifo_is_refused_without_hanging(store):
    store.ensure_dir()
    os.mkfifo(os.path.join(store.dir, "lock"))
    with pytest.raises(CNIError) as err:
        finishes(lambda: store.lock().__enter__())
    assert "not a regular file" in err.value.msg


def test_planted_fifo_and_symlink_reservations_neither_hang_nor_leak_content(store, victim):
    store.ensure_dir()
    os.mkfifo(os.path.join(store.dir, "10.0.0.7"))
    victim.write_bytes(b"c9\r\neth0")
    os.symlink(victim, os.path.join(store.dir, "10.0.0.8"))
    os.mkfifo(os.path.join(store.dir, "last_reserved_ip.0"))
    with store.lock():
        # The full scan reads every file: a FIFO must not block it, a link must not be read through.
        assert finishes(lambda: store.release_by_id("c9", "eth0")) == []
        assert finishes(lambda: store.last_reserved_ip(0)) is None
        assert not store.reserve("c1", "eth0", ip("10.0.0.7"), 0)  # the names are there: not handed out
        assert not store.reserve("c1", "eth0", ip("10.0.0.8"), 0)
    assert victim.read_bytes() == b"c9\r\neth0"


# ------------------------------------------------------------------------------------------ torn files, fsync

def test_an_empty_reservation_file_is_reported_and_reused(store, caplog):
    store.ensure_dir()
    Path(store.dir, "10.0.0.2").write_bytes(b"")  # a power cut between create and write
    with store.lock():
        owners = dict(store.reservations())
        assert owners[ip("10.0.0.2")].container_id == ""
        assert store.reserve("c1", "eth0", ip("10.0.0.2"), 0)
    assert Path(store.dir, "10.0.0.2").read_bytes() == b"c1\r\neth0"


def test_gc_reclaims_torn_and_empty_files(store):
    store.ensure_dir()
    Path(store.dir, "10.0.0.2").write_bytes(b"")
    Path(store.dir, "10.0.0.3").write_bytes(b"\xff\xfe\x00garbage\r")
    with store.lock():
        store.reserve("c1", "eth0", ip("10.0.0.4"), 0)
        released = gc.collect(store, {("c1", "eth0")})
    assert sorted(map(str, released)) == ["10.0.0.2", "10.0.0.3"]


def test_reservations_are_fsynced_with_their_directory_before_the_lock_is_released(store, monkeypatch):
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        mode = os.fstat(fd).st_mode
        synced.append("dir" if stat.S_ISDIR(mode) else os.readlink(f"/proc/self/fd/{fd}").rsplit("/", 1)[-1])
        real_fsync(fd)

    monkeypatch.setattr(disk.os, "fsync", recording_fsync)
    real_flock = disk.fcntl.flock
    monkeypatch.setattr(disk.fcntl, "flock", lambda fd, op: synced.append("locked") or real_flock(fd, op))
    with store.lock():  # a dual-stack ADD: one sync point for both (one journal commit), under the lock
        assert store.reserve("c1", "eth0", ip("10.0.0.2"), 0)
        assert store.reserve("c1", "eth0", ip("fd00::2"), 1)
    assert synced[0] == "locked" and sorted(synced[1:3]) == ["10.0.0.2", "fd00::2"] and synced[3] == "dir"
    with store.lock():  # a DEL promises nothing to a power cut: a reservation back from the dead is reclaimed
        store.release_by_id("c1", "eth0")
    assert synced[4:] == ["locked"]


def test_reservations_that_cannot_be_synced_are_released(store, monkeypatch):
    """The ADD fails (the disk cannot promise the reservation), so it must not keep the addresses either."""
    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    with store.lock():
        assert store.reserve("c0", "eth0", ip("10.0.0.9"), 0)
    monkeypatch.setattr(disk.os, "fsync", failing_fsync)
    with pytest.raises(CNIError) as err, store.lock():
        assert store.reserve("c1", "eth0", ip("10.0.0.2"), 0)
        assert store.reserve("c1", "eth0", ip("fd00::2"), 1)
    assert err.value.code == PluginCode.STORE_FAILURE
    assert store.listed_ips() == [ip("10.0.0.9")]  # the earlier, synced reservation stays


# ------------------------------------------------------------------------------------------ dataDir faults

def test_data_dir_that_is_a_regular_file_is_a_config_error(tmp_path):
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(CNIError) as err:
        disk.DiskStore(str(tmp_path / "file"), "net1").ensure_dir()
    assert err.value.code == ErrorCode.INVALID_CONFIG and "dataDir" in err.value.msg


def test_data_dir_on_a_read_only_file_system_is_the_environments_fault(tmp_path, monkeypatch):
    def read_only(*_a: Any, **_k: Any) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(disk.os, "makedirs", read_only)
    with pytest.raises(CNIError) as err:
        disk.DiskStore(str(tmp_path), "net1").ensure_dir()
    assert err.value.code == ErrorCode.INVALID_ENV and "dataDir" in err.value.msg


def test_lock_makes_the_missing_network_dir(tmp_path):
    """The lock is opened first and the directory made only when that fails (disk.DiskStore._acquire)."""
    store = disk.DiskStore(str(tmp_path / "a" / "b"), "net1")
    with store.lock():
        pass
    assert stat.S_IMODE(os.stat(store.dir).st_mode) == 0o755 & ~_umask()
    assert stat.S_ISREG(os.lstat(os.path.join(store.dir, disk.LOCK_NAME)).st_mode)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_lock_under_a_data_dir_that_is_a_regular_file_is_a_config_error(tmp_path):
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(CNIError) as err, disk.DiskStore(str(tmp_path / "file"), "net1").lock():
        pass
    assert err.value.code == ErrorCode.INVALID_CONFIG and "dataDir" in err.value.msg


def test_lock_where_the_data_dir_cannot_be_made_is_the_environments_fault(tmp_path, monkeypatch):
    def read_only(*_a: Any, **_k: Any) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(disk.os, "makedirs", read_only)
    with pytest.raises(CNIError) as err, disk.DiskStore(str(tmp_path / "missing"), "net1").lock():
        pass
    assert err.value.code == ErrorCode.INVALID_ENV and "dataDir" in err.value.msg


def test_lock_that_fails_inside_releases_the_flock_and_saves_nothing(store):
    with pytest.raises(RuntimeError), store.lock():
        store.ensure_dir()
        assert store.reserve("c1", "eth0", ip("10.0.0.2"), 0)
        raise RuntimeError("boom")
    assert not os.path.exists(os.path.join(store.dir, disk.INDEX_NAME))  # the index is saved on success only
    with store.lock():  # not still held
        assert store.get_by_id("c1", "eth0") == [ip("10.0.0.2")]


def test_read_small_reads_by_the_size_and_never_past_the_limit(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x" * 1000)
    assert disk.read_small(str(path)) == b"x" * 1000
    assert disk.read_small(str(path), 10) == b"x" * 10
    path.write_bytes(b"")
    assert disk.read_small(str(path)) == b""


# ------------------------------------------------------------------------------------------ reboot reclaim

def run(verb: str, conf: dict[str, Any], boot_file: Path, cid: str = "c1") -> tuple[int, Any]:
    env = {"CNI_COMMAND": verb, "CNI_CONTAINERID": cid, "CNI_NETNS": "/proc/1/ns/net" if verb != "DEL" else "",
           "CNI_IFNAME": "eth0", "CNI_PATH": "/nonexistent", "CNI_NETNS_OVERRIDE": "1",
           host_local.TEST_BOOT_ID_FILE_ENV: str(boot_file)}
    out = io.StringIO()
    rc = host_local.main(environ=env, stdin=io.BytesIO(json.dumps(conf).encode()), stdout=out, stderr=io.StringIO())
    return rc, json.loads(out.getvalue()) if out.getvalue().strip() else None


@pytest.fixture
def conf(tmp_path: Path) -> dict[str, Any]:
    return {"cniVersion": "1.1.0", "name": "net1",
            "ipam": {"type": "host-local", "dataDir": str(tmp_path / "data"), "ranges": [[{"subnet": "10.5.0.0/29"}]]}}


def boot(path: Path, boot_id: str) -> Path:
    path.write_text(boot_id + "\n")
    return path


def age(conf: dict[str, Any], name: str) -> None:
    """Make a reservation look made before this boot began (the reclaim compares mtimes with btime)."""
    earlier = disk.boot_time() - 3600
    os.utime(Path(conf["ipam"]["dataDir"], conf["name"], name), (earlier, earlier))


def files(conf: dict[str, Any]) -> set[str]:
    return set(os.listdir(Path(conf["ipam"]["dataDir"], conf["name"])))


def test_first_call_after_a_reboot_releases_the_earlier_boots_reservations(conf, tmp_path):
    boot_file = boot(tmp_path / "boot_id", "boot-a")
    assert run("ADD", conf, boot_file, "old1")[0] == 0
    assert run("ADD", conf, boot_file, "old2")[0] == 0
    age(conf, "10.5.0.2")
    age(conf, "10.5.0.3")
    # Go's host-local made a reservation in the new boot before our first call: it must survive.
    Path(conf["ipam"]["dataDir"], conf["name"], "10.5.0.6").write_bytes(b"go1\r\neth0")
    boot(boot_file, "boot-b")
    rc, out = run("ADD", conf, boot_file, "new1")
    assert rc == 0 and out["ips"][0]["address"] == "10.5.0.4/29"
    assert {"10.5.0.2", "10.5.0.3"}.isdisjoint(files(conf))
    assert {"10.5.0.4", "10.5.0.6"} <= files(conf)
    record = Path(conf["ipam"]["dataDir"], conf["name"], disk.BOOT_ID_NAME).read_text()
    assert record == "boot_id: boot-b\n"
    age(conf, "10.5.0.4")
    assert run("ADD", conf, boot_file, "new2")[0] == 0  # same boot: nothing more released
    assert "10.5.0.4" in files(conf)


def test_the_boot_id_record_can_never_match_a_container_id():
    """Go's host-local releases files whose trimmed contents equal an ID; IDs cannot hold ':' or ' '."""
    from cni_common.skel import validate_identifier

    with pytest.raises(CNIError):
        validate_identifier(disk.BOOT_ID_PREFIX + "x", "CNI_CONTAINERID", ErrorCode.INVALID_ENV)
    assert disk.ip_from_name(disk.BOOT_ID_NAME) is None


def test_del_and_gc_reclaim_too(conf, tmp_path):
    boot_file = boot(tmp_path / "boot_id", "boot-a")
    assert run("ADD", conf, boot_file, "old1")[0] == 0
    age(conf, "10.5.0.2")
    boot(boot_file, "boot-b")
    assert run("DEL", conf, boot_file, "someone-else")[0] == 0
    assert "10.5.0.2" not in files(conf)


def test_no_record_yet_releases_nothing(conf, tmp_path):
    """The first run of this version (or after an upgrade) cannot know which boot a reservation is from."""
    boot_file = boot(tmp_path / "boot_id", "boot-a")
    assert run("ADD", conf, boot_file, "old1")[0] == 0
    os.unlink(Path(conf["ipam"]["dataDir"], conf["name"], disk.BOOT_ID_NAME))
    os.unlink(Path(conf["ipam"]["dataDir"], conf["name"], disk.INDEX_NAME))  # a version without either
    age(conf, "10.5.0.2")
    boot(boot_file, "boot-b")
    assert run("ADD", conf, boot_file, "new1")[0] == 0
    assert "10.5.0.2" in files(conf)


def test_reclaim_can_be_turned_off(conf, tmp_path):
    conf["ipam"]["reclaimAfterReboot"] = False
    boot_file = boot(tmp_path / "boot_id", "boot-a")
    assert run("ADD", conf, boot_file, "old1")[0] == 0
    conf["ipam"]["reclaimAfterReboot"] = True
    assert run("DEL", conf, boot_file, "nobody")[0] == 0  # records boot-a
    conf["ipam"]["reclaimAfterReboot"] = False
    age(conf, "10.5.0.2")
    boot(boot_file, "boot-b")
    assert run("ADD", conf, boot_file, "new1")[0] == 0
    assert "10.5.0.2" in files(conf)
    conf["ipam"]["reclaimAfterReboot"] = "yes"
    rc, out = run("ADD", conf, boot_file, "new2")
    assert rc == 1 and out["code"] == 7 and "reclaimAfterReboot" in out["msg"]


def test_status_after_a_reboot_does_not_report_the_earlier_boots_addresses(conf, tmp_path):
    boot_file = boot(tmp_path / "boot_id", "boot-a")
    for i in range(5):  # a /29 has 5 allocatable addresses besides the gateway
        assert run("ADD", conf, boot_file, f"old{i}")[0] == 0
    rc, out = run("STATUS", conf, boot_file)
    assert rc == 1 and out["code"] == 50
    boot(boot_file, "boot-b")
    assert run("STATUS", conf, boot_file) == (0, None)


# ------------------------------------------------------------------------------------------ other files we write

def test_log_file_is_never_written_through_a_symlink(tmp_path, victim):
    from cni_common import log

    link = tmp_path / "cni.log"
    os.symlink(victim, link)
    err = io.StringIO()
    try:
        log.configure("info", str(link), err)
        log.get_logger("t").info("must not reach the victim")
    finally:
        log.configure()
    assert victim.read_bytes() == b"precious" and "cannot open logFile" in err.getvalue()


def test_del_releases_a_torn_reservation_that_prev_result_names(conf, tmp_path):
    boot_file = boot(tmp_path / "boot_id", "boot-a")
    rc, out = run("ADD", conf, boot_file, "c1")
    assert rc == 0
    assert run("ADD", conf, boot_file, "c2")[0] == 0
    net = Path(conf["ipam"]["dataDir"], conf["name"])
    (net / "10.5.0.2").write_bytes(b"")            # c1's reservation torn by a power cut
    prev = {"cniVersion": "1.1.0", "ips": [{"address": "10.5.0.2/29"}, {"address": "10.5.0.3/29"}]}
    assert run("DEL", dict(conf, prevResult=prev), boot_file, "c1")[0] == 0
    assert "10.5.0.2" not in files(conf)
    assert (net / "10.5.0.3").read_bytes() == b"c2\r\neth0"  # named in prevResult, but c2's: kept
