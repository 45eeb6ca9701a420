"""Put the C library into the bundle: the dynamic loader and every shared library the program needs.

Usage: ``python -m cni_common.bundle.clibs BUNDLE_DIR LIBDIR...``. Prints the loader's file name (the launcher is
compiled with it). Why: PyInstaller collects the libraries of the extension modules (libssl, libffi...) but
leaves out the C library, expecting the node's. Those libraries and the runner were linked against the build
machine's glibc (Debian 12: 2.36), so on an older node (Debian 11: 2.31) or one without glibc (musl) they
cannot start. With the loader (the program's ``PT_INTERP``), ``libc.so.6``, ``libm.so.6``... in ``_internal``,
the launcher starts the program through that loader and the node's C library never takes part
(docs/packaging.md).

The closure is found from the ELF files themselves (``readelf``, binutils: it reads any architecture's ELF, so
a cross build uses the same code): the ``NEEDED`` entries of the program and of every shared object in the
bundle, recursively, resolved in ``LIBDIR...`` (the target architecture's library folders, e.g.
``/lib/x86_64-linux-gnu``). Libraries already in the bundle are kept. The copies are the distribution's files
byte for byte (not stripped again): a user can match them against the distribution's package.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

PROGRAM = "cni-suite"
INTERNAL = "_internal"

# Loaded by the C library itself with dlopen, so no NEEDED entry names it: libgcc_s unwinds a thread that
# pthread_exit()s or is cancelled (Python's threads can end that way).
DLOPENED = ("libgcc_s.so.1",)

_NEEDED = re.compile(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]")
_INTERP = re.compile(r"\[Requesting program interpreter: ([^\]]+)\]")


def _readelf(flag: str, path: Path) -> str:
    return subprocess.run(["readelf", flag, "-W", str(path)], check=True, capture_output=True, text=True).stdout


def needed(path: Path) -> list[str]:
    """The ``DT_NEEDED`` names of one ELF file."""
    return _NEEDED.findall(_readelf("-d", path))


def interpreter(path: Path) -> str:
    """The program's dynamic loader, as linked (``/lib64/ld-linux-x86-64.so.2``)."""
    found = _INTERP.findall(_readelf("-l", path))
    if not found:
        raise SystemExit(f"clibs: {path} has no program interpreter (is it linked dynamically?)")
    return found[0]


def is_elf(path: Path) -> bool:
    """Machine code (an ELF file) rather than data: what the native and the cross build look for."""
    with open(path, "rb") as f:
        return f.read(4) == b"\x7fELF"


def _resolve(name: str, libdirs: list[Path]) -> Path:
    for libdir in libdirs:
        candidate = libdir / name
        if candidate.exists():
            return candidate.resolve()
    raise SystemExit(f"clibs: {name} not found in {', '.join(map(str, libdirs))}")


def collect(bundle: Path, libdirs: list[Path]) -> str:
    """Copy the loader and the missing libraries into ``bundle/_internal``; returns the loader's file name."""
    internal = bundle / INTERNAL
    program = bundle / PROGRAM
    loader = os.path.basename(interpreter(program))
    present = {p.name for p in internal.iterdir()}
    todo = [program] + sorted(p for p in internal.rglob("*.so*") if p.is_file() and is_elf(p))
    wanted = [loader, *DLOPENED]
    while todo or wanted:
        if todo:
            wanted.extend(needed(todo.pop()))
            continue
        name = wanted.pop()
        if name in present:
            continue
        target = internal / name
        shutil.copyfile(_resolve(name, libdirs), target)
        target.chmod(0o755)
        present.add(name)
        todo.append(target)
    return loader


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.stderr.write("usage: python -m cni_common.bundle.clibs BUNDLE_DIR LIBDIR...\n")
        sys.exit(2)
    print(collect(Path(sys.argv[1]), [Path(d) for d in sys.argv[2:]]))
