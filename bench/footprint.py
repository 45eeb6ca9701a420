"""Disk footprint: our four dist files, one `build.sh install` (one inode under four names), the cache folder
the launcher unpacks into on first use, against the three Go binaries a bridge+portmap node needs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from bench.table import Goal, Row

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
    """Sizes of the files in dist/, taken right after installing them (dist/ may be rebuilt meanwhile)."""
    return {p.name: p.stat().st_size for p in sorted(dist.iterdir()) if p.is_file()}


def footprint_rows(dist: dict[str, int], installed: Path, go_dir: Path, cache_root: Path) -> list[Row]:
    """Rows: dist files (from `dist_sizes`), installed dir, unpacked cache (under `cache_root`); bytes."""
    go = float(unique_bytes(go_dir / name for name in GO_BINARIES))
    installed_files = sorted(p for p in installed.iterdir() if p.is_file())
    cache = cache_root / bundle_digest(installed_files[0])
    return [
        Row(f"size: dist/ ({len(dist)} files)", "MiB", float(sum(dist.values())), go,
            note="Go: bridge + host-local + portmap"),
        Row(f"size: build.sh install ({len(installed_files)} names, 1 inode)", "MiB",
            float(unique_bytes(installed_files)), go, goals=FOOTPRINT_GOALS, note="what /opt/cni/bin holds"),
        Row("size: unpacked cache (made on first call)", "MiB", float(tree_bytes(cache)), None,
            note="/var/cache/cni-suite/<sha256>/"),
    ]
