"""The architectures the suite is released for: upstream's names beside Debian's, the GNU triplet, qemu's.

One table read by everything that deals with another architecture: ``build.sh`` (through ``python -m
cni_common.bundle.arches NAME``), the cross build (:mod:`cni_common.bundle.cross`, :mod:`cni_common.bundle.sysroot`),
``.ci/setup`` (qemu registrations, upstream's packages), the portability tests and bench/.

The release names are upstream's (Go's ``GOARCH``: ``cni-plugins-linux-arm-v1.6.0.tgz``, ``mips64le``,
``ppc64le``), so a node's install script that fetches upstream's tarball by ``uname -m`` mapping fetches ours the
same way. Debian names the same ports ``armhf``, ``mips64el``, ``ppc64el``.

riscv64 is upstream's seventh: Debian 12 has no riscv64 port (it starts with Debian 13), so there are no
``:riscv64`` packages of Debian 12's Python to cross-build from (docs/packaging.md says what it would take).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Arch:
    name: str  #: upstream's (Go's) name: the release's and dist/linux-<name>/
    debian: str  #: Debian's architecture (``dpkg --add-architecture``, ``package:debian``)
    triplet: str  #: GNU multiarch triplet: the cross compiler's prefix, ``/usr/lib/<triplet>``, module suffixes
    qemu: str  #: qemu-user's name (``qemu-<qemu>-static``, ``/proc/sys/fs/binfmt_misc/qemu-<qemu>``)
    elf_machine: int  #: ELF ``e_machine``
    big_endian: bool = False


ARCHES = {
    arch.name: arch
    for arch in (
        Arch("amd64", "amd64", "x86_64-linux-gnu", "x86_64", 62),
        Arch("arm64", "arm64", "aarch64-linux-gnu", "aarch64", 183),
        Arch("arm", "armhf", "arm-linux-gnueabihf", "arm", 40),
        Arch("mips64le", "mips64el", "mips64el-linux-gnuabi64", "mips64el", 8),
        Arch("ppc64le", "ppc64el", "powerpc64le-linux-gnu", "ppc64le", 21),
        Arch("s390x", "s390x", "s390x-linux-gnu", "s390x", 22, big_endian=True),
    )
}


def by_debian(debian: str) -> Arch:
    """The architecture Debian calls ``debian`` (``dpkg --print-architecture``)."""
    for arch in ARCHES.values():
        if arch.debian == debian:
            return arch
    raise KeyError(debian)


def main(argv: list[str]) -> int:
    """``arches``: every name; ``arches NAME``: ``debian triplet qemu`` of one (exit 2 when unknown);
    ``arches --native DEBIAN``: upstream's name of Debian's architecture."""
    if len(argv) == 1:
        print(*ARCHES)
        return 0
    if len(argv) == 3 and argv[1] == "--native":
        print(by_debian(argv[2]).name)
        return 0
    arch = ARCHES.get(argv[1]) if len(argv) == 2 else None
    if arch is None:
        sys.stderr.write(f"unknown architecture {' '.join(argv[1:])!r} (known: {' '.join(ARCHES)})\n")
        return 2
    print(arch.debian, arch.triplet, arch.qemu)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
