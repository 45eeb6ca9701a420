"""Upgrade under load: ADD/DEL calls through libcni while the installer switches builds under them.

Shared by tests/binary/test_install_upgrade.py (which asserts the properties) and bench/bench_install_upgrade.py
(which prints the figures). Three things run at once:
- workers: one per container namespace, ADD then DEL through cnitool against the installed bin directory;
- the installer: `installs` runs alternating between two builds, each started once a further slice of the calls
  has completed, so every install overlaps running calls;
- a sampler: opens each plugin file the way a runtime's exec would find it and checks that it is a COMPLETE
  build (its trailer names a known build and its size is that build's), and counts the build folders in the
  launcher's cache.
"""

from __future__ import annotations

import os
import re
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from tests.helpers.builds import build_hash
from tests.helpers.cnitool import Cnitool
from tests.helpers.netns import Netns
from tests.helpers.paths import OUR_PLUGINS as PLUGIN_TYPES

BUILD_DIR = re.compile(r"^[0-9a-f]{64}$")


@dataclass
class UpgradeFigures:
    calls: int = 0
    failed: list[str] = field(default_factory=list)
    text_file_busy: int = 0
    install_seconds: list[float] = field(default_factory=list)
    call_seconds: list[float] = field(default_factory=list)
    partial_files: list[str] = field(default_factory=list)
    file_samples: int = 0
    max_builds_in_cache: int = 0
    builds_seen_running: set[str] = field(default_factory=set)
    wall_seconds: float = 0.0

    def summary(self) -> dict[str, object]:
        calls = sorted(self.call_seconds)
        installs = self.install_seconds or [0.0]
        return {
            "calls": self.calls, "failed calls": len(self.failed), "text file busy": self.text_file_busy,
            "installs": len(self.install_seconds),
            "install median ms": round(statistics.median(installs) * 1000, 1),
            "install max ms": round(max(installs) * 1000, 1),
            "call median ms": round(statistics.median(calls) * 1000, 1),
            "call p95 ms": round(calls[int(len(calls) * 0.95) - 1] * 1000, 1),
            "partial files seen": len(self.partial_files), "file samples": self.file_samples,
            "max builds in cache": self.max_builds_in_cache, "wall s": round(self.wall_seconds, 1),
        }


def upgrade_under_load(tool: Cnitool, net: str, containers: list[Netns], install: Callable[[Path], None],
                       builds: tuple[Path, Path], bin_dir: Path, cache_dir: Path, *, calls: int = 200,
                       installs: int = 20) -> UpgradeFigures:
    """Run the scenario; `builds[0]` must be installed already. Returns what was seen."""
    figures = UpgradeFigures()
    known = {build_hash(b): b.stat().st_size for b in builds}
    pairs = calls // 2
    done = threading.Semaphore(0)  # released once per completed call
    completed = [0]
    lock = threading.Lock()
    stop = threading.Event()

    def call(verb: str, container: Netns) -> None:
        start = time.monotonic()
        res = tool.add(net, container) if verb == "add" else tool.delete(net, container)
        elapsed = time.monotonic() - start
        with lock:
            figures.calls += 1
            figures.call_seconds.append(elapsed)
            completed[0] += 1
            if res.rc != 0:
                figures.failed.append(f"{verb} in {container.name}: rc={res.rc} {res.out} {res.stderr[-300:]}")
            if "text file busy" in (res.stderr + str(res.out)).lower():
                figures.text_file_busy += 1
        done.release()

    def worker(container: Netns, count: int) -> None:
        for _ in range(count):
            call("add", container)
            call("del", container)

    def installer() -> None:
        for i in range(installs):
            target = (i + 1) * calls // (installs + 1)
            while True:  # start install i once that many calls have completed
                with lock:
                    if completed[0] >= target:
                        break
                done.acquire(timeout=1)
            start = time.monotonic()
            install(builds[(i + 1) % 2])
            figures.install_seconds.append(time.monotonic() - start)

    def sampler() -> None:
        while not stop.is_set():
            for name in PLUGIN_TYPES:
                _sample_file(bin_dir / name, known, figures)
            folders = [e for e in os.listdir(cache_dir) if BUILD_DIR.match(e)] if cache_dir.is_dir() else []
            figures.max_builds_in_cache = max(figures.max_builds_in_cache, len(folders))
            figures.builds_seen_running.update(folders)
            stop.wait(0.02)

    shares = [pairs // len(containers) + (1 if i < pairs % len(containers) else 0) for i in range(len(containers))]
    begin = time.monotonic()
    sample_thread = threading.Thread(target=sampler, daemon=True)
    sample_thread.start()
    with ThreadPoolExecutor(max_workers=len(containers) + 1) as pool:
        futures = [pool.submit(worker, c, n) for c, n in zip(containers, shares, strict=True)]
        futures.append(pool.submit(installer))
        for f in futures:
            f.result()
    figures.wall_seconds = time.monotonic() - begin
    stop.set()
    sample_thread.join()
    return figures


def _sample_file(path: Path, known: dict[str, int], figures: UpgradeFigures) -> None:
    """Open `path` as exec would find it; a file that is not a complete known build is a partial file."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        figures.partial_files.append(f"{path.name}: missing")
        return
    try:
        size = os.fstat(fd).st_size
        found = build_hash(Path(f"/proc/self/fd/{fd}"))
    finally:
        os.close(fd)
    figures.file_samples += 1
    if known.get(found) != size:
        figures.partial_files.append(f"{path.name}: build {found[:12] or '?'} with {size} bytes")
