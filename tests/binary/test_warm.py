"""The warm path of the built file (docs/packaging.md, "The warm path"): each promise of the issue, tested.

Every test gives the launcher a cache of its own (``CNI_SUITE_CACHE_DIR``), so its warm processes are the
test's alone, and kills them at the end. host-local is the plugin: it changes no kernel state (a temp dataDir).
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from cni_common.warm import context
from cni_common.warm.status import warm_processes
from tests.helpers import builds, paths, warm

HOST_LOCAL = paths.DIST_DIR / "host-local"
#: The launcher's request header (warm.h: warm_send_request; warm_child.h reads it): magic, protocol, umask,
#: securebits, argc, envc, length of the NUL-terminated strings that follow.
REQUEST_HEADER = struct.Struct("<4sIIIIII")
pytestmark = pytest.mark.skipif(not os.access(HOST_LOCAL, os.X_OK), reason="needs ./build.sh")


class Lab:
    """A private launcher cache, the host-local config, and the warm processes to kill at the end."""

    def __init__(self, root: Path):
        self.root = root
        self.cache = root / "cache"
        self.cache.mkdir(mode=0o700)
        self.data = root / "data"
        self.plugin = HOST_LOCAL

    def conf(self, data: Path | None = None) -> dict[str, Any]:
        return {"cniVersion": "1.0.0", "name": "cnt-w-net", "type": "host-local",
                "ipam": {"type": "host-local", "subnet": "10.123.0.0/24", "dataDir": str(data or self.data)}}

    def env(self, mode: str, cid: str = "c1", verb: str = "ADD", **extra: str) -> dict[str, str]:
        return {"PATH": os.defpath, "CNI_COMMAND": verb, "CNI_CONTAINERID": cid, "CNI_NETNS": "/run/netns/cnt-w-x",
                "CNI_IFNAME": "eth0", "CNI_PATH": str(paths.DIST_DIR), "CNI_SUITE_CACHE_DIR": str(self.cache),
                "CNI_SUITE_WARM": mode, "CNI_SUITE_WARM_IDLE": "30", "CNI_SUITE_WARM_DEBUG": "1", **extra}

    def call(self, mode: str, stdin: bytes | str | None = None, argv: list[str] | None = None,
             **env: str) -> subprocess.CompletedProcess[bytes]:
        data = json.dumps(self.conf()) if stdin is None else stdin
        return subprocess.run(argv or [str(self.plugin)], input=data.encode() if isinstance(data, str) else data,
                              env=self.env(mode, **env), capture_output=True, timeout=60)

    def start(self, mode: str = "on", **env: str) -> subprocess.Popen[bytes]:
        """A call blocked reading its stdin (the config never comes until the test writes it)."""
        return subprocess.Popen([str(self.plugin)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=self.env(mode, **env))

    def servers(self) -> list[dict[str, Any]]:
        found = [w for w in warm_processes(str(self.cache), settle=2.0) if w["state"] == "running"]
        return found

    def server(self) -> dict[str, Any]:
        """The one warm process. A launcher in "on" mode waits 3 s for the process it started, then execs: on a
        loaded machine the process may only be listening after its first call returned."""
        found = self.servers()
        deadline = time.monotonic() + 10
        while not found and time.monotonic() < deadline:
            time.sleep(0.05)
            found = self.servers()
        assert len(found) == 1, found
        return found[0]

    def children_of(self, pid: int) -> list[int]:
        try:
            return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        except OSError:
            return []

    def child_of(self, proc: subprocess.Popen[bytes]) -> int:
        """The warm child running ``proc``'s call (the launcher's stderr says why when there is none)."""
        try:
            return self.the_call_child(int(self.server()["pid"]))
        except AssertionError as failure:
            proc.kill()
            raise AssertionError(f"{failure}; launcher: {proc.communicate()[1].decode()}") from None

    def the_call_child(self, server_pid: int) -> int:
        """The child running the one call in flight, named after its plugin once told to go (a status query's
        child keeps the warm process's name)."""
        for _ in range(200):
            for kid in self.children_of(server_pid):
                try:
                    if Path(f"/proc/{kid}/comm").read_text().strip() == self.plugin.name:
                        return kid
                except OSError:
                    continue
            time.sleep(0.05)
        kids = {kid: Path(f"/proc/{kid}/comm").read_text().strip() for kid in self.children_of(server_pid)}
        raise AssertionError(f"no call child: the warm process's children {kids}, status {self.servers()}")

    def warm_dir(self) -> Path:
        (folder,) = [p for p in self.cache.iterdir() if len(p.name) == 64]
        return folder / "warm"


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _wait_until(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    lab = Lab(tmp_path)
    try:
        yield lab
    finally:
        time.sleep(0.2)  # one an "auto" call started without waiting may still be starting
        warm.stop_warm_processes(str(lab.cache))


def _comparable(proc: subprocess.CompletedProcess[bytes]) -> tuple[int, bytes, bytes]:
    return proc.returncode, proc.stdout, proc.stderr


@pytest.mark.parametrize("case", ["add", "bad json", "no container id", "bad version", "del"])
def test_forced_on_answers_exactly_as_exec(lab: Lab, case: str) -> None:
    """Exit code, stdout and stderr are byte for byte those of the exec'd call, good input and bad."""
    stdin, env = None, {}
    if case == "bad json":
        stdin = "{not json"
    elif case == "no container id":
        env = {"CNI_CONTAINERID": ""}
    elif case == "bad version":
        stdin = json.dumps({**lab.conf(), "cniVersion": "9.9.9"})
    elif case == "del":
        env = {"CNI_COMMAND": "DEL"}
    results = []
    for mode in ("off", "on"):
        results.append(_comparable(lab.call(mode, stdin, **env)))
        subprocess.run(["rm", "-rf", str(lab.data)], check=True)
    assert results[0] == results[1]
    assert lab.server()["calls"] == 1


def test_the_switch(lab: Lab) -> None:
    """off never starts a warm process; the operator's file in the cache says off too; the variable wins over the
    file, and the file over the build's default."""
    assert lab.call("off").returncode == 0
    (lab.cache / "warm-mode").write_text("off\n")
    assert lab.call("", cid="c2").returncode == 0
    time.sleep(0.3)
    assert lab.servers() == []
    assert lab.call("on", cid="c3").returncode == 0
    assert lab.server()["calls"] == 1


def _settle() -> None:
    """Make this test process a settled parent (warm.h: WARM_SETTLED_PARENT_S), as a runtime's daemon is."""
    started = float(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19]) / os.sysconf("SC_CLK_TCK")
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    time.sleep(max(0.0, 11 - (uptime - started)))


def test_the_default_is_auto_for_a_runtimes_calls(lab: Lab) -> None:
    """No variable, no file: auto. This test's process is a settled parent in its callee's namespaces, as a
    runtime is: the first call starts the warm process without waiting for it (it execs), later calls use it.
    A short-lived parent (a shell made for one call, cnitool) starts nothing."""
    assert lab.call("", argv=["sh", "-c", f"{lab.plugin}; exit $?"], cid="c0").returncode == 0
    time.sleep(0.5)
    assert lab.servers() == []
    _settle()
    first = lab.call("", argv=None)
    assert first.returncode == 0, first.stderr
    assert b"no warm process for this context" in first.stderr  # CNI_SUITE_WARM_DEBUG: the first call execs
    assert _wait_until(lambda: lab.servers(), 10)
    assert lab.call("", cid="c2").returncode == 0
    assert lab.server()["calls"] == 1


@pytest.mark.parametrize("enter", ["nsenter", "ip-netns-exec", "sh"])
def test_auto_starts_nothing_for_a_call_in_another_context(lab: Lab, enter: str) -> None:
    """A caller that entered another network namespace (a test's host namespace: `nsenter --net`), a mount
    namespace made for the call (`ip netns exec`, `unshare`) would leave a warm process no later call could use:
    auto execs and starts none, even when its parent (this test) is settled."""
    _settle()
    name = f"cnt-w-auto-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        argv = {"nsenter": ["nsenter", f"--net=/run/netns/{name}", str(lab.plugin)],
                "ip-netns-exec": ["ip", "netns", "exec", name, str(lab.plugin)],
                "sh": ["unshare", "--mount", "sh", "-c", f"{lab.plugin}; exit $?"]}[enter]
        for cid in ("c1", "c2"):
            proc = lab.call("auto", argv=argv, cid=cid)
            assert proc.returncode == 0, proc.stderr
        time.sleep(0.5)
        assert lab.servers() == []
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def test_switching_off_ends_the_running_warm_process(lab: Lab) -> None:
    """The operator's `off` in the cache's warm-mode file ends a running warm process within its 1 s check (it
    would serve no new call), not after its idle time."""
    assert lab.call("on").returncode == 0
    pid = int(lab.server()["pid"])
    (lab.cache / "warm-mode").write_text("off\n")
    assert _wait_until(lambda: not _alive(pid), 5)
    assert lab.call("", cid="c2").returncode == 0
    assert lab.servers() == []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_the_launcher_dies_of_the_childs_signal(lab: Lab, signum: int) -> None:
    assert lab.call("on", CNI_CONTAINERID="c0").returncode == 0
    proc = lab.start()
    child_pid = lab.child_of(proc)
    os.kill(child_pid, signum)
    proc.communicate(timeout=10)
    assert proc.returncode == -signum


