"""host-local as a process: bad inputs, 50 parallel ADDs/DELs, and a data dir shared with the Go plugin.

Every test takes its command from the ``host_local_cmd`` fixture: ``$HOST_LOCAL_CMD`` when set, else the built
``dist/host-local`` when it exists, else ``python -m ipam.host_local`` run from the repo. No root, no kernel changes: only a temp dataDir.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import subprocess
from pathlib import Path
from typing import Any, Sequence

import pytest

from tests.helpers import paths, warm

GO_HOST_LOCAL = paths.GO_PLUGIN_DIR / "host-local"


def host_local_command() -> list[str]:
    """The one place that decides what "our host-local" is; ``HOST_LOCAL_CMD`` (a shell-quoted command) wins."""
    override = os.environ.get("HOST_LOCAL_CMD", "")
    if override:
        return shlex.split(override)
    built = paths.DIST_DIR / "host-local"
    if os.access(built, os.X_OK):
        return [str(built)]
    return [str(paths.REPO / ".venv" / "bin" / "python"), "-m", "ipam.host_local"]


@pytest.fixture(scope="module")
def host_local_cmd() -> list[str]:
    return host_local_command()


@pytest.fixture
def go_cmd() -> list[str]:
    if not os.access(GO_HOST_LOCAL, os.X_OK):
        pytest.skip(f"{GO_HOST_LOCAL} not installed")
    return [str(GO_HOST_LOCAL)]


def _env(verb: str, cid: str, ifname: str, cni_args: str, drop: Sequence[str]) -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "CNI_COMMAND": verb, "CNI_CONTAINERID": cid,
           "CNI_NETNS": "/var/run/netns/cnt-i-none", "CNI_IFNAME": ifname, "CNI_PATH": "/usr/lib/cni",
           "CNI_ARGS": cni_args, **warm.passthrough()}
    return {k: v for k, v in env.items() if k not in drop}


def start(cmd: list[str], verb: str, conf: Any, cid: str = "c1", ifname: str = "eth0", cni_args: str = "",
          drop: Sequence[str] = ()) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, cwd=paths.REPO, env=_env(verb, cid, ifname, cni_args, drop), text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        proc.stdin.write(conf if isinstance(conf, str) else json.dumps(conf))
        proc.stdin.close()
    except BrokenPipeError:  # a call refused before its input is read (a missing variable) may be gone already
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()  # (closes even when the flush fails)
    return proc


def finish(proc: subprocess.Popen) -> tuple[int, Any, str]:
    out, err = proc.stdout.read(), proc.stderr.read()
    rc = proc.wait(timeout=120)
    proc.stdout.close()
    proc.stderr.close()
    return rc, (json.loads(out) if out.strip() else None), err


def run(cmd: list[str], verb: str, conf: Any, **kw: Any) -> tuple[int, Any, str]:
    return finish(start(cmd, verb, conf, **kw))


def make_conf(data_dir: Path, ranges: Any = None, version: str = "1.0.0", **ipam: Any) -> dict[str, Any]:
    return {"cniVersion": version, "name": "cnt-i-net",
            "ipam": {"type": "host-local", "dataDir": str(data_dir),
                     "ranges": ranges if ranges is not None else [[{"subnet": "10.77.0.0/24"}]], **ipam}}


def ip_files(data_dir: Path) -> dict[str, bytes]:
    d = data_dir / "cnt-i-net"
    return {n: (d / n).read_bytes() for n in os.listdir(d) if n[0].isdigit() or ":" in n}


def test_version(host_local_cmd):
    rc, out, err = run(host_local_cmd, "VERSION", "")
    assert rc == 0 and "1.0.0" in out["supportedVersions"] and not err


BAD_INPUTS = [
    # (id, conf override or raw text, env to drop, cni_args, expected code, message needle)
    ("broken-json", "{not json", (), "", 6, "failed to parse network configuration"),
    ("missing-env", None, ("CNI_CONTAINERID", "CNI_IFNAME"), "", 4, "CNI_CONTAINERID,CNI_IFNAME"),
    ("unknown-version", {"cniVersion": "9.9.9"}, (), "", 1, "incompatible CNI versions"),
    ("bad-cidr", {"ranges": [[{"subnet": "10.77.0.0/33"}]]}, (), "", 7, "10.77.0.0/33"),
    ("host-bits", {"ranges": [[{"subnet": "10.77.0.5/24"}]]}, (), "", 7, "10.77.0.5/24 has host bits set"),
    ("overlap", {"ranges": [[{"subnet": "10.77.0.0/24"}], [{"subnet": "10.77.0.128/25"}]]}, (), "", 7,
     "overlaps with range set 1"),
    ("outside-every-range", None, (), "IP=10.99.0.1", 7, "10.99.0.1"),
    ("no-ipam", {"ipam": None}, (), "", 7, "ipam"),
]


@pytest.mark.parametrize("case", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input(host_local_cmd, tmp_path, case):
    _, override, drop, cni_args, code, needle = case
    if isinstance(override, str):
        conf: Any = override
    else:
        conf = make_conf(tmp_path)
        for key, value in (override or {}).items():
            if key == "cniVersion":
                conf[key] = value
            elif key == "ipam" and value is None:
                del conf["ipam"]
            else:
                conf["ipam"][key] = value
    rc, out, err = run(host_local_cmd, "ADD", conf, cni_args=cni_args, drop=drop)
    assert rc == 1
    assert out["code"] == code and needle in out["msg"], out
    assert "Traceback" not in err


def test_exhausted_pool(host_local_cmd, tmp_path):
    conf = make_conf(tmp_path, [[{"subnet": "10.77.0.0/30"}]])
    assert run(host_local_cmd, "ADD", conf, cid="a")[0] == 0
    rc, out, err = run(host_local_cmd, "ADD", conf, cid="b")
    assert rc == 1 and out["code"] == 100 and "no IP addresses available in range set 0" in out["msg"]
    assert "Traceback" not in err


def test_50_parallel_adds_then_50_parallel_dels(host_local_cmd, tmp_path):
    conf = make_conf(tmp_path)
    procs = [start(host_local_cmd, "ADD", conf, cid=f"par{i}") for i in range(50)]
    results = [finish(p) for p in procs]
    assert all(rc == 0 for rc, _, _ in results), [r for r in results if r[0]][:3]
    ips = {out["ips"][0]["address"] for _, out, _ in results}
    assert len(ips) == 50
    files = ip_files(tmp_path)
    assert len(files) == 50 and {f"par{i}\r\neth0".encode() for i in range(50)} == set(files.values())
    procs = [start(host_local_cmd, "DEL", conf, cid=f"par{i}") for i in range(50)]
    assert all(finish(p)[0] == 0 for p in procs)
    assert ip_files(tmp_path) == {}


def test_go_add_our_del_and_check(host_local_cmd, go_cmd, tmp_path):
    conf = make_conf(tmp_path)
    rc, go_out, _ = run(go_cmd, "ADD", conf, cid="go1")
    assert rc == 0
    rc, our_out, _ = run(host_local_cmd, "ADD", conf, cid="py1")
    assert rc == 0 and our_out["ips"][0]["address"] != go_out["ips"][0]["address"]
    assert run(host_local_cmd, "CHECK", conf, cid="go1")[0] == 0
    assert run(host_local_cmd, "DEL", conf, cid="go1")[0] == 0
    assert list(ip_files(tmp_path).values()) == [b"py1\r\neth0"]


def test_our_add_go_del_and_check(host_local_cmd, go_cmd, tmp_path):
    conf = make_conf(tmp_path, [[{"subnet": "10.77.0.0/24"}], [{"subnet": "fd77::/120"}]])
    rc, our_out, _ = run(host_local_cmd, "ADD", conf, cid="py1")
    assert rc == 0
    rc, go_out, _ = run(go_cmd, "ADD", conf, cid="go1")
    assert rc == 0, go_out
    # Go continues the round-robin from our last_reserved_ip.N
    assert [i["address"] for i in go_out["ips"]] == ["10.77.0.3/24", "fd77::3/120"]
    assert run(go_cmd, "CHECK", conf, cid="py1")[0] == 0
    assert run(go_cmd, "DEL", conf, cid="py1")[0] == 0
    assert sorted(ip_files(tmp_path)) == ["10.77.0.3", "fd77::3"]
    # Go's DEL must not have broken our index: our DEL of Go's attachment still works
    assert run(host_local_cmd, "DEL", conf, cid="go1")[0] == 0
    assert ip_files(tmp_path) == {}


def test_legacy_id_only_files_released_by_both(host_local_cmd, go_cmd, tmp_path):
    conf = make_conf(tmp_path)
    assert run(host_local_cmd, "ADD", conf, cid="warm")[0] == 0  # creates the dir and our index
    d = tmp_path / "cnt-i-net"
    (d / "10.77.0.100").write_bytes(b"old1")
    (d / "10.77.0.101").write_bytes(b"old2")
    assert run(host_local_cmd, "DEL", conf, cid="old1", ifname="eth9")[0] == 0
    assert run(go_cmd, "DEL", conf, cid="old2", ifname="eth9")[0] == 0
    assert sorted(ip_files(tmp_path)) == ["10.77.0.2"]


def test_go_duplicate_check_sees_our_reservation(host_local_cmd, go_cmd, tmp_path):
    conf = make_conf(tmp_path)
    assert run(host_local_cmd, "ADD", conf, cid="dup")[0] == 0
    rc, out, _ = run(go_cmd, "ADD", conf, cid="dup")
    assert rc == 1 and "duplicate allocation is not allowed" in out["msg"]
    assert run(go_cmd, "ADD", conf, cid="go1")[0] == 0
    rc, out, _ = run(host_local_cmd, "ADD", conf, cid="go1")
    assert rc == 1 and "duplicate allocation is not allowed" in out["msg"]


def test_gc_releases_go_reservations(host_local_cmd, go_cmd, tmp_path):
    conf = make_conf(tmp_path, version="1.1.0")
    go_conf = make_conf(tmp_path)  # the Go v1.1.1 plugin does not speak 1.1.0
    assert run(go_cmd, "ADD", go_conf, cid="go1")[0] == 0
    assert run(go_cmd, "ADD", go_conf, cid="go2")[0] == 0
    assert run(host_local_cmd, "ADD", conf, cid="py1")[0] == 0
    gc_conf = {**conf, "cni.dev/valid-attachments": [{"containerID": "go2", "ifname": "eth0"}]}
    assert run(host_local_cmd, "GC", gc_conf, cid="", ifname="")[0] == 0
    assert list(ip_files(tmp_path).values()) == [b"go2\r\neth0"]
    names = set(os.listdir(tmp_path / "cnt-i-net"))
    assert {"lock", "last_reserved_ip.0"} <= names



def test_go_ignores_the_boot_id_record(host_local_cmd, go_cmd, tmp_path):
    """Issue 12: .cni-boot-id sits beside the reservations; Go's ADD, CHECK, DEL and duplicate check (which read
    every file of the directory) neither choke on it nor remove it, whatever container ID they look for."""
    conf = make_conf(tmp_path)
    assert run(host_local_cmd, "ADD", conf, cid="py1")[0] == 0
    record = tmp_path / "cnt-i-net" / ".cni-boot-id"
    text = record.read_text()
    assert text.startswith("boot_id: ")
    for cid in ("go1", text.split()[1]):  # even a container ID equal to the boot ID itself
        assert run(go_cmd, "ADD", conf, cid=cid)[0] == 0
        assert run(go_cmd, "CHECK", conf, cid=cid)[0] == 0
        assert run(go_cmd, "DEL", conf, cid=cid)[0] == 0
    assert record.read_text() == text
    assert list(ip_files(tmp_path).values()) == [b"py1\r\neth0"]


def test_the_built_file_reclaims_after_a_faked_reboot(tmp_path):
    """Issue 12, reboot reclaim, through the built file (the test-only boot ID file reaches the frozen build)."""
    from tests.helpers.plugin import run_plugin
    from tests.helpers.skip import require_dist

    binary = require_dist() / "host-local"
    boot_file = tmp_path / "boot_id"
    conf = make_conf(tmp_path / "data")

    def add(cid: str) -> Any:
        res = run_plugin(binary, "ADD", conf, netns="/var/run/netns/cnt-i-none", container_id=cid,
                         env={"CNI_SUITE_TEST_BOOT_ID_FILE": str(boot_file)})
        assert res.rc == 0, res
        return res.out["ips"][0]["address"]

    boot_file.write_text("boot-a\n")
    assert add("before") == "10.77.0.2/24"
    from cni_common.alloc.disk import boot_time

    stamp = boot_time() - 3600  # made an hour before this boot
    os.utime(tmp_path / "data" / "cnt-i-net" / "10.77.0.2", (stamp, stamp))
    boot_file.write_text("boot-b\n")
    assert add("after") == "10.77.0.3/24"
    assert list(ip_files(tmp_path / "data").values()) == [b"after\r\neth0"]
