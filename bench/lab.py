"""The bench's throwaway world: namespaces named `cnt-b<run>-…`, a temp dir, and our plugins installed into it.

Nothing here touches the root namespace: the "host" of each side is a namespace of its own (bridge, iptables
and nft rules live there) and every pod is another one. Everything is removed on exit, on an exception, on
Ctrl-C and on SIGTERM.
"""

from __future__ import annotations

import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Optional

from tests.helpers import paths
from tests.helpers.netns import TEST_PREFIX, Netns, NetnsPool, netns_unavailable_reason


@dataclass
class PrefixedNetnsPool(NetnsPool):
    """A NetnsPool whose names carry `tag` instead of the test suite's "h" (`cnt-<tag><run>-<role><n>`)."""

    tag: str = "b"

    @property
    def prefix(self) -> str:
        return f"{TEST_PREFIX}{self.tag}{self.run_id}-"


def _raise_on_sigterm(signum: int, frame: Optional[FrameType]) -> None:
    raise SystemExit(128 + signum)


class Lab:
    """Context manager owning one run's namespaces and temp dir (`self.tmp`)."""

    def __init__(self, tag: str = "b") -> None:
        self.pool = PrefixedNetnsPool(tag=tag)
        self.tmp = Path()
        self._tmpdir: Optional[tempfile.TemporaryDirectory[str]] = None
        self._old_sigterm: object = None

    def __enter__(self) -> "Lab":
        reason = netns_unavailable_reason()
        if reason:
            raise SystemExit(f"cannot run: {reason}")
        self._tmpdir = tempfile.TemporaryDirectory(prefix=f"{TEST_PREFIX}{self.pool.tag}-")
        self.tmp = Path(self._tmpdir.name)
        self._old_sigterm = signal.signal(signal.SIGTERM, _raise_on_sigterm)
        return self

    def __exit__(self, exc_type: Optional[type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        self.pool.cleanup()
        self.pool.cleanup_leftovers()
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
        signal.signal(signal.SIGTERM, self._old_sigterm)  # type: ignore[arg-type]

    def netns(self, role: str, *, lo_up: bool = True) -> Netns:
        """A new namespace `cnt-<tag><run>-<role><n>`, removed with the lab."""
        return self.pool.create(role, lo_up=lo_up)

    def remove(self, ns: Netns) -> None:
        """Remove one namespace now (pods between phases)."""
        self.pool.remove(ns)


def install_ours(dest: Path, *, wait: float = 90) -> Path:
    """`./build.sh install dest`: our plugins as a runtime would have them (one inode, four names).

    Other engineers may be rebuilding dist/ at this moment (build.sh starts with `rm -rf dist`); waiting for
    a complete dist/ keeps this from starting a build of its own.
    """
    deadline = time.monotonic() + wait
    while paths.missing_plugins(paths.DIST_DIR):
        if time.monotonic() > deadline:
            raise SystemExit(f"plugins missing in {paths.DIST_DIR}: run ./build.sh first")
        time.sleep(1)
    subprocess.run([str(paths.REPO / "build.sh"), "install", str(dest)], check=True, capture_output=True,
                   text=True, timeout=300)
    return dest


def ensure_cnitool() -> Path:
    """tests/bin/cnitool (built from Debian's libcni on first use)."""
    return paths.build_cnitool()
