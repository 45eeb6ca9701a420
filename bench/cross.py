"""The cross-built files next to upstream's Go files of the same architecture: sizes, and calls emulated by qemu.

For each architecture ours is cross-built for (cni_common/bundle/arches.py: arm64, arm, mips64le, ppc64le, s390x
on an amd64 machine), the Go side is Debian's containernetworking-plugins:<arch>, unpacked by .ci/setup into
``build/go-<arch>`` (not installed: it would replace the amd64 package the other cases compare with). Debian's
Go plugins are dynamically linked against that architecture's C library, so they run with
``QEMU_LD_PREFIX=build/sysroot/<arch>`` (the cross build's unpacked packages); ours carry theirs.

Rows per architecture: one file against Go's bridge + host-local + portmap, the release tarball (every plugin a
hard link to one file) against those three tarred alike, and the first call by hand (ours unpacks into an empty
cache), emulated. For arm64 also the pair bridge+host-local ADD/DEL cycle. Both sides run under the same qemu,
driven by the same amd64 libcni, so the ratios say how the two programs compare only roughly: emulation inflates
everything, our interpreter's many small branches more than Go's compiled code.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from bench import cases, confs, footprint
from bench.lab import Lab
from bench.table import Row
from cni_common.bundle.arches import ARCHES, by_debian
from cni_common.bundle.release import tarball_name
from tests.helpers import paths

#: The architecture whose ADD/DEL cycle is measured too (the others: sizes and the first call).
CYCLE_ARCH = "arm64"


def go_dir(arch: str) -> Path:
    return paths.REPO / "build" / f"go-{arch}" / "usr" / "lib" / "cni"


def install_arch(arch: str, dest: Path) -> Path:
    """The architecture's files as ``build.sh install`` lays them out: one inode, every name."""
    dest.mkdir(parents=True)
    first = dest / paths.OUR_PLUGINS[0]
    shutil.copy(paths.DIST_DIR / f"linux-{arch}" / paths.OUR_PLUGINS[0], first)
    for name in paths.OUR_PLUGINS[1:]:
        (dest / name).hardlink_to(first)
    return dest


def cross_arches() -> list[str]:
    native = by_debian(subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                                      check=True).stdout.strip())
    return [arch.name for arch in ARCHES.values() if arch != native]


def arch_rows(lab: Lab, cnitool: Path, n: int, arch: str) -> list[Row]:
    """One architecture's rows (see the module's docstring)."""
    go = go_dir(arch)
    missing = [str(p) for p in (paths.DIST_DIR / f"linux-{arch}" / "bridge", go / "bridge") if not p.exists()]
    if missing:
        return [Row(arch, note=f"missing {', '.join(missing)}: run .ci/setup (./build.sh)")]
    ours_dir = install_arch(arch, lab.tmp / f"opt-cni-bin-{arch}")
    tarball = paths.DIST_DIR / tarball_name(arch)
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    go_env = {**env, "QEMU_LD_PREFIX": str(paths.REPO / "build" / "sysroot" / arch)}
    go_files = float(footprint.unique_bytes(go / name for name in footprint.GO_BINARIES))
    rows = [
        Row(f"{arch} size: one plugin file (the whole suite)", "MiB", float((ours_dir / "bridge").stat().st_size),
            go_files, note=f"Go: bridge + host-local + portmap (Debian, {ARCHES[arch].debian})"),
        Row(f"{arch} size: {tarball.name}", "MiB", float(tarball.stat().st_size),
            float(footprint.go_tarball_bytes(go)), note="Go: the same 3 binaries, tarred alike"),
        Row(f"{arch} first call (host-local by hand, median of 5), emulated", "ms",
            footprint.first_call_seconds(ours_dir / "host-local", env),
            footprint.first_call_seconds(go / "host-local", go_env), note="ours: unpacks into an empty cache"),
    ]
    if arch == CYCLE_ARCH:
        cache = lab.tmp / f"suite-cache-{arch}"  # its own: another architecture's unpack would prune amd64's
        cache.mkdir(mode=0o700)
        sides = [cases.Side("ours", ours_dir, lab.netns("host"), lab.tmp / f"{arch}-ours", cnitool,
                            {"CNI_SUITE_CACHE_DIR": str(cache)}),
                 cases.Side("Go", go, lab.netns("host"), lab.tmp / f"{arch}-go", cnitool,
                            {"QEMU_LD_PREFIX": go_env["QEMU_LD_PREFIX"]})]
        cases.log(f"{arch} (emulated) pair bridge + host-local")
        rows += cases.cycle_rows(lab, sides, f"{arch} emulated: pair bridge+host-local", confs.PAIR_NET,
                                 confs.pair_conflist, None, n, ())
    return rows


def cross_rows(lab: Lab, cnitool: Path, n: int) -> list[Row]:
    rows: list[Row] = []
    for arch in cross_arches():
        cases.log(f"{arch}: sizes and the first call, emulated")
        rows += arch_rows(lab, cnitool, n, arch)
    return rows
