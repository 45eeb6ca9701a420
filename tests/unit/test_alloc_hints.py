"""Issue 23, items 1 and 4: host-local's hints (``last_reserved_ip.N``, the index, the boot-ID record) never fail a
call and read as absent when missing or torn; the reboot reclaim decides by the boot ID recorded with each of our
reservations, and by file times only for files without one. The full-disk run on a real tmpfs is
tests/netns/test_host_local_full_disk.py."""

from __future__ import annotations

import io
import ipaddress
import json
import os
from pathlib import Path
from typing import Any

import pytest

from cni_common.alloc import disk
from ipam import host_local

ip = ipaddress.ip_address
HINTS = ("last_reserved_ip.0", disk.INDEX_NAME, disk.BOOT_ID_NAME)


@pytest.fixture
def conf(tmp_path: Path) -> dict[str, Any]:
    return {"cniVersion": "1.1.0", "name": "net1",
            "ipam": {"type": "host-local", "dataDir": str(tmp_path / "data"), "ranges": [[{"subnet": "10.5.0.0/28"}]]}}


@pytest.fixture
def boot_file(tmp_path: Path) -> Path:
    path = tmp_path / "boot_id"
    path.write_text("boot-a\n")
    return path


def run(verb: str, conf: dict[str, Any], boot_file: Path, cid: str) -> tuple[int, Any]:
    env = {"CNI_COMMAND": verb, "CNI_CONTAINERID": cid, "CNI_NETNS": "/proc/1/ns/net", "CNI_NETNS_OVERRIDE": "1",
           "CNI_IFNAME": "eth0", "CNI_PATH": "/nonexistent", host_local.TEST_BOOT_ID_FILE_ENV: str(boot_file)}
    out = io.StringIO()
    rc = host_local.main(environ=env, stdin=io.BytesIO(json.dumps(conf).encode()), stdout=out, stderr=io.StringIO())
    return rc, json.loads(out.getvalue()) if out.getvalue().strip() else None


def net_dir(conf: dict[str, Any]) -> Path:
    return Path(conf["ipam"]["dataDir"], conf["name"])


def address(out: Any) -> str:
    return out["ips"][0]["address"]


def set_mtime(conf: dict[str, Any], name: str, when: float) -> None:
    os.utime(net_dir(conf) / name, (when, when))


# ------------------------------------------------------------------------------------------------ hints

def test_hints_that_cannot_be_written_never_fail_a_call(conf, boot_file):
    """Each hint's name taken by a directory (cannot be written, nor replaced): ADD, CHECK, DEL, GC succeed."""
    net_dir(conf).mkdir(parents=True)
    for name in HINTS:
        (net_dir(conf) / name).mkdir()
    rc, out = run("ADD", conf, boot_file, "c1")
    assert rc == 0 and address(out) == "10.5.0.2/28", out
    rc, out = run("ADD", conf, boot_file, "c2")
    assert rc == 0 and address(out) == "10.5.0.3/28", out  # no hint to start from: the first free one
    assert run("CHECK", conf, boot_file, "c1")[0] == 0
    assert run("DEL", conf, boot_file, "c1")[0] == 0
    assert run("GC", {**conf, "cni.dev/valid-attachments": []}, boot_file, "c1")[0] == 0
    assert not [n for n in os.listdir(net_dir(conf)) if n[0].isdigit()]


@pytest.mark.parametrize("torn", ["", "10.5.0.", "10.5.0.9x", "\x00\x00\x00"])
def test_a_torn_or_missing_last_reserved_ip_reads_as_absent(conf, boot_file, torn):
    assert address(run("ADD", conf, boot_file, "c1")[1]) == "10.5.0.2/28"
    assert run("DEL", conf, boot_file, "c1")[0] == 0
    (net_dir(conf) / "last_reserved_ip.0").write_text(torn)
    assert address(run("ADD", conf, boot_file, "c2")[1]) == "10.5.0.2/28"  # from the range's start
    assert (net_dir(conf) / "last_reserved_ip.0").read_text() == "10.5.0.2"  # and rewritten whole
    (net_dir(conf) / "last_reserved_ip.0").unlink()
    assert address(run("ADD", conf, boot_file, "c3")[1]) == "10.5.0.3/28"


@pytest.mark.parametrize("torn", ["", "boot_id: boot-", "boot_id: boot-a", "boot_id: \n", "garbage\n",
                                   "boot_id: boot-a\n-longer-old-id\n"])  # an overwrite cut short
def test_a_torn_boot_id_record_reads_as_absent(tmp_path, torn):
    store = disk.DiskStore(str(tmp_path), "net1", "boot-a")
    store.ensure_dir()
    Path(store.dir, disk.BOOT_ID_NAME).write_text(torn)
    assert store.recorded_boot_id() is None
    Path(store.dir, disk.BOOT_ID_NAME).write_text("boot_id: boot-a\n")
    assert store.recorded_boot_id() == "boot-a"


