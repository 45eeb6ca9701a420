"""The arm64 files (``dist/linux-arm64/``, cross-built on this amd64 machine) run under qemu-user (binfmt_misc).

What it proves: the cross build swapped every piece of machine code (an amd64 leftover would not load), the
arm64 launcher and runner start, and the plugins work. Two places:

- on this machine: VERSION, the about text, host-local ADD/CHECK/DEL (a temp dataDir);
- in an otherwise EMPTY root filesystem (only the arm64 files in /opt/cni/bin; chrooted like the other roots,
  tests/portability/rootfs.py): host-local ADD/CHECK/DEL, and bridge ADD, ping between two containers, CHECK,
  DEL in test namespaces. Nothing of this machine's arm64 multiarch libraries (/lib/aarch64-linux-gnu, there
  for the cross build) is in that root, so it passes only because the files carry their own loader and C
  library.

qemu-aarch64 is registered by .ci/setup with the F (fix-binary) flag, so it also works inside the chroot. qemu
7.2 answers the NS_GET_NSTYPE ioctl with ENOSYS: cni_common/netns.py falls back to another check, which the
bridge test exercises for real. Calls on this machine unpack into a cache of this module's own
(CNI_SUITE_CACHE_DIR), never into the machine's /var/cache/cni-suite, where the arm64 launcher would prune the
amd64 build's folder. An emulated call takes ~0.3 s (one that unpacks first ~1.4 s: bench/README.md).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

import pytest

from cni_common.version import version_info_json
from tests.helpers import paths
from tests.helpers.net import ping
from tests.helpers.netns import Netns
from tests.helpers.plugin import PluginResult, run_plugin
from tests.helpers.skip import skip_or_fail
from tests.portability.rootfs import BIN_DIR, Plugin

ARM64_DIR = paths.DIST_DIR / "linux-arm64"
BINFMT_ENTRY = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")
EM_AARCH64 = 183
#: host-local never enters CNI_NETNS, but ADD/CHECK/DEL must name one.
NO_NETNS = "/run/netns/cnt-arm-none"
DATA_DIR = "/var/lib/cni-test-networks"  # inside the empty root


def elf_machine(path: Path) -> int:
    """e_machine of an ELF file (little-endian, at offset 18)."""
    with path.open("rb") as f:
        head = f.read(20)
    assert head[:4] == b"\x7fELF", f"{path} is not an ELF file"
    return int.from_bytes(head[18:20], "little")


@pytest.fixture(scope="module")
def arm64_dir() -> Path:
    """dist/linux-arm64 with all four files, and a working qemu-aarch64 binfmt handler; else skip (CI: fail)."""
    if os.geteuid() != 0:
        pytest.skip("the plugins and chroot need root")
    missing = paths.missing_plugins(ARM64_DIR)
    if missing:
        skip_or_fail(f"arm64 files not built in {ARM64_DIR} (run ./build.sh): missing {', '.join(missing)}")
    if not BINFMT_ENTRY.exists() or not BINFMT_ENTRY.read_text().startswith("enabled"):
        skip_or_fail(f"{BINFMT_ENTRY} is not registered/enabled: qemu-user-static with binfmt (run .ci/setup)")
    return ARM64_DIR


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The module's own launcher cache: the arm64 build unpacks once for the calls on this machine."""
    path = tmp_path_factory.mktemp("arm64-cache")
    path.chmod(0o700)
    return path


def ipam_conf(data_dir: Path | str, subnet: str = "10.89.0.0/24") -> dict[str, Any]:
    return {"cniVersion": "1.0.0", "name": "cnt-arm-net",
            "ipam": {"type": "host-local", "dataDir": str(data_dir), "ranges": [[{"subnet": subnet}]]}}


def reservations(data_dir: Path) -> list[str]:
    folder = data_dir / "cnt-arm-net"
    return sorted(n for n in os.listdir(folder) if n[0].isdigit()) if folder.exists() else []


def call(arm64_dir: Path, cache_dir: Path, plugin: str, command: str, conf: Any, **kw: Any) -> PluginResult:
    env = {"CNI_SUITE_CACHE_DIR": str(cache_dir)}
    return run_plugin(arm64_dir / plugin, command, conf, netns=NO_NETNS, env=env, timeout=120, **kw)


def test_every_file_is_arm64(arm64_dir: Path) -> None:
    for name in paths.OUR_PLUGINS:
        assert elf_machine(arm64_dir / name) == EM_AARCH64, name


