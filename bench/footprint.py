"""Disk footprint: our four dist files, one `build.sh install` (one inode under four names), the release
tarball, the cache folder the launcher unpacks into on first use, against the three Go binaries a bridge+portmap
node needs; and the time of a build's first call (the unpack).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterable

from bench.table import Goal, Row
from tests.helpers.paths import OUR_PLUGINS

FOOTPRINT_GOALS = (Goal("wall_ratio", 4.0),)
GO_BINARIES = ("bridge", "host-local", "portmap")
def unique_bytes(files: Iterable[Path]) -> int:
    """Apparent size of `files`, each inode counted once (hard links share one)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for path in files:
        info = path.stat()
        if (info.st_dev, info.st_ino) not in seen:
            seen.add((info.st_dev, info.st_ino))
            total += info.st_size
    return total


def tree_bytes(root: Path) -> int:
    """Apparent size of every regular file under `root` (0 when it doesn't exist)."""
    total = 0
    for base, _, names in os.walk(root):
        for name in names:
            path = Path(base) / name
            if path.is_file() and not path.is_symlink():
                total += path.stat().st_size
    return total


def bundle_digest(executable: Path) -> str:
    """The payload SHA-256 in the trailer of one of our single files (names its cache folder)."""
    with executable.open("rb") as fh:
        fh.seek(-64, os.SEEK_END)
        return fh.read(64).decode("ascii", errors="replace")


def dist_sizes(dist: Path) -> dict[str, int]:
    """Sizes of the plugin files and release tarballs in dist/, taken right after installing them (dist/ may
    be rebuilt meanwhile)."""
    return {p.name: p.stat().st_size for p in sorted(dist.iterdir())
            if p.is_file() and (p.name in OUR_PLUGINS or p.name.endswith(".tgz"))}


def go_tarball_bytes(go_dir: Path) -> int:
    """Go's three binaries in a tarball made as ours is (cni_common.bundle.release): the same tar, the same
    gzip level, so the two sizes compare the files, not the packers."""
    from cni_common.bundle.release import make_tarball

    return len(make_tarball({name: ((go_dir / name).read_bytes(), 0o755) for name in GO_BINARIES}, 0))


def first_call_seconds(argv0: Path, env: dict[str, str], runs: int = 5) -> float:
    """Median time of a plugin run by hand (no CNI_COMMAND) with an empty cache: for ours, the unpack."""
    times = []
    for _ in range(runs):
        cache = Path(tempfile.mkdtemp(prefix="cnt-bench-cache-", dir="/var/tmp"))
        try:
            start = time.perf_counter()
            subprocess.run([str(argv0)], env={**env, "CNI_SUITE_CACHE_DIR": str(cache / "c")}, capture_output=True,
                           check=True, timeout=120)
            times.append(time.perf_counter() - start)
        finally:
            shutil.rmtree(cache)
    return statistics.median(times)


def footprint_rows(dist: dict[str, int], installed: Path, go_dir: Path, cache_root: Path) -> list[Row]:
    """Rows: dist files and tarballs (from `dist_sizes`), installed dir, unpacked cache (under `cache_root`),
    sizes in bytes; the first call of a build, in seconds."""
    go = float(unique_bytes(go_dir / name for name in GO_BINARIES))
    # The build machine's tarball against the build machine's Go files; bench/cross.py compares the other architectures'.
    native = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True).stdout.strip()
    tarballs = {name: size for name, size in dist.items()
                if name.startswith(f"cni-plugins-linux-{native}-") and name.endswith(".tgz")}
    dist = {name: size for name, size in dist.items() if name in OUR_PLUGINS}
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    installed_files = sorted(p for p in installed.iterdir() if p.is_file())
    cache = cache_root / bundle_digest(installed_files[0])
    return [
        Row(f"size: dist/ ({len(dist)} files)", "MiB", float(sum(dist.values())), go,
            note="Go: bridge + host-local + portmap"),
        Row(f"size: build.sh install ({len(installed_files)} names, 1 inode)", "MiB",
            float(unique_bytes(installed_files)), go, goals=FOOTPRINT_GOALS, note="what /opt/cni/bin holds"),
        *(Row(f"size: {name}", "MiB", float(size), float(go_tarball_bytes(go_dir)),
              note="Go: the same 3 binaries, tarred alike") for name, size in tarballs.items()),
        Row("size: unpacked cache (made on first call)", "MiB", float(tree_bytes(cache)), None,
            note="/var/cache/cni-suite/<sha256>/"),
        Row("first call of a build (host-local by hand, median of 5)", "ms",
            first_call_seconds(installed / "host-local", env), first_call_seconds(go_dir / "host-local", env),
            note="ours: unpacks into an empty cache"),
    ]
