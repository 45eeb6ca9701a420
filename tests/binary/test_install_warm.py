"""`cni-suite install --warm`, run from the built file: the switch it writes governs the plugins it installed.

A node here is test folders: its CNI bin directory and its launcher cache (`CNI_SUITE_CACHE_DIR` for the
plugins, `--cache-dir` for the installer, which unpacks itself into a cache of its own, as the DaemonSet's
emptyDir). The plugin called is host-local on a config whose store is a test folder: no kernel state. The warm
processes started here are ended at the end.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from cni_common.warm.status import warm_processes
from tests.helpers import paths, warm

BUILD = paths.DIST_DIR / "bridge"
pytestmark = pytest.mark.skipif(not os.access(BUILD, os.X_OK), reason="needs ./build.sh")


class Node:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.bin = root / "bin"
        self.cache = root / "node-cache"  # absent: the installer makes it
        self.own_cache = root / "installer-cache"  # the installer's emptyDir
        self.own_cache.mkdir(mode=0o700)

    def install_argv(self, *extra: str) -> list[str]:
        cache = ["--cache-dir", str(self.cache)] if {"--warm", "--remove-binaries"} & set(extra) else []
        return [str(BUILD), "install", "--bin-dir", str(self.bin), "--plugins", "host-local", *cache, *extra]

    def install(self, *extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.install_argv(*extra), capture_output=True, text=True, timeout=60,
                              env=self.installer_env())

    def installer_env(self) -> dict[str, str]:
        return {"PATH": os.defpath, "CNI_SUITE_CACHE_DIR": str(self.own_cache)}

    def plugin_env(self, **extra: str) -> dict[str, str]:
        """What a runtime gives the plugins: no CNI_SUITE_WARM, so the node's file decides."""
        return {"PATH": os.defpath, "CNI_PATH": str(self.bin), "CNI_SUITE_CACHE_DIR": str(self.cache),
                "CNI_SUITE_WARM_IDLE": "30", "CNI_SUITE_WARM_DEBUG": "1", **extra}

    def call(self, verb: str) -> subprocess.CompletedProcess[bytes]:
        conf = {"cniVersion": "1.0.0", "name": "cnt-iw-net", "type": "host-local",
                "ipam": {"type": "host-local", "subnet": "10.124.0.0/24", "dataDir": str(self.root / "data")}}
        env = self.plugin_env(CNI_COMMAND=verb, CNI_CONTAINERID="c1", CNI_NETNS="/run/netns/cnt-iw-x",
                              CNI_IFNAME="eth0")
        return subprocess.run([str(self.bin / "host-local")], input=json.dumps(conf).encode(), env=env,
                              capture_output=True, timeout=60)

    def warm(self) -> list[dict[str, Any]]:
        """The warm processes as the node's operator sees them: `inspect --format json`."""
        out = subprocess.run([str(self.bin / "host-local"), "inspect", "--format", "json", "--data-dir",
                              str(self.root / "data")], env=self.plugin_env(), capture_output=True, timeout=60,
                             check=True).stdout
        return [w for w in json.loads(out)["warm"] if w["state"] == "running"]


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    node = Node(tmp_path)
    yield node
    warm.stop_warm_processes(str(node.cache))


def wait_until(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:  # readiness poll, not a timed assertion
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


def test_on_makes_the_installed_plugins_warm_and_off_ends_it(node: Node):
    res = node.install("--warm", "on")
    assert res.returncode == 0, res.stderr
    assert f"wrote {node.cache}/warm-mode: on" in res.stderr
    assert node.cache.stat().st_mode & 0o7777 == 0o700  # made as the launcher makes it
    assert (node.cache / "warm-mode").read_text().split()[0] == "on"

    for verb in ("ADD", "DEL"):
        call = node.call(verb)
        assert call.returncode == 0, call.stderr
    (shown,) = node.warm()
    assert shown["calls"] >= 1  # `on`: even this short-lived caller's calls went through the warm process

    res = node.install("--warm", "off")  # the next rollout
    assert res.returncode == 0, res.stderr
    assert wait_until(lambda: not warm_processes(str(node.cache)), 5), "off ended the warm process"
    assert node.call("ADD").returncode == 0
    assert node.warm() == []  # every call execs


def test_without_the_flag_the_file_is_left_alone(node: Node):
    node.cache.mkdir(mode=0o700)
    (node.cache / "warm-mode").write_text("off\n")  # an operator's
    res = node.install()
    assert res.returncode == 0, res.stderr
    assert (node.cache / "warm-mode").read_text() == "off\n"


@pytest.mark.parametrize("kind", ["symlink", "others-writable", "foreign"])
def test_a_cache_folder_the_launcher_would_refuse_is_refused_before_anything_is_installed(node: Node, kind: str):
    if kind == "symlink":
        target = node.root / "elsewhere"
        target.mkdir(mode=0o700)
        node.cache.symlink_to(target)
    else:
        node.cache.mkdir(mode=0o700)
        if kind == "others-writable":
            node.cache.chmod(0o777)
        else:
            os.chown(node.cache, 65534, 65534)
    res = node.install("--warm", "on")
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert f"launcher cache {node.cache}" in res.stderr and "refused" in res.stderr
    assert not node.bin.exists() and not (node.cache / "warm-mode").exists()


def test_a_bad_value_is_a_usage_error(node: Node):
    res = node.install("--warm", "maybe")
    assert res.returncode == 2 and "argument --warm: invalid choice: 'maybe'" in res.stderr
    assert not node.bin.exists() and not node.cache.exists()


def test_uninstall_with_the_binaries_removes_the_installers_switch(node: Node):
    assert node.install("--warm", "auto").returncode == 0
    res = node.install("--uninstall", "--remove-binaries")
    assert res.returncode == 0, res.stderr
    assert not (node.bin / "host-local").exists() and not (node.cache / "warm-mode").exists()
    assert f"removed {node.cache}/warm-mode" in res.stderr


def test_watch_writes_the_switch_again_when_someone_removes_it(node: Node):
    log = node.root / "install.log"
    with open(log, "w") as err:
        proc = subprocess.Popen(node.install_argv("--warm", "off", "--watch", "--interval", "0.2"),
                                stdout=subprocess.DEVNULL, stderr=err, env=node.installer_env())
    mode_file = node.cache / "warm-mode"
    try:
        assert wait_until(lambda: "watching every" in log.read_text(), 30), log.read_text()
        assert mode_file.exists()
        mode_file.unlink()
        assert wait_until(mode_file.exists, 10), "re-written"
        assert mode_file.read_text().split()[0] == "off"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert proc.returncode == 0, log.read_text()
    assert mode_file.exists()  # stopping the installer (a rollout) leaves the switch in place
