"""`cni-suite install`, run from the built single file into test directories (never /opt/cni/bin).

Read-only and full file systems are small tmpfs mounts made inside a private mount namespace
(`unshare --mount`), so nothing is mounted on the machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest

from plugins.multicall import PLUGINS
from tests.helpers.builds import build_hash

TEMPLATE = {
    "cniVersion": "1.0.0", "name": "pods",
    "plugins": [
        {"type": "bridge", "bridge": "cnt0", "isGateway": True,
         "ipam": {"type": "host-local", "ranges": [[{"subnet": "${POD_CIDR}"}]]}},
        {"type": "portmap", "capabilities": {"portMappings": True}},
    ],
}
TYPES = tuple(PLUGINS)  # every type the suite ships (plugins/multicall.py)


@pytest.fixture(scope="module")
def builds(suite_builds: tuple[Path, Path]) -> tuple[Path, Path]:
    return suite_builds


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The launcher's cache for these runs (never the shared /var/cache/cni-suite)."""
    path = tmp_path_factory.mktemp("cache")
    path.chmod(0o700)
    return path


class Node:
    """A node's CNI directories in a test folder, and the installer run against them."""

    def __init__(self, root: Path, cache: Path) -> None:
        self.root = root
        self.bin = root / "bin"
        self.conf = root / "net.d"
        self.cache = cache
        self.template = root / "template.json"
        self.template.write_text(json.dumps(TEMPLATE))

    @property
    def conflist(self) -> Path:
        return self.conf / "10-cni-suite.conflist"

    def argv(self, build: Path, *extra: str, bin_dir: Path | None = None, conf_dir: Path | None = None) -> list[str]:
        return [str(build), "install", "--bin-dir", str(bin_dir or self.bin), "--conf-dir", str(conf_dir or self.conf),
                "--conflist", str(self.template), *extra]

    def env(self, **extra: str) -> dict[str, str]:
        return {"PATH": os.defpath, "CNI_SUITE_CACHE_DIR": str(self.cache), "POD_CIDR": "10.99.1.0/24", **extra}

    def install(self, build: Path, *extra: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(build, *extra), env=self.env(**env), capture_output=True, text=True,
                              timeout=60)

    def state(self) -> dict[str, tuple[int, str]]:
        """name -> (inode, build hash or text) of everything in the two directories."""
        out = {}
        for d in (self.bin, self.conf):
            for p in sorted(d.iterdir()) if d.is_dir() else []:
                out[f"{d.name}/{p.name}"] = (p.stat().st_ino, build_hash(p) or p.read_text())
        return out


@pytest.fixture
def node(tmp_path: Path, cache_dir: Path) -> Node:
    return Node(tmp_path, cache_dir)


def test_install_links_one_copy_then_writes_the_config(node: Node, builds):
    first, _ = builds
    res = node.install(first)
    assert res.returncode == 0, res.stderr
    inodes = {(node.bin / t).stat().st_ino for t in TYPES}
    assert len(inodes) == 1 and (node.bin / "bridge").stat().st_nlink == len(TYPES)  # one file, every name
    assert (node.bin / "bridge").read_bytes() == first.read_bytes()
    assert (node.bin / "bridge").stat().st_mode & 0o777 == 0o755
    conf = json.loads(node.conflist.read_text())
    assert conf["plugins"][0]["ipam"]["ranges"] == [[{"subnet": "10.99.1.0/24"}]]
    assert node.conflist.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in node.bin.iterdir()) == sorted(TYPES)  # no temporary file left
    assert [p.name for p in node.conf.iterdir()] == [node.conflist.name]

    before = node.state()
    res = node.install(first)
    assert res.returncode == 0, res.stderr
    assert node.state() == before  # same bytes: nothing rewritten (same inodes)


def test_upgrade_renames_over_and_never_writes_in_place(node: Node, builds):
    first, second = builds
    assert node.install(first).returncode == 0
    with open(node.bin / "portmap", "rb") as held:  # a runtime exec'ing the old file holds this inode
        res = node.install(second)
        assert res.returncode == 0, res.stderr
        assert build_hash(Path(f"/proc/self/fd/{held.fileno()}")) == build_hash(first)
    assert {build_hash(node.bin / t) for t in TYPES} == {build_hash(second)}
    assert len({(node.bin / t).stat().st_ino for t in TYPES}) == 1


