"""The release artifacts of one architecture, named and laid out as upstream's: a tarball and its checksums.

Usage: ``python -m cni_common.bundle.release OUT ARCH BUILD_INFO FILE TYPE...``. Writes
``OUT/cni-plugins-linux-ARCH-vVERSION.tgz`` (``FILE``, the one program, under every plugin name ``TYPE...``,
``LICENSE`` from ``docs/LICENSE`` and a ``README`` written here from ``BUILD_INFO``), and beside it ``.sha256``
and ``.sha512`` files in upstream's format (``<hex>  <name>``, as ``sha256sum`` writes and ``sha256sum -c``
reads). The names come from build.sh, which reads them from the suite's one table (plugins/multicall.py).

One file, many names: the first plugin name (in sorted order) is a regular entry holding the program, every
other name is a tar hard link to it, so the tarball is about one file's size whatever the number of plugins,
and ``tar -x`` recreates the links (one inode on the node, as ``build.sh install`` makes it). The price: a
user extracting only ``./host-local`` must name the entry holding the data too (the README says so).

Byte-identical for the same inputs: entries sorted, owner root:root (numeric, no names), modes 0755/0644, every
mtime ``SOURCE_DATE_EPOCH``, and gzip written without a file name or time stamp.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import sys
import tarfile
from pathlib import Path

from cni_common import __version__
from cni_common.bundle import buildinfo

REPO = Path(__file__).resolve().parents[2]
LICENSE = REPO / "docs" / "LICENSE"


def tarball_name(arch: str, version: str = __version__) -> str:
    return f"cni-plugins-linux-{arch}-v{version}.tgz"


def readme(arch: str, info: dict[str, str], plugins: list[str]) -> str:
    """What a user of the tarball needs first: what is inside, what it needs, what C library it carries."""
    python = info.get("python", "?")
    python_package = f"libpython{'.'.join(python.split('.')[:2])}-stdlib"
    return f"""CNI plugins (Python suite) v{__version__} for linux/{arch}

Plugins: {", ".join(plugins)}. Drop-in compatible with the upstream containernetworking plugins of the same
names: check and install with

    sha256sum -c {tarball_name(arch)}.sha256
    tar -C /opt/cni/bin -xzf {tarball_name(arch)}

The names are hard links to one file (./{plugins[0]} holds it): to extract some plugins only, name
./{plugins[0]} too, e.g. `tar -xzf {tarball_name(arch)} ./{plugins[0]} ./host-local`.
Each file is the whole suite (it picks the plugin from the name it runs as) and needs nothing from the node
but the Linux kernel and, like upstream's, the node's iptables/nft programs. On its first run it unpacks
itself once into /var/cache/cni-suite/<hash>/ (root only).

Bundled (the files carry their own C library, used instead of the node's; a security fix in any of these
needs a new build of the suite):
    GNU C Library (glibc)   Debian package libc6 {info.get("glibc", "?")}
    musl (the launcher)     Debian package musl-dev {info.get("musl", "?")}
    Python                  Debian package {python_package} {python}
    zlib                    Debian package zlib1g {info.get("zlib", "?")}
    OpenSSL                 Debian package libssl3 {info.get("openssl", "?")}

A file tells the same when run with no CNI_COMMAND: `./bridge` prints its version and what it carries.
License: Apache-2.0 (LICENSE). Packaging: docs/packaging.md in the source.
"""


def tar_entry(tar: tarfile.TarFile, name: str, data: bytes, mode: int, mtime: int) -> None:
    """One file whose header holds nothing of the build machine: owner root, no user names, the given time."""
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, mtime
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


def hard_link_entry(tar: tarfile.TarFile, name: str, target: str, mode: int, mtime: int) -> None:
    """``name`` as a hard link to the earlier entry ``target`` (no data of its own), a header like tar_entry's."""
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode, info.mtime = tarfile.LNKTYPE, target, mode, mtime
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info)


def make_tarball(members: dict[str, tuple[bytes, int]], mtime: int, links: dict[str, str] | None = None) -> bytes:
    """``members``: name -> (data, mode); ``links``: name -> the member it is a hard link to (same mode). Returns
    the gzip-compressed tar, the same bytes for the same input. Every link sorts after its target, so ``tar -x``
    has the file before it links to it."""
    links = links or {}
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        root = tarfile.TarInfo("./")
        root.type, root.mode, root.mtime = tarfile.DIRTYPE, 0o755, mtime
        root.uname = root.gname = ""
        tar.addfile(root)
        for name in sorted({*members, *links}):
            if name in links:
                target = links[name]
                assert target in members and target < name, f"{name}: link to {target}, not an earlier file"
                hard_link_entry(tar, f"./{name}", f"./{target}", members[target][1], mtime)
                continue
            data, mode = members[name]
            tar_entry(tar, f"./{name}", data, mode, mtime)
    return gzip.compress(raw.getvalue(), compresslevel=9, mtime=0)


def write_release(out: Path, arch: str, build_info: Path, program: Path, plugin_types: list[str]) -> Path:
    """The tarball (``program`` under every name of ``plugin_types``) and its checksum files, into ``out``."""
    mtime = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    plugins = sorted(plugin_types)
    members = {plugins[0]: (program.read_bytes(), 0o755)}
    members["LICENSE"] = (LICENSE.read_bytes(), 0o644)
    members["README"] = (readme(arch, buildinfo.parse(build_info.read_text()), plugins).encode(), 0o644)
    tarball = out / tarball_name(arch)
    data = make_tarball(members, mtime, {name: plugins[0] for name in plugins[1:]})
    tarball.write_bytes(data)
    for algorithm in ("sha256", "sha512"):
        digest = hashlib.new(algorithm, data).hexdigest()
        Path(f"{tarball}.{algorithm}").write_text(f"{digest}  {tarball.name}\n")
    return tarball


if __name__ == "__main__":
    if len(sys.argv) < 6:
        sys.stderr.write("usage: python -m cni_common.bundle.release OUT ARCH BUILD_INFO FILE TYPE...\n")
        sys.exit(2)
    print(write_release(Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]), sys.argv[5:]))
