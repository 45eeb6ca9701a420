"""The arm64 files next to upstream's arm64 Go files: sizes, and calls emulated by qemu-user on this machine.

The Go side is Debian's containernetworking-plugins:arm64, unpacked by .ci/setup into ``build/go-arm64`` (not
installed: it would replace the amd64 package the other cases compare with). Both sides run under the same
qemu-aarch64 (binfmt), driven by the same amd64 libcni, so the ratio says how the two programs compare on an
arm64 CPU only roughly: emulation inflates everything, our interpreter's many small branches more than Go's
compiled code. The absolute times are not an arm64 node's. The cases reuse bench/cases.py and
bench/footprint.py, with row labels that start with "arm64".
"""

from __future__ import annotations

import shutil
from pathlib import Path

from bench import cases, confs, footprint
from bench.lab import Lab
from bench.table import Row
from tests.helpers import paths

ARM64_DIST = paths.DIST_DIR / "linux-arm64"
GO_ARM64_DIR = paths.REPO / "build" / "go-arm64" / "usr" / "lib" / "cni"
TARBALL = "cni-plugins-linux-arm64"


def install_arm64(dest: Path) -> Path:
    """The four arm64 files as ``build.sh install`` lays them out: one inode, four names."""
    dest.mkdir(parents=True)
    first = dest / paths.OUR_PLUGINS[0]
    shutil.copy(ARM64_DIST / paths.OUR_PLUGINS[0], first)
    for name in paths.OUR_PLUGINS[1:]:
        (dest / name).hardlink_to(first)
    return dest


def arm64_rows(lab: Lab, cnitool: Path, n: int) -> list[Row]:
    """Sizes (file, tarball, against Go's bridge + host-local + portmap for arm64), the first call (unpack) and
    the pair bridge+host-local ADD/DEL cycle, all emulated."""
    missing = [str(p) for p in (ARM64_DIST / "bridge", GO_ARM64_DIR / "bridge") if not p.exists()]
    if missing:
        return [Row("arm64", note=f"missing {', '.join(missing)}: run .ci/setup (./build.sh)")]
    ours_dir = install_arm64(lab.tmp / "opt-cni-bin-arm64")
    cache = lab.tmp / "suite-cache-arm64"  # its own: an arm64 unpack would prune the amd64 build's folder
    cache.mkdir(mode=0o700)
    go_files = float(footprint.unique_bytes(GO_ARM64_DIR / name for name in footprint.GO_BINARIES))
    tarball = next(paths.DIST_DIR.glob(f"{TARBALL}-v*.tgz"))
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    rows = [
        Row("arm64 size: one plugin file (the whole suite)", "MiB", float((ours_dir / "bridge").stat().st_size),
            go_files, note="Go: bridge + host-local + portmap (Debian, arm64)"),
        Row(f"arm64 size: {tarball.name}", "MiB", float(tarball.stat().st_size),
            float(footprint.go_tarball_bytes(GO_ARM64_DIR)), note="Go: the same 3 binaries, tarred alike"),
        Row("arm64 first call (host-local by hand, median of 5), emulated", "ms",
            footprint.first_call_seconds(ours_dir / "host-local", env),
            footprint.first_call_seconds(GO_ARM64_DIR / "host-local", env), note="ours: unpacks into an empty cache"),
    ]
    sides = [cases.Side("ours", ours_dir, lab.netns("host"), lab.tmp / "arm64-ours", cnitool,
                        {"CNI_SUITE_CACHE_DIR": str(cache)}),
             cases.Side("Go", GO_ARM64_DIR, lab.netns("host"), lab.tmp / "arm64-go", cnitool)]
    cases.log("arm64 (emulated) pair bridge + host-local")
    rows += cases.cycle_rows(lab, sides, "arm64 emulated: pair bridge+host-local", confs.PAIR_NET,
                             confs.pair_conflist, None, n, ())
    return rows
