"""The arm64 files (``dist/linux-arm64/``, cross-built on this amd64 machine) run under qemu-user (binfmt_misc).

What it proves: the cross build swapped every piece of machine code (an amd64 leftover would not load), the
arm64 launcher and runner start, and the plugins work. Three places:

- on this machine: VERSION, host-local ADD/CHECK/DEL (only a temp dataDir);
- in an otherwise EMPTY root file system (the plugin file, /tmp, /var/cache, /proc; chroot): the same. Nothing
  of this machine's arm64 multiarch libraries (/lib/aarch64-linux-gnu, installed for the cross build) is there,
  so it only passes if the file carries its own loader and C library;
- bridge ADD, ping between two containers, DEL, in test namespaces (IPAM: the arm64 host-local).

qemu-aarch64 is registered by .ci/setup with the F (fix-binary) flag, so it also works inside the chroot.
qemu 7.2 answers the NS_GET_NSTYPE ioctl with ENOSYS: cni_common/netns.py falls back to another check, which
the bridge test exercises for real. Every file unpacks into a cache of this module's own (CNI_SUITE_CACHE_DIR),
never into the machine's /var/cache/cni-suite, where the arm64 launcher would prune the amd64 build's folder.
An emulated call takes ~0.3 s (the first, which unpacks, ~1.5 s).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from tests.helpers import paths
from tests.helpers.cnitool import parse_json_or_text
from tests.helpers.net import ping
from tests.helpers.netns import Netns
from tests.helpers.plugin import PluginResult, run_plugin
from tests.helpers.skip import skip_or_fail

ARM64_DIR = paths.DIST_DIR / "linux-arm64"
BINFMT_ENTRY = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")
EM_AARCH64 = 183
#: host-local never enters CNI_NETNS, but ADD/CHECK/DEL must name one.
NO_NETNS = "/run/netns/cnt-arm-none"


def elf_machine(path: Path) -> int:
    """e_machine of an ELF file (little-endian, at offset 18)."""
    with path.open("rb") as f:
        head = f.read(20)
    assert head[:4] == b"\x7fELF", f"{path} is not an ELF file"
    return int.from_bytes(head[18:20], "little")


@pytest.fixture(scope="module")
def arm64_dir() -> Path:
    """dist/linux-arm64 with all four files, and a working qemu-aarch64 binfmt handler; else skip (CI: fail)."""
    missing = paths.missing_plugins(ARM64_DIR)
    if missing:
        skip_or_fail(f"arm64 files not built in {ARM64_DIR} (run ./build.sh): missing {', '.join(missing)}")
    if not BINFMT_ENTRY.exists() or not BINFMT_ENTRY.read_text().startswith("enabled"):
        skip_or_fail(f"{BINFMT_ENTRY} is not registered/enabled: qemu-user-static with binfmt (run .ci/setup)")
    return ARM64_DIR


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The module's own launcher cache: each arm64 file unpacks once for all tests here."""
    path = tmp_path_factory.mktemp("arm64-cache")
    path.chmod(0o700)
    return path


def ipam_conf(data_dir: Path | str, subnet: str = "10.89.0.0/24") -> dict[str, Any]:
    return {"cniVersion": "1.0.0", "name": "cntarm", "type": "bridge",
            "ipam": {"type": "host-local", "dataDir": str(data_dir), "ranges": [[{"subnet": subnet}]]}}


def call(arm64_dir: Path, cache_dir: Path, plugin: str, command: str, conf: Any, **kw: Any) -> PluginResult:
    kw.setdefault("netns", NO_NETNS)
    env = {"CNI_SUITE_CACHE_DIR": str(cache_dir), **kw.pop("env", {})}
    return run_plugin(arm64_dir / plugin, command, conf, env=env, timeout=120, **kw)


def test_every_file_is_arm64(arm64_dir: Path):
    for name in paths.OUR_PLUGINS:
        assert elf_machine(arm64_dir / name) == EM_AARCH64, name


def test_version_answers_like_the_amd64_files(arm64_dir: Path, cache_dir: Path):
    result = call(arm64_dir, cache_dir, "host-local", "VERSION", "")
    assert result.rc == 0, result
    assert "1.1.0" in result.out["supportedVersions"]
    native = paths.DIST_DIR / "host-local"
    if native.exists():
        assert result.out == run_plugin(native, "VERSION", "").out


def test_host_local_add_check_del(arm64_dir: Path, cache_dir: Path, tmp_path: Path):
    conf = ipam_conf(tmp_path / "ipam")
    added = call(arm64_dir, cache_dir, "host-local", "ADD", conf, container_id="cnt-arm-1")
    assert added.rc == 0, added
    address = added.out["ips"][0]["address"].split("/")[0]
    assert (tmp_path / "ipam" / "cntarm" / address).exists()
    checked = call(arm64_dir, cache_dir, "host-local", "CHECK", {**conf, "prevResult": added.out},
                   container_id="cnt-arm-1")
    assert checked.rc == 0, checked
    deleted = call(arm64_dir, cache_dir, "host-local", "DEL", conf, container_id="cnt-arm-1")
    assert deleted.rc == 0, deleted
    assert not (tmp_path / "ipam" / "cntarm" / address).exists()