def test_a_killed_launcher_kills_the_call(lab: Lab) -> None:
    """The runtime's SIGKILL (a timeout) ends the work, as it ends an exec'd plugin."""
    assert lab.call("on", CNI_CONTAINERID="c0").returncode == 0
    proc = lab.start()
    child_pid = lab.child_of(proc)
    proc.kill()
    proc.communicate(timeout=10)
    assert _wait_until(lambda: not _alive(child_pid), 5)
    reserved = [p for p in (lab.data / "cnt-w-net").iterdir() if p.name[0].isdigit()]
    assert len(reserved) == 1  # the warm-up call's: the killed call never got its config


def _raw_call(sock_path: Path, change: str) -> bytes:
    """Speak the launcher's protocol from a forked process that changed ``change`` about itself after
    connecting; returns the warm child's first answer ('A' would mean it would run the call)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        answer = b"?"
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            folder = os.open(sock_path.parent, os.O_PATH)
            conn.connect(f"/proc/self/fd/{folder}/{sock_path.name}")  # a tmp_path is too long for sun_path
            securebits = libc.prctl(27, 0, 0, 0, 0)  # PR_GET_SECUREBITS, as the launcher sends it
            if change == "uts":
                assert libc.unshare(0x04000000) == 0  # CLONE_NEWUTS
            elif change == "net":
                assert libc.unshare(0x40000000) == 0  # CLONE_NEWNET
            elif change == "chroot":
                os.chroot("/usr")
            elif change == "capability":
                assert libc.prctl(24, 13, 0, 0, 0) == 0  # PR_CAPBSET_DROP CAP_NET_RAW
            elif change == "no_new_privs":
                assert libc.prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS
            elif change == "uid":
                os.setresuid(65534, 65534, 65534)
            elif change == "gid":
                os.setresgid(65534, 65534, 65534)
            elif change == "groups":
                os.setgroups([65534])
            elif change == "securebits":
                securebits ^= 1  # SECBIT_NOROOT flipped
            strings = b"host-local\0CNI_COMMAND=ADD\0"
            magic, argc, envc, length = b"CNIW", 1, 1, len(strings)
            if change == "counts":
                argc, envc = 0xFFFFFFFF, 3  # 2**32 + 2 strings announced: 2 in 32 bits, as many as came
            elif change == "magic":
                magic = b"CNIX"
            elif change == "truncated":
                length += 10  # the launcher never sends the rest: refused after the request timeout (2 s)
            header = REQUEST_HEADER.pack(magic, 1, 0o022, securebits, argc, envc, length)
            conn.sendall(header + strings)
            conn.settimeout(10)
            assert conn.recv(1) == b"F"  # the warm process forked a child for us
            answer = conn.recv(5)[:1]
            if answer == b"R":  # stay until the refusing child's end is reported (a gone caller's child is killed)
                while conn.recv(64):
                    pass
        finally:
            os.write(write_end, answer)
            os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    answer = os.read(read_end, 1)
    os.close(read_end)
    return answer


@pytest.mark.parametrize("change", ["same", "uts", "net", "chroot", "capability", "no_new_privs", "uid", "gid",
                                    "groups", "securebits"])
def test_a_caller_of_another_context_is_refused(lab: Lab, change: str) -> None:
    """The warm child compares the caller's namespaces, root, ids, supplementary groups, capabilities,
    no_new_privs and securebits with its own (from /proc, not from the caller's word) and refuses any
    difference."""
    assert lab.call("on").returncode == 0
    server = lab.server()
    sock = lab.warm_dir() / f"w{server['context']}.sock"
    answer = _raw_call(sock, change)
    assert answer == (b"A" if change == "same" else b"R")
    if change != "same":
        assert _wait_until(lambda: lab.server()["refused"] == 1, 5)


@pytest.mark.parametrize("change", ["counts", "magic", "truncated"])
def test_a_malformed_request_is_refused(lab: Lab, change: str) -> None:
    """The child reads the launcher's request in C (cni_common/bundle/warm_child.h): strings that do not match
    their counts (also when the counts' sum overflows 32 bits), another protocol's magic, a request cut short: all
    refused before anything runs, so a launcher would exec."""
    assert lab.call("on").returncode == 0
    server = lab.server()
    sock = lab.warm_dir() / f"w{server['context']}.sock"
    assert _raw_call(sock, change) == b"R"
    assert _wait_until(lambda: lab.server()["refused"] == 1, 5)


def test_another_namespace_execs(lab: Lab) -> None:
    """A launcher in another namespace never reaches this context's warm process: its call just runs."""
    assert lab.call("on").returncode == 0
    first = lab.server()
    proc = lab.call("off", argv=["unshare", "--uts", str(lab.plugin)], CNI_CONTAINERID="c2")
    assert proc.returncode == 0, proc.stderr
    assert [w for w in lab.servers() if w["context"] == first["context"]][0]["calls"] == 1


def test_a_planted_socket_is_refused(lab: Lab) -> None:
    """A socket whose listener is not root (peer credentials) gets nothing from the launcher; the call runs."""
    assert lab.call("off").returncode == 0  # unpacks the build
    path = lab.warm_dir() / f"w{context.context_key()}.sock"
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        got = b"-"
        try:
            planted = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            folder = os.open(path.parent, os.O_PATH)
            planted.bind(f"/proc/self/fd/{folder}/{path.name}")
            os.setresuid(65534, 65534, 65534)
            planted.listen(8)
            planted.settimeout(5)
            conn, _ = planted.accept()
            conn.settimeout(2)
            got = conn.recv(100) or b"nothing"
        finally:
            os.write(write_end, got[:20])
            os._exit(0)
    os.close(write_end)
    try:
        time.sleep(0.3)
        proc = lab.call("auto", CNI_CONTAINERID="c2")
        assert proc.returncode == 0, proc.stderr
    finally:
        os.waitpid(pid, 0)  # it ends by itself: the connection closed, or no connection within 5 s
    got = os.read(read_end, 20)
    os.close(read_end)
    assert got in (b"nothing", b"-")  # it never saw a request


def test_idle_exit(lab: Lab) -> None:
    assert lab.call("on", CNI_SUITE_WARM_IDLE="1").returncode == 0
    pid = int(lab.server()["pid"])
    assert _wait_until(lambda: not _alive(pid), 8)
    assert [p.name for p in lab.warm_dir().iterdir() if p.name.startswith("w")] == []


def test_a_crashed_or_hung_warm_process_falls_back_to_exec(lab: Lab) -> None:
    assert lab.call("on").returncode == 0
    pid = int(lab.server()["pid"])
    os.kill(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        proc = lab.call("on", CNI_CONTAINERID="c2")
        assert proc.returncode == 0, proc.stderr
        assert time.monotonic() - started < 2 + 5  # the fork timeout, then an ordinary exec
    finally:
        os.kill(pid, signal.SIGKILL)
        os.kill(pid, signal.SIGCONT)
    assert _wait_until(lambda: not _alive(pid), 5)
    proc = lab.call("on", CNI_CONTAINERID="c3")
    assert proc.returncode == 0, proc.stderr
    assert lab.server()["calls"] == 1  # a new warm process served it
    reserved = sorted(p.read_text().split()[0] for p in (lab.data / "cnt-w-net").iterdir() if p.name[0].isdigit())
    assert reserved == ["c1", "c2", "c3"]  # c2 ran once, by exec, though its request had reached the process


def test_an_upgrade_never_runs_old_code(lab: Lab, tmp_path: Path) -> None:
    """The new build's calls go to a warm process of the new build; the old one exits and its folder goes."""
    assert lab.call("on").returncode == 0
    old = lab.server()
    (tmp_path / "new").mkdir()
    new_file = builds.repack(HOST_LOCAL, tmp_path / "new" / "host-local", "warm-upgrade", tmp_path / "work")
    lab.plugin = new_file
    assert lab.call("on", CNI_CONTAINERID="c2").returncode == 0
    assert _wait_until(lambda: not _alive(int(old["pid"])), 5)
    (current,) = lab.servers()
    assert current["build"] == builds.build_hash(new_file) != old["build"]
    assert not (lab.cache / str(old["build"])).exists()


def test_the_call_joins_the_callers_cgroup(lab: Lab) -> None:
    mounts = context.cgroup_mounts()
    if "" not in mounts:
        pytest.skip("no cgroup2 hierarchy mounted")
    assert lab.call("on").returncode == 0
    server_pid = int(lab.server()["pid"])
    group = Path(mounts[""][1]) / f"cnt-warm-{os.getpid()}"
    group.mkdir()
    proc = None
    try:
        proc = subprocess.Popen(["sh", "-c", f"echo $$ > {group}/cgroup.procs && exec {lab.plugin}"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=lab.env("on", cid="c2"))
        child_pid = lab.the_call_child(server_pid)
        lines = Path(f"/proc/{child_pid}/cgroup").read_text().splitlines()
        assert f"0::/{group.name}" in lines
        proc.communicate(json.dumps(lab.conf()).encode(), timeout=30)
        assert proc.returncode == 0
    finally:
        if proc and proc.poll() is None:
            proc.kill()
            proc.communicate()
        _wait_until(lambda: not (group / "cgroup.procs").read_text().strip(), 5)
        group.rmdir()


def test_nothing_new_in_tmp(lab: Lab) -> None:
    before = set(os.listdir("/tmp"))
    assert lab.call("on").returncode == 0
    assert lab.call("on", CNI_CONTAINERID="c2").returncode == 0
    new = {name for name in set(os.listdir("/tmp")) - before if "cni" in name or name.startswith(("_MEI", "tmp"))}
    assert new == set()


def test_inspect_shows_it(lab: Lab) -> None:
    assert lab.call("on").returncode == 0
    server = lab.server()
    env = {"PATH": os.environ.get("PATH", os.defpath), "CNI_SUITE_CACHE_DIR": str(lab.cache)}
    out = subprocess.run([str(HOST_LOCAL), "inspect", "--format", "json", "--data-dir", str(lab.data)],
                         env=env, capture_output=True, timeout=60, check=True).stdout
    (shown,) = json.loads(out)["warm"]
    assert shown["pid"] == server["pid"] and shown["calls"] == 1 and shown["state"] == "running"


def test_the_warm_process_is_single_threaded_and_preloaded(lab: Lab) -> None:
    """No thread may run in a process that forks (a lock held by one would stay held in every child)."""
    assert lab.call("on").returncode == 0
    pid = int(lab.server()["pid"])
    status = Path(f"/proc/{pid}/status").read_text()
    assert "\nThreads:\t1\n" in status
    maps = Path(f"/proc/{pid}/maps").read_text()
    assert "_ssl" in maps or "libssl" in maps or "_json" in maps  # extension modules were imported before any call


def test_the_plugins_children_get_the_runtimes_environment(lab: Lab, tmp_path: Path) -> None:
    """What portmap's iptables/nft children see is exactly what the runtime gave the plugin, warm or exec'd:
    non-ASCII and undecodable bytes, '=' and tabs in values, an empty value (the warm child decodes the request as
    os.fsdecode does, cni_common/bundle/warm_child.h).

    PATH holds only stand-ins for iptables, ip6tables and nft that record their environment and fail, so nothing
    touches the kernel (the plugin then reports the failure)."""
    fake = tmp_path / "fake-bin"
    fake.mkdir()
    dumps = tmp_path / "dumps"
    dumps.mkdir()
    for tool in ("iptables", "iptables-save", "iptables-restore", "ip6tables", "ip6tables-save",
                 "ip6tables-restore", "nft", "conntrack"):
        script = fake / tool
        script.write_text(f"#!/bin/sh\n/usr/bin/env -0 > {dumps}/$$.env\nexit 1\n")
        script.chmod(0o755)
    conf = {"cniVersion": "1.0.0", "name": "cnt-w-net", "type": "portmap", "snat": False,  # no route_localnet
            "capabilities": {"portMappings": True},
            "runtimeConfig": {"portMappings": [{"hostPort": 18080, "containerPort": 80, "protocol": "tcp"}]},
            "prevResult": {"cniVersion": "1.0.0", "ips": [{"address": "10.123.0.2/24"}]}}
    seen = {}
    for mode in ("off", "on"):
        for old in dumps.iterdir():
            old.unlink()
        env = {**lab.env(mode), "PATH": str(fake), "CNT_MARKER": f"a value with spaces\tand = signs {mode}",
               "CNT_UTF8": "é€", "CNT_RAW": os.fsdecode(b"\xff\xe2\x82"), "CNT_EMPTY": ""}
        proc = subprocess.run([str(paths.DIST_DIR / "portmap")], input=json.dumps(conf).encode(), env=env,
                              capture_output=True, timeout=60)
        assert proc.returncode != 0  # the stand-ins fail
        envs = [dict(item.split("=", 1) for item in os.fsdecode(p.read_bytes()).split("\0") if item)
                for p in dumps.iterdir()]  # undecodable bytes kept as os.fsdecode keeps them
        assert envs, proc.stderr
        for child_env in envs:
            child_env.pop("PWD", None)  # the shell's own
            child_env.pop("OLDPWD", None)
            child_env.pop("SHLVL", None)
            child_env.pop("_", None)
            assert child_env == env
        seen[mode] = proc.stdout
    assert seen["off"] == seen["on"]  # and the same error, byte for byte
    assert lab.server()["calls"] >= 1


def test_the_next_calls_child_is_forked_ahead(lab: Lab) -> None:
    """Between calls the warm process has one spare child (forked ahead, so a call does not wait for a fork);
    each call uses it and a new one is forked; a spare that dies is replaced and costs the next call nothing
    but a fork at its time."""
    assert lab.call("on").returncode == 0
    server = int(lab.server()["pid"])
    assert _wait_until(lambda: len(lab.children_of(server)) == 1, 5)
    (spare,) = lab.children_of(server)
    assert lab.call("on", cid="c2").returncode == 0
    assert _wait_until(lambda: len(lab.children_of(server)) == 1 and lab.children_of(server) != [spare], 5)
    (spare,) = lab.children_of(server)
    os.kill(spare, signal.SIGKILL)
    assert _wait_until(lambda: lab.children_of(server) == [], 5)
    proc = lab.call("on", cid="c3")
    assert proc.returncode == 0, proc.stderr
    assert lab.server()["calls"] == 3
    assert _wait_until(lambda: len(lab.children_of(server)) == 1, 5)