def test_a_bad_config_is_refused_and_nothing_changes(node: Node, builds):
    first, second = builds
    assert node.install(first).returncode == 0
    before = node.state()
    bad = json.loads(json.dumps(TEMPLATE))
    bad["plugins"][0]["vlan"] = 5000
    node.template.write_text(json.dumps(bad))
    res = node.install(second)  # even the new binaries wait for a good config
    assert res.returncode == 3
    assert "plugins[0] (bridge): invalid VLAN ID 5000" in res.stderr and "Traceback" not in res.stderr
    assert node.state() == before

    node.template.write_text(json.dumps(TEMPLATE))
    res = node.install(second, POD_CIDR="")  # an empty subnet is a bad config too
    assert res.returncode == 3 and "plugins[0] (bridge)" in res.stderr
    assert node.state() == before


def test_a_config_naming_a_missing_plugin_is_not_written(node: Node, builds):
    first, _ = builds
    conf = json.loads(json.dumps(TEMPLATE))
    conf["plugins"].append({"type": "frobnicate"})
    node.template.write_text(json.dumps(conf))
    res = node.install(first)
    assert res.returncode == 3 and f"no executable frobnicate in {node.bin}" in res.stderr
    assert not node.conflist.exists()


def test_node_subnets_file_gives_each_node_its_subnet(node: Node, builds):
    first, _ = builds
    subnets = node.root / "subnets"
    subnets.write_text("# node subnet\nnode-a 10.99.1.0/24\nnode-b 10.99.2.0/24\n")
    env = node.env(NODE_NAME="node-b")
    del env["POD_CIDR"]
    res = subprocess.run(node.argv(first, "--node-subnets", str(subnets)), env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert json.loads(node.conflist.read_text())["plugins"][0]["ipam"]["ranges"][0][0]["subnet"] == "10.99.2.0/24"
    env["NODE_NAME"] = "node-z"
    res = subprocess.run(node.argv(first, "--node-subnets", str(subnets)), env=env, capture_output=True, text=True)
    assert res.returncode == 3 and "no line for node 'node-z'" in res.stderr


def test_check_prints_the_config_and_writes_nothing(node: Node, builds):
    first, _ = builds
    res = node.install(first, "--check")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["plugins"][1]["type"] == "portmap"
    assert not node.bin.exists() and not node.conf.exists()


def _in_private_mounts(node: Node, script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                          env=node.env(), capture_output=True, text=True, timeout=120)


def _after(out: str) -> dict[str, str]:
    """`sha256sum`-style lines printed by the script after the failed install: file name -> digest."""
    return {Path(line.split()[1]).name: line.split()[0] for line in out.splitlines() if line.count(" ") == 2}


@pytest.mark.parametrize("failure, message", [("full", "no space left on the device"),
                                              ("read-only", "the file system is read-only")])
def test_a_failed_write_exits_1_and_leaves_the_previous_files(node: Node, builds, failure: str, message: str):
    first, second = builds
    mnt = node.root / "mnt"
    mnt.mkdir()
    size = first.stat().st_size + 2 * 1024 * 1024  # room for one build and the config, not for a second copy
    q = shlex.quote
    install_first = " ".join(map(q, node.argv(first, bin_dir=mnt / "bin", conf_dir=mnt / "net.d")))
    install_second = " ".join(map(q, node.argv(second, bin_dir=mnt / "bin", conf_dir=mnt / "net.d")))
    remount = f"mount -o remount,ro {q(str(mnt))}" if failure == "read-only" else "true"
    script = (f"set -e; mount -t tmpfs -o size={size} cnt-install {q(str(mnt))}; {install_first}; {remount}; "
              f"set +e; {install_second}; echo rc=$?; sha256sum {q(str(mnt))}/bin/* {q(str(mnt))}/net.d/*; "
              f"ls -A {q(str(mnt))}/bin {q(str(mnt))}/net.d")
    res = _in_private_mounts(node, script)
    assert "rc=1" in res.stdout, (res.stdout, res.stderr)
    assert message in res.stderr and "previous files left as they were" in res.stderr
    assert "Traceback" not in res.stderr
    digests = _after(res.stdout)
    first_digest = hashlib.sha256(first.read_bytes()).hexdigest()
    assert {digests[t] for t in TYPES} == {first_digest}  # still the first build, complete
    assert "10-cni-suite.conflist" in digests
    assert ".cni-suite-" not in res.stdout  # no temporary file left behind


def _wait_for(condition, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # readiness poll, not a timed assertion
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


@pytest.mark.parametrize("remove_on_exit", [False, True])
def test_watch_reinstalls_on_change_and_handles_sigterm(node: Node, builds, remove_on_exit: bool):
    first, _ = builds
    extra = ["--watch", "--interval", "0.1"] + (["--remove-config-on-exit"] if remove_on_exit else [])
    log = node.root / "installer.log"
    with log.open("w") as stderr:
        proc = subprocess.Popen(node.argv(first, *extra), env=node.env(), stderr=stderr)
    try:
        _wait_for(lambda: "watching" in log.read_text())
        changed = json.loads(json.dumps(TEMPLATE))
        changed["plugins"][0]["bridge"] = "cnt1"  # an updated ConfigMap
        node.template.write_text(json.dumps(changed))
        _wait_for(lambda: '"cnt1"' in node.conflist.read_text())
        (node.bin / "portmap").unlink()  # someone removed a plugin from the host
        _wait_for(lambda: (node.bin / "portmap").exists())
        assert build_hash(node.bin / "portmap") == build_hash(first)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
        proc.wait()
    assert node.conflist.exists() is not remove_on_exit
    assert ("removed" in log.read_text()) is remove_on_exit
    assert all((node.bin / t).exists() for t in TYPES)  # plugin files always stay: pods still need DEL


def test_uninstall_removes_the_config_and_only_our_binaries(node: Node, builds):
    first, _ = builds
    assert node.install(first).returncode == 0
    res = node.install(first, "--uninstall")
    assert res.returncode == 0, res.stderr
    assert not node.conflist.exists() and all((node.bin / t).exists() for t in TYPES)
    foreign = node.bin / "bridge"
    foreign.unlink()
    foreign.write_bytes(b"#!/bin/sh\n# another add-on's bridge\n")
    res = node.install(first, "--uninstall", "--remove-binaries")
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in node.bin.iterdir()) == ["bridge"]


def test_uninstall_watch_stays_up_until_sigterm(node: Node, builds):
    first, _ = builds
    assert node.install(first).returncode == 0
    log = node.root / "uninstall.log"
    with log.open("w") as stderr:
        proc = subprocess.Popen(node.argv(first, "--uninstall", "--watch"), env=node.env(), stderr=stderr)
    try:
        _wait_for(lambda: "waiting for SIGTERM" in log.read_text())
        assert not node.conflist.exists() and proc.poll() is None  # removed, and still up (a DaemonSet's pod)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
        proc.wait()


def test_watch_retries_a_failed_reinstall_when_nothing_changes(node: Node, builds):
    """Issue 23: a re-install that failed (a file in the way of the config directory) is retried with back-off,
    not only at the next change: removing the obstacle changes no input, and the config comes back."""
    first, _ = builds
    log = node.root / "installer.log"
    with log.open("w") as stderr:
        proc = subprocess.Popen(node.argv(first, "--watch", "--interval", "0.1"), env=node.env(), stderr=stderr)
    try:
        _wait_for(lambda: "watching" in log.read_text())
        node.conf.rename(node.root / "net.d.old")  # the config went (a change) and a file blocks its directory
        node.conf.write_text("in the way")
        _wait_for(lambda: "re-install failed" in log.read_text())
        node.conf.unlink()
        _wait_for(lambda: "re-install succeeded" in log.read_text())  # logged once the config is written
        assert node.conflist.exists()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
        proc.wait()