@pytest.fixture
def empty_root(arm64_dir: Path, tmp_path: Path) -> Path:
    """A root file system holding nothing but the arm64 host-local and the folders any node has."""
    root = tmp_path / "root"
    for folder in ("bin", "proc", "tmp", "var/cache", "var/lib/cni"):
        (root / folder).mkdir(parents=True)
    (root / "tmp").chmod(0o1777)
    (root / "bin" / "host-local").write_bytes((arm64_dir / "host-local").read_bytes())
    (root / "bin" / "host-local").chmod(0o755)
    return root


def in_root(root: Path) -> Callable[[str, Any], PluginResult]:
    """Run /bin/host-local chrooted into ``root``, with a /proc mounted in a private mount namespace (so the
    mount disappears with the process, even if the test dies)."""

    def run(command: str, conf: Any) -> PluginResult:
        shell = 'mount -t proc proc "$0/proc" && exec chroot "$0" /bin/host-local'
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CNI_COMMAND": command, "CNI_CONTAINERID": "cnt-arm-root",
               "CNI_NETNS": NO_NETNS, "CNI_IFNAME": "eth0", "CNI_PATH": "/bin"}
        argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", shell, str(root)]
        stdin = conf if isinstance(conf, str) else json.dumps(conf)
        proc = subprocess.run(argv, input=stdin, env=env, capture_output=True, text=True, timeout=120)
        return PluginResult(proc.returncode, parse_json_or_text(proc.stdout), proc.stderr)

    return run


def test_host_local_in_an_empty_root(empty_root: Path):
    run = in_root(empty_root)
    version = run("VERSION", "")
    assert version.rc == 0 and "1.1.0" in version.out["supportedVersions"], version
    conf = ipam_conf("/var/lib/cni/networks")
    added = run("ADD", conf)
    assert added.rc == 0, added
    address = added.out["ips"][0]["address"].split("/")[0]
    assert (empty_root / "var/lib/cni/networks/cntarm" / address).exists()
    assert run("CHECK", {**conf, "prevResult": added.out}).rc == 0
    deleted = run("DEL", conf)
    assert deleted.rc == 0, deleted
    assert not (empty_root / "var/lib/cni/networks/cntarm" / address).exists()
    # it ran from what it carries: the unpacked bundle has an arm64 loader, and the root has no other library
    unpacked = [p for p in (empty_root / "var/cache/cni-suite").iterdir() if len(p.name) == 64]
    assert len(unpacked) == 1
    assert elf_machine(next((unpacked[0] / "_internal").glob("ld-linux-aarch64.so.*"))) == EM_AARCH64
    outside = {p.relative_to(empty_root).parts[0] for p in empty_root.rglob("*.so*")} - {"var"}
    assert not outside


@pytest.fixture
def two_containers(make_container_ns: Callable[..., Netns]) -> Iterator[tuple[Netns, Netns]]:
    yield make_container_ns(lo_up=True), make_container_ns(lo_up=True)


def test_bridge_add_ping_del(arm64_dir: Path, cache_dir: Path, host_ns: Netns,
                             two_containers: tuple[Netns, Netns], tmp_path: Path):
    conf = {**ipam_conf(tmp_path / "ipam"), "bridge": "cntarmbr0", "isGateway": True}
    results = []
    for index, ctr in enumerate(two_containers):
        added = call(arm64_dir, cache_dir, "bridge", "ADD", conf, netns=ctr, in_netns=host_ns,
                     container_id=f"cnt-arm-{index}")
        assert added.rc == 0, added
        results.append(added.out)
    first, second = (r["ips"][0]["address"].split("/")[0] for r in results)
    assert ping(two_containers[0], second) and ping(two_containers[1], first)
    for index, ctr in enumerate(two_containers):
        checked = call(arm64_dir, cache_dir, "bridge", "CHECK", {**conf, "prevResult": results[index]},
                       netns=ctr, in_netns=host_ns, container_id=f"cnt-arm-{index}")
        assert checked.rc == 0, checked
        deleted = call(arm64_dir, cache_dir, "bridge", "DEL", conf, netns=ctr, in_netns=host_ns,
                       container_id=f"cnt-arm-{index}")
        assert deleted.rc == 0, deleted
        assert ctr.ip("link", "show", "eth0", check=False).returncode != 0
    veths = json.loads(host_ns.ip("-j", "link", "show", "type", "veth").stdout or "[]")
    assert veths == []
    assert not [p for p in (tmp_path / "ipam" / "cntarm").iterdir() if p.name[0].isdigit()]
