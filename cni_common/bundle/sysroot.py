"""Another architecture's build inputs, unpacked from Debian's packages into a folder: the cross build's sysroot.

Usage: ``python3 -m cni_common.bundle.sysroot DIR ARCH...`` (upstream's names, :mod:`cni_common.bundle.arches`);
makes ``DIR/<arch>/`` for each, keeps one already complete. Run by ``.ci/setup``; ``build.sh`` reads them.
``--packages`` prints the package names only.

Why not install the ``:arch`` packages beside the build machine's (multiarch), as the first cross build did:
``Multi-Arch: same`` packages (libc6, libpython3.11-stdlib...) must have ONE version for every architecture
installed, and Debian 12's security archive (LTS since 2026) no longer builds mips64el and s390x, so their
libpython3.11-stdlib stays at the point release while amd64's moves on: apt refuses to install both. Unpacked
here (``apt-get download`` + ``dpkg-deb -x``) each architecture takes the newest version Debian has for it and the
build machine's own packages are never touched. The cross compiler (``gcc-<triplet>``, installed by .ci/setup)
brings its own ``libc.a`` and C headers; the folder gives the rest:

- what the bundle carries: the C library (``libc6``: loader, ``libc.so.6``, ``libm.so.6``), ``libgcc_s``, the
  extension modules (``libpython3.X-stdlib``: ``lib-dynload``) and the libraries they need;
- what the runner and launcher are linked with: ``libpython3.X.a`` and its headers (``libpython3.X-dev``),
  ``libz.a`` (``zlib1g-dev``), ``libexpat.so`` (``libexpat1-dev``).

``DIR/<arch>/.packages`` lists ``name version`` of what was unpacked: the build's cache key and the versions the
release README names (docs/packaging.md).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from cni_common.bundle.arches import ARCHES, Arch

PACKAGES_FILE = ".packages"


def packages(python: str = "%d.%d" % sys.version_info[:2]) -> list[str]:
    """The Debian packages (without ``:arch``) of one architecture's sysroot."""
    return ["libc6", "libgcc-s1", "zlib1g", "zlib1g-dev", "libexpat1", "libexpat1-dev", "libffi8", "liblzma5",
            "libbz2-1.0", "libssl3", f"libpython{python}-minimal", f"libpython{python}-stdlib",
            f"libpython{python}-dev",
            "musl-dev"]  # the launcher's C library (build.sh: build_launcher)


def relink_absolute_symlinks(root: Path) -> None:
    """A package's absolute symlink (``/usr/lib/x/libfoo.so -> /lib/x/libfoo.so.1``) points into the build
    machine once unpacked here; make it relative, so it points into ``root``."""
    for path in root.rglob("*"):
        if path.is_symlink() and os.readlink(path).startswith("/"):
            target = root / os.readlink(path).lstrip("/")
            path.unlink()
            path.symlink_to(os.path.relpath(target, path.parent))


def _deb_field(deb: Path, field: str) -> str:
    return subprocess.run(["dpkg-deb", "-f", str(deb), field], check=True, capture_output=True,
                          text=True).stdout.strip()


def is_complete(sysroot: Path) -> bool:
    """Made, and with today's package list (``.packages`` is written last)."""
    if not (sysroot / PACKAGES_FILE).exists():
        return False
    have = [line.split()[0] for line in (sysroot / PACKAGES_FILE).read_text().splitlines()]
    return sorted(have) == sorted(packages())


def unpack(debs: list[Path], dest: Path) -> None:
    """``debs`` into ``dest`` (made anew in a temporary folder beside it, renamed into place when complete)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=f".{dest.name}.") as tmp:
        root = Path(tmp) / "root"
        lines = []
        for deb in sorted(debs):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
            lines.append(f"{_deb_field(deb, 'Package')} {_deb_field(deb, 'Version')}\n")
        relink_absolute_symlinks(root)
        (root / PACKAGES_FILE).write_text("".join(sorted(lines)))  # written last: the folder is complete
        shutil.rmtree(dest, ignore_errors=True)
        root.rename(dest)


def make(base: Path, arches: list[Arch]) -> None:
    """``base/<arch>/`` for each of ``arches`` that is not complete. One ``apt-get download`` for all of them:
    apt reads its package lists (every architecture's, ~5 s) once, not once per architecture."""
    todo = [arch for arch in arches if not is_complete(base / arch.name)]
    if not todo:
        return
    with tempfile.TemporaryDirectory() as debs:
        download = Path(debs)
        download.chmod(0o755)  # apt downloads as its _apt user
        subprocess.run(["apt-get", "download", "-q",
                        *(f"{name}:{arch.debian}" for arch in todo for name in packages())],
                       cwd=download, check=True, stdout=subprocess.DEVNULL)
        for arch in todo:  # Debian's file names end in _<architecture>.deb
            unpack(list(download.glob(f"*_{arch.debian}.deb")), base / arch.name)


def main(argv: list[str]) -> int:
    if argv[1:] == ["--packages"]:  # build.sh: the build machine's versions of the same packages
        print(*packages())
        return 0
    unknown = [name for name in argv[2:] if name not in ARCHES]
    if len(argv) < 3 or unknown:
        sys.stderr.write(f"usage: python3 -m cni_common.bundle.sysroot DIR ARCH... (ARCH: {' '.join(ARCHES)})\n")
        return 2
    make(Path(argv[1]), [ARCHES[name] for name in argv[2:]])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