@pytest.mark.parametrize("cut", ["head", "old-tail"])
def test_a_torn_index_is_rebuilt_from_the_reservations(conf, boot_file, cut):
    assert run("ADD", conf, boot_file, "c1")[0] == 0
    index = net_dir(conf) / disk.INDEX_NAME
    whole = index.read_bytes()
    index.write_bytes(whole[:20] if cut == "head" else whole + b',"10.5.0.9":[1,"x","eth0",null]}}')
    assert run("DEL", conf, boot_file, "c1")[0] == 0
    assert not (net_dir(conf) / "10.5.0.2").exists()
    assert json.loads(index.read_text())["entries"] == {}


def test_hints_are_rewritten_in_place_and_a_planted_hard_link_is_replaced(conf, boot_file, tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    net_dir(conf).mkdir(parents=True)
    os.link(victim, net_dir(conf) / "last_reserved_ip.0")
    assert run("ADD", conf, boot_file, "c1")[0] == 0
    assert victim.read_text() == "precious"
    inode = (net_dir(conf) / "last_reserved_ip.0").stat().st_ino
    assert inode != victim.stat().st_ino
    assert run("ADD", conf, boot_file, "c2")[0] == 0
    assert (net_dir(conf) / "last_reserved_ip.0").stat().st_ino == inode  # in place: no page for a copy needed
    assert not [n for n in os.listdir(net_dir(conf)) if n.endswith(".tmp")]


# ------------------------------------------------------------------------------------------------ reboot reclaim

def test_our_reservations_are_reclaimed_by_their_boot_id_whatever_the_clock(conf, boot_file):
    """A reservation of an earlier boot whose mtime is after this boot's start (the clock was wrong, or the
    file was touched) is still released: its boot ID decides, not its time."""
    assert run("ADD", conf, boot_file, "old1")[0] == 0
    set_mtime(conf, "10.5.0.2", disk.boot_time() + 3600)
    boot_file.write_text("boot-b\n")
    rc, out = run("ADD", conf, boot_file, "new1")
    assert rc == 0 and not (net_dir(conf) / "10.5.0.2").exists(), out


def test_a_reservation_of_this_boot_survives_a_clock_step(conf, boot_file):
    """Our reservation of this boot with an mtime before the boot's start (a clock stepped forward after it
    was made) is kept: recorded with this boot's ID."""
    assert run("ADD", conf, boot_file, "old1")[0] == 0
    boot_file.write_text("boot-b\n")
    assert run("ADD", conf, boot_file, "new1")[0] == 0  # the first call of boot-b: old1 released
    set_mtime(conf, "10.5.0.3", disk.boot_time() - 3600)
    (net_dir(conf) / disk.BOOT_ID_NAME).write_text("boot_id: boot-a\n")  # the record of boot-b was lost
    assert run("ADD", conf, boot_file, "new2")[0] == 0
    assert (net_dir(conf) / "10.5.0.3").read_bytes() == b"new1\r\neth0"


def test_files_without_a_boot_id_are_judged_by_their_time(conf, boot_file):
    """Go's reservations carry no boot ID of ours: older than the boot, released; newer, kept."""
    assert run("ADD", conf, boot_file, "ours")[0] == 0
    (net_dir(conf) / "10.5.0.9").write_bytes(b"go-old\r\neth0")
    (net_dir(conf) / "10.5.0.10").write_bytes(b"go-new\r\neth0")
    set_mtime(conf, "10.5.0.9", disk.boot_time() - 3600)
    boot_file.write_text("boot-b\n")
    assert run("ADD", conf, boot_file, "new1")[0] == 0
    left = {n for n in os.listdir(net_dir(conf)) if n[0].isdigit()}
    assert left == {"10.5.0.10", "10.5.0.3"}


def test_a_file_changed_behind_the_index_is_judged_by_its_time(conf, boot_file):
    """Same name and inode as our reservation, another owner (rewritten by someone else in this boot): its
    recorded boot ID no longer describes it, so it is kept (its mtime is of this boot)."""
    assert run("ADD", conf, boot_file, "ours")[0] == 0
    with open(net_dir(conf) / "10.5.0.2", "r+b") as fh:
        fh.truncate(0)
        fh.write(b"go1\r\neth0")
    boot_file.write_text("boot-b\n")
    assert run("ADD", conf, boot_file, "new1")[0] == 0
    assert (net_dir(conf) / "10.5.0.2").read_bytes() == b"go1\r\neth0"


def test_without_any_record_our_boot_ids_still_decide(conf, boot_file):
    """The boot-ID record lost (given up on a full disk): reservations recorded with an earlier boot's ID are
    released; files without one are kept (no proof they are of an earlier boot)."""
    assert run("ADD", conf, boot_file, "old1")[0] == 0
    (net_dir(conf) / "10.5.0.9").write_bytes(b"go-old\r\neth0")
    set_mtime(conf, "10.5.0.9", disk.boot_time() - 3600)
    (net_dir(conf) / disk.BOOT_ID_NAME).unlink()
    boot_file.write_text("boot-b\n")
    assert run("ADD", conf, boot_file, "new1")[0] == 0
    left = {n for n in os.listdir(net_dir(conf)) if n[0].isdigit()}
    assert left == {"10.5.0.9", "10.5.0.3"}
