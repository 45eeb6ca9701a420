"""The cross-built architectures (arm64, arm, mips64le, ppc64le, s390x) run under qemu-user, each in an EMPTY root.

What it proves, per architecture: its release tarball unpacks into one file under every plugin name (tar
recreates the hard links), the cross build swapped every piece of machine code (an amd64 leftover would not
load), the launcher answers VERSION for every plugin, Python starts (the about text names the platform), and
host-local ADD/CHECK/DEL work. On arm64 also a bridge ADD, ping between two containers, CHECK and DEL in test
namespaces. The same on s390x, the big-endian one, needs a big-endian kernel (test_s390x_vm.py): qemu-user
byte-swaps a big-endian guest's netlink for this little-endian kernel, but not the attributes nested in
IFLA_LINKINFO, so under qemu-user creating a bridge fails with EOPNOTSUPP for every s390x program (Debian's Go
bridge too).

The root holds nothing but the tarball's contents in /opt/cni/bin (chrooted like the other roots,
tests/portability/rootfs.py): nothing of this machine's libraries takes part, so it passes only because the
files carry their own loader and C library. qemu-<arch> is registered by .ci/setup with the F (fix-binary)
flag, so it works inside the chroot. qemu 7.2 answers the NS_GET_NSTYPE ioctl with ENOSYS: cni_common/netns.py
falls back to another check, which the bridge test exercises for real. An emulated call takes ~0.3-1 s, the
first (it unpacks) ~1-2 s (bench/README.md).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any, Callable

import pytest

from cni_common.bundle.arches import ARCHES, Arch, by_debian
from cni_common.bundle.release import tarball_name
from cni_common.version import version_info_json
from tests.helpers import paths
from tests.helpers.net import ping
from tests.helpers.netns import Netns
from tests.helpers.skip import skip_or_fail
from tests.portability.rootfs import BIN_DIR, Plugin, run_in_root

NATIVE = by_debian(subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                                  check=True).stdout.strip())
CROSS = [arch.name for arch in ARCHES.values() if arch != NATIVE]
#: The architecture of the bridge test here: the most common other node (s390x: test_s390x_vm.py).
BRIDGE_ARCHES = [name for name in ("arm64",) if name in CROSS]
BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
#: host-local never enters CNI_NETNS, but ADD/CHECK/DEL must name one.
NO_NETNS = "/run/netns/cnt-cross-none"
DATA_DIR = "/var/lib/cni-test-networks"  # inside the empty root


def elf_machine(path: Path) -> int:
    """e_machine of an ELF file, read in the file's own byte order (EI_DATA: 1 little, 2 big)."""
    with path.open("rb") as f:
        head = f.read(20)
    assert head[:4] == b"\x7fELF", f"{path} is not an ELF file"
    return int.from_bytes(head[18:20], "big" if head[5] == 2 else "little")


def checked_arch(name: str) -> Arch:
    """The architecture, with its built files and tarball and a working qemu binfmt handler; else skip (CI: fail)."""
    if os.geteuid() != 0:
        pytest.skip("the plugins and chroot need root")
    arch = ARCHES[name]
    missing = paths.missing_plugins(paths.DIST_DIR / f"linux-{name}")
    if missing or not (paths.DIST_DIR / tarball_name(name)).exists():
        skip_or_fail(f"{name} files not built in {paths.DIST_DIR} (run ./build.sh)")
    entry = BINFMT_DIR / f"qemu-{arch.qemu}"
    if not entry.exists() or not entry.read_text().startswith("enabled"):
        skip_or_fail(f"{entry} is not registered/enabled: qemu-user-static with binfmt (run .ci/setup)")
    return arch


def make_empty_root(arch: Arch, root: Path) -> Path:
    """A root filesystem holding only the release tarball's contents in /opt/cni/bin (rootfs.py mounts /proc,
    /sys, /dev, /run/netns for each call)."""
    for folder in (BIN_DIR, "/tmp", "/var/cache"):
        (root / folder.lstrip("/")).mkdir(parents=True)
    (root / "tmp").chmod(0o1777)
    subprocess.run(["tar", "-C", str(root / BIN_DIR.lstrip("/")), "-xzf",
                    str(paths.DIST_DIR / tarball_name(arch.name))], check=True)
    return root


@pytest.fixture(scope="module", params=CROSS)
def arch(request: pytest.FixtureRequest) -> Arch:
    return checked_arch(request.param)


