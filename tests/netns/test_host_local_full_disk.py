"""Issue 23: host-local on a file system that fills up, side by side with Go's host-local.

A 16 KiB tmpfs (four pages) is mounted inside a private mount namespace (``unshare --mount``: nothing is mounted
on the machine) and used as ``dataDir``. ADD until the disk is full; then DEL one container and ADD again.
The reservations are the store; ``last_reserved_ip``, the index and the boot-ID record are hints that never
fail a call, and ours give way to reservations, so ours holds as many containers as Go's, and an ADD works again
after a DEL (it used to fail with code 105 on ``last_reserved_ip.0`` for good). Remounted read-only, calls
that need no new reservation still succeed.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.paths import REPO

GO_HOST_LOCAL = Path("/usr/lib/cni/host-local")

#: Runs in the private mount namespace: mounts the tmpfs, drives one host-local (ours in-process, or Go's file)
#: and prints what happened as JSON.
DRIVER = """
import io, json, os, subprocess, sys
sys.path.insert(0, REPO)
from ipam import host_local

mnt, go = sys.argv[1], sys.argv[2]
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k,mode=0755", "cnt-hl-full", mnt], check=True)
conf = {"cniVersion": "1.0.0", "name": "cntfull",
        "ipam": {"type": "host-local", "dataDir": mnt, "ranges": [[{"subnet": "10.66.0.0/24"}]]}}

def call(verb, cid):
    env = {"CNI_COMMAND": verb, "CNI_CONTAINERID": cid, "CNI_NETNS": "/proc/1/ns/net", "CNI_NETNS_OVERRIDE": "1", "CNI_IFNAME": "eth0",
           "CNI_PATH": "/nonexistent", "PATH": os.defpath}
    stdin = json.dumps(conf).encode()
    if go:
        proc = subprocess.run([go], input=stdin, env=env, capture_output=True)
        rc, out = proc.returncode, proc.stdout.decode()
    else:
        buf = io.StringIO()
        rc = host_local.main(environ=env, stdin=io.BytesIO(stdin), stdout=buf, stderr=io.StringIO())
        out = buf.getvalue()
    return rc, json.loads(out) if out.strip() else None

held, refused = [], None
for n in range(20):
    rc, out = call("ADD", f"c{n}")
    if rc != 0:
        refused = out
        break
    held.append(f"c{n}")
steps = {"held": len(held), "refused": refused}
if not held:
    sys.exit(f"no ADD succeeded: {refused}")
steps["del"] = call("DEL", held[0])[0]
rc, out = call("ADD", "again")
steps["add_after_del"] = [rc, out]
for cid in held[1:] + ["again"]:
    steps.setdefault("dels", []).append(call("DEL", cid)[0])
steps["add_when_empty"] = call("ADD", "last")[0]
d = os.path.join(mnt, "cntfull")
steps["files"] = {name: os.path.getsize(os.path.join(d, name)) for name in sorted(os.listdir(d))}
if not go:  # the same disk read-only: calls that need no new reservation still answer
    os.unlink(os.path.join(d, ".cni-index.json"))  # a hint to rebuild, that cannot be written now
    subprocess.run(["mount", "-o", "remount,ro", mnt], check=True)
    steps["read_only"] = {"check": call("CHECK", "last")[0], "del_unknown": call("DEL", "nobody")[0],
                          "add": call("ADD", "new")[1]}
print(json.dumps(steps))
"""


def fill_and_free(tmp_path: Path, go: str = "") -> dict:
    mnt = tmp_path / ("go" if go else "ours")
    mnt.mkdir()
    script = tmp_path / "driver.py"
    script.write_text(f"REPO = {str(REPO)!r}\n" + DRIVER)
    cmd = f"{shlex.quote(sys.executable)} {shlex.quote(str(script))} {shlex.quote(str(mnt))} {shlex.quote(go)}"
    res = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", cmd],
                         capture_output=True, text=True, timeout=120)
    if res.returncode != 0 and "unshare failed" in res.stderr:
        pytest.skip(f"no private mount namespace: {res.stderr.strip()}")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.splitlines()[-1])


def test_a_full_disk_fails_only_the_reservation_and_a_del_makes_room_again(tmp_path: Path) -> None:
    """Then the same disk read-only: CHECK and a DEL with nothing to release still succeed, ADD is 105."""
    ours = fill_and_free(tmp_path)
    assert ours["refused"]["code"] == 105 and "No space left on device" in ours["refused"]["msg"], ours
    assert ours["del"] == 0 and ours["add_after_del"][0] == 0, ours
    assert ours["add_after_del"][1]["ips"][0]["address"].startswith("10.66.0."), ours
    assert ours["dels"] == [0] * len(ours["dels"]) and ours["add_when_empty"] == 0, ours
    reservations = {name: size for name, size in ours["files"].items() if name[0].isdigit()}
    assert len(reservations) == 1 and all(reservations.values()), ours  # "last"'s, whole; nothing half-written
    read_only = ours["read_only"]
    assert read_only["check"] == 0 and read_only["del_unknown"] == 0, ours  # hints unwritable: no failure
    assert read_only["add"]["code"] == 105 and "Read-only file system" in read_only["add"]["msg"], ours
    if GO_HOST_LOCAL.exists():
        go = fill_and_free(tmp_path, str(GO_HOST_LOCAL))
        assert go["add_after_del"][0] == 0, go
        assert ours["held"] >= go["held"], (ours, go)