def test_version_and_about(arm64_dir: Path, cache_dir: Path) -> None:
    version = call(arm64_dir, cache_dir, "host-local", "VERSION", "")
    assert version.rc == 0 and version.out == json.loads(version_info_json()), version
    # by hand (no CNI_COMMAND): the about lines, from Python, which names the platform the file was built for
    about = run_plugin(arm64_dir / "bridge", "", "", timeout=120,
                       env={"CNI_COMMAND": None, "CNI_SUITE_CACHE_DIR": str(cache_dir)})
    assert about.rc == 0 and "CNI bridge plugin v" in about.stderr and "linux/arm64" in about.stderr, about


def test_host_local_add_check_del(arm64_dir: Path, cache_dir: Path, tmp_path: Path) -> None:
    conf = ipam_conf(tmp_path)
    added = call(arm64_dir, cache_dir, "host-local", "ADD", conf, container_id="cnt-arm-1")
    assert added.rc == 0, added
    assert reservations(tmp_path) == [added.out["ips"][0]["address"].split("/")[0]]
    checked = call(arm64_dir, cache_dir, "host-local", "CHECK", {**conf, "prevResult": added.out},
                   container_id="cnt-arm-1")
    assert checked.rc == 0, checked
    deleted = call(arm64_dir, cache_dir, "host-local", "DEL", conf, container_id="cnt-arm-1")
    assert deleted.rc == 0 and reservations(tmp_path) == [], deleted


@pytest.fixture
def empty_root(arm64_dir: Path, tmp_path: Path) -> Path:
    """A root filesystem holding nothing but the arm64 files (rootfs.py mounts /proc, /sys, /dev, /run/netns)."""
    root = tmp_path / "root"
    for folder in (BIN_DIR, "/tmp", "/var/cache"):
        (root / folder.lstrip("/")).mkdir(parents=True)
    (root / "tmp").chmod(0o1777)
    for name in ("bridge", "host-local"):
        shutil.copy(arm64_dir / name, root / BIN_DIR.lstrip("/") / name)
    return root


def unpacked_loader(root: Path) -> Path:
    """The dynamic loader of the one build unpacked in the root's cache."""
    (build,) = [p for p in (root / "var/cache/cni-suite").iterdir() if len(p.name) == 64]
    (loader,) = (build / "_internal").glob("ld-linux-*")
    return loader


def test_host_local_in_an_empty_root(empty_root: Path) -> None:
    host_local = Plugin(empty_root, "host-local")
    conf = ipam_conf(DATA_DIR)
    data_dir = empty_root / DATA_DIR.lstrip("/")
    rc, out, err = host_local.call("ADD", conf, "cnt-arm-root", NO_NETNS)
    assert rc == 0, (out, err)
    assert reservations(data_dir) == [out["ips"][0]["address"].split("/")[0]]
    assert host_local.call("CHECK", {**conf, "prevResult": out}, "cnt-arm-root", NO_NETNS)[0] == 0
    assert host_local.call("DEL", conf, "cnt-arm-root", NO_NETNS)[0] == 0
    assert reservations(data_dir) == []
    # it ran on what it carries: an arm64 loader in the bundle, no shared library anywhere else in the root
    assert elf_machine(unpacked_loader(empty_root)) == EM_AARCH64
    outside = [p for p in empty_root.rglob("*.so*") if "cni-suite" not in p.parts]
    assert outside == []


def test_bridge_add_ping_del_in_an_empty_root(empty_root: Path, host_ns: Netns,
                                              make_container_ns: Callable[..., Netns]) -> None:
    bridge = Plugin(empty_root, "bridge", host=host_ns)
    conf = {**ipam_conf(DATA_DIR), "type": "bridge", "bridge": "cntarmbr0", "isGateway": True}
    containers = [make_container_ns(lo_up=True), make_container_ns(lo_up=True)]
    results = []
    for index, ctr in enumerate(containers):
        rc, out, err = bridge.call("ADD", conf, f"cnt-arm-{index}", ctr.path)
        assert rc == 0, (out, err)
        results.append(out)
    first, second = (r["ips"][0]["address"].split("/")[0] for r in results)
    assert ping(containers[0], second) and ping(containers[1], first)
    for index, ctr in enumerate(containers):
        rc, out, err = bridge.call("CHECK", {**conf, "prevResult": results[index]}, f"cnt-arm-{index}", ctr.path)
        assert rc == 0, (out, err)
        rc, out, err = bridge.call("DEL", conf, f"cnt-arm-{index}", ctr.path)
        assert rc == 0, (out, err)
        assert ctr.ip("link", "show", "eth0", check=False).returncode != 0
    assert host_ns.ip("link", "show", "type", "veth").stdout.strip() == ""
    assert reservations(empty_root / DATA_DIR.lstrip("/")) == []