@pytest.fixture(scope="module")
def empty_root(arch: Arch, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One root per architecture for the module's tests: the first Python call unpacks into its cache once."""
    return make_empty_root(arch, tmp_path_factory.mktemp(f"root-{arch.name}"))


def ipam_conf(data_dir: str, subnet: str = "10.89.0.0/24") -> dict[str, Any]:
    return {"cniVersion": "1.0.0", "name": "cnt-cross-net",
            "ipam": {"type": "host-local", "dataDir": data_dir, "ranges": [[{"subnet": subnet}]]}}


def reservations(data_dir: Path) -> list[str]:
    folder = data_dir / "cnt-cross-net"
    return sorted(n for n in os.listdir(folder) if n[0].isdigit()) if folder.exists() else []


def test_the_tarball_unpacks_one_file_of_the_architecture_under_every_name(arch: Arch, empty_root: Path) -> None:
    bin_dir = empty_root / BIN_DIR.lstrip("/")
    files = [bin_dir / name for name in paths.OUR_PLUGINS]
    assert len({f.stat().st_ino for f in files}) == 1, "tar did not recreate the hard links"
    assert files[0].read_bytes() == (paths.DIST_DIR / f"linux-{arch.name}" / paths.OUR_PLUGINS[0]).read_bytes()
    assert elf_machine(files[0]) == arch.elf_machine


def test_version_of_every_plugin(arch: Arch, empty_root: Path) -> None:
    for name in paths.OUR_PLUGINS:
        rc, out, err = Plugin(empty_root, name).call("VERSION", {"cniVersion": "1.0.0"})
        assert rc == 0 and out == json.loads(version_info_json()), (name, out, err)


def test_python_starts_and_names_the_platform(arch: Arch, empty_root: Path) -> None:
    """By hand (no CNI_COMMAND): the about lines come from Python in the bundle, the first call unpacks it."""
    about = run_in_root(empty_root, [f"{BIN_DIR}/bridge"], timeout=120)
    assert about.returncode == 0, about.stderr
    assert "CNI bridge plugin v" in about.stderr and f"linux/{arch.name}," in about.stderr, about.stderr


def unpacked_loader(root: Path) -> Path:
    """The dynamic loader of the one build unpacked in the root's cache."""
    (build,) = [p for p in (root / "var/cache/cni-suite").iterdir() if len(p.name) == 64]
    (loader,) = [p for p in (build / "_internal").iterdir() if p.name.startswith("ld")]
    return loader


def test_host_local_add_check_del(arch: Arch, empty_root: Path) -> None:
    host_local = Plugin(empty_root, "host-local")
    conf = ipam_conf(DATA_DIR)
    data_dir = empty_root / DATA_DIR.lstrip("/")
    rc, out, err = host_local.call("ADD", conf, "cnt-cross-root", NO_NETNS)
    assert rc == 0, (out, err)
    assert reservations(data_dir) == [out["ips"][0]["address"].split("/")[0]]
    assert host_local.call("CHECK", {**conf, "prevResult": out}, "cnt-cross-root", NO_NETNS)[0] == 0
    assert host_local.call("DEL", conf, "cnt-cross-root", NO_NETNS)[0] == 0
    assert reservations(data_dir) == []
    # it ran on what it carries: the architecture's loader in the bundle, no shared library elsewhere in the root
    assert elf_machine(unpacked_loader(empty_root)) == arch.elf_machine
    outside = [p for p in empty_root.rglob("*.so*") if "cni-suite" not in p.parts]
    assert outside == []


@pytest.mark.parametrize("name", BRIDGE_ARCHES)
def test_bridge_add_ping_check_del(name: str, tmp_path: Path, host_ns: Netns,
                                   make_container_ns: Callable[..., Netns]) -> None:
    root = make_empty_root(checked_arch(name), tmp_path / "root")
    bridge = Plugin(root, "bridge", host=host_ns)
    conf = {**ipam_conf(DATA_DIR), "type": "bridge", "bridge": "cntxbr0", "isGateway": True}
    containers = [make_container_ns(lo_up=True), make_container_ns(lo_up=True)]
    results = []
    for index, ctr in enumerate(containers):
        rc, out, err = bridge.call("ADD", conf, f"cnt-cross-{index}", ctr.path)
        assert rc == 0, (out, err)
        results.append(out)
    first, second = (r["ips"][0]["address"].split("/")[0] for r in results)
    assert ping(containers[0], second) and ping(containers[1], first)
    for index, ctr in enumerate(containers):
        rc, out, err = bridge.call("CHECK", {**conf, "prevResult": results[index]}, f"cnt-cross-{index}", ctr.path)
        assert rc == 0, (out, err)
        rc, out, err = bridge.call("DEL", conf, f"cnt-cross-{index}", ctr.path)
        assert rc == 0, (out, err)
        assert ctr.ip("link", "show", "eth0", check=False).returncode != 0
    assert host_ns.ip("link", "show", "type", "veth").stdout.strip() == ""
    assert reservations(root / DATA_DIR.lstrip("/")) == []
