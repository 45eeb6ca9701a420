"""Where the binaries under test live, and how to build the libcni driver.

Our plugins come from `dist/` (made by the repo's build.sh); the Go reference
plugins from Debian's containernetworking-plugins in /usr/lib/cni.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from plugins.multicall import PLUGINS

REPO = Path(__file__).resolve().parents[2]
DIST_DIR = REPO / "dist"
GO_PLUGIN_DIR = Path("/usr/lib/cni")
CNITOOL_BIN = REPO / "tests" / "bin" / "cnitool"
CNITOOL_BUILD = REPO / "tests" / "cnitool" / "build.sh"
#: The plugin binaries this repo ships (CNI `type` == binary name): the suite's table of types.
OUR_PLUGINS = tuple(PLUGINS)


def in_ci() -> bool:
    """CI=true turns every "skip because the machine can't" into a failure."""
    return os.environ.get("CI", "").lower() == "true"


def missing_plugins(directory: Path, names: tuple[str, ...] = OUR_PLUGINS) -> list[str]:
    """Names from `names` with no executable file in `directory`."""
    return [n for n in names if not os.access(directory / n, os.X_OK)]


def build_cnitool(force: bool = False) -> Path:
    """Build tests/bin/cnitool from tests/cnitool (offline, ~3 s) unless it exists."""
    if force or not os.access(CNITOOL_BIN, os.X_OK):
        subprocess.run([str(CNITOOL_BUILD)], check=True, capture_output=True, text=True, timeout=300)
    return CNITOOL_BIN


def make_bin_dir(dest: Path, binaries: dict[str, Path]) -> Path:
    """Fill `dest` with copies of `binaries` (`name` -> source file).

    containerd's CRI `bin_dir` is a single folder, yet a test may want our
    bridge next to Go's `loopback`. Not symlinks: ctr_run.py bind-mounts the
    folder over /usr/lib/cni, which would turn links into that folder into loops.
    Not hard links: a later write into `dest` would then change the system binary.
    """
    dest.mkdir(parents=True, exist_ok=True)
    for name, source in binaries.items():
        target = dest / name
        target.unlink(missing_ok=True)
        shutil.copy2(source, target)
    return dest
