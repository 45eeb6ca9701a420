"""Turn the build machine's (amd64) bundle folder into another architecture's, from Debian's multiarch packages.

Usage: ``python -m cni_common.bundle.cross BUNDLE_DIR ARCH SYSROOT`` (in place; ARCH is upstream's name, e.g.
s390x; SYSROOT holds that architecture's Debian packages, unpacked by :mod:`cni_common.bundle.sysroot`).

Why this works: the bundle is the same Python (Debian's 3.11, the same version for every architecture) running
the same code, so everything PyInstaller collected is architecture-independent (the ``.pyc`` files) except the
machine code: the extension modules in ``python3.11/lib-dynload`` and the shared libraries they need (libssl,
libffi, ...). Each of those has an exact counterpart in the other architecture's Debian packages, unpacked into
the sysroot: ``_ssl.cpython-311-x86_64-linux-gnu.so`` is ``SYSROOT/usr/lib/python3.11/lib-dynload/
_ssl.cpython-311-s390x-linux-gnu.so``, ``libssl.so.3`` is in ``SYSROOT/usr/lib/s390x-linux-gnu``.
So the cross build swaps files instead of running PyInstaller's analysis for a machine it cannot run on.

Every machine-code file is swapped, or the build stops (a forgotten amd64 library in an arm64 bundle would only
fail on an arm64 node). The program ``cni-suite`` at the top is not touched: build.sh compiles it (runner.c) for
the target; then :mod:`cni_common.bundle.clibs` adds the target's C library and whatever else the swapped files
need (from their own NEEDED entries), exactly as for the build machine's architecture.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from cni_common.bundle.arches import ARCHES
from cni_common.bundle.clibs import PROGRAM, is_elf


def counterpart(rel: str, source: str, target: str, sysroot: Path) -> tuple[str, Path]:
    """The target architecture's file for the bundle file ``rel``: (its name in the bundle, where it is)."""
    name = os.path.basename(rel)
    folder = os.path.dirname(rel)
    src, dst = ARCHES[source].triplet, ARCHES[target].triplet
    if os.path.basename(folder) == "lib-dynload":
        new = name.replace(f"-{src}.so", f"-{dst}.so")
        # Debian installs every architecture's extension modules into the one folder, told apart by the suffix.
        return os.path.join(folder, new), sysroot / str(sysconfig.get_config_var("DESTSHARED")).lstrip("/") / new
    for lib_dir in (sysroot / "lib" / dst, sysroot / "usr" / "lib" / dst):
        if (lib_dir / name).exists():
            return rel, lib_dir / name
    return rel, sysroot / "usr" / "lib" / dst / name


def _resolve_inside(path: Path, sysroot: Path) -> Path:
    """``path`` with its symlinks followed, which :mod:`cni_common.bundle.sysroot` made relative: they stay in
    the sysroot (a check: a library of the build machine must never slip into another architecture's bundle)."""
    resolved = path.resolve()
    if not resolved.is_relative_to(sysroot.resolve()):
        raise SystemExit(f"cross: {path} leads out of {sysroot} to {resolved}")
    return resolved


def convert(bundle: Path, source: str, target: str, strip: str, sysroot: Path) -> list[str]:
    """Swap every machine-code file of ``bundle`` for the target's; returns the problems (empty: success)."""
    problems: list[str] = []
    swapped: list[Path] = []
    for path in sorted(p for p in bundle.rglob("*") if p.is_file() and not p.is_symlink()):
        rel = path.relative_to(bundle).as_posix()
        if rel == PROGRAM or not is_elf(path):
            continue
        new_rel, origin = counterpart(rel, source, target, sysroot)
        if not origin.is_file():
            problems.append(f"{rel}: no {target} counterpart at {origin} (add its Debian package to "
                            "cni_common/bundle/sysroot.py)")
            continue
        mode = path.stat().st_mode & 0o7777
        path.unlink()
        new_path = bundle / new_rel
        shutil.copyfile(_resolve_inside(origin, sysroot), new_path)
        new_path.chmod(mode)
        swapped.append(new_path)
    if not problems and swapped:  # as PyInstaller strips the build machine's (cni-suite.spec: strip=True)
        subprocess.run([strip, *map(str, swapped)], check=True)
    return problems


def main(argv: list[str]) -> int:
    if len(argv) != 4 or argv[2] not in ARCHES:
        sys.stderr.write(f"usage: python -m cni_common.bundle.cross BUNDLE_DIR {{{','.join(ARCHES)}}} SYSROOT\n")
        return 2
    target = argv[2]
    source = next(a.name for a in ARCHES.values() if a.triplet == sysconfig.get_config_var("MULTIARCH"))
    problems = convert(Path(argv[1]), source, target, f"{ARCHES[target].triplet}-strip", Path(argv[3]))
    for problem in problems:
        sys.stderr.write(f"cross: {problem}\n")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
