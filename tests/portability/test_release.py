"""The release artifacts (dist/cni-plugins-linux-<arch>-v<version>.tgz, .sha256, .sha512) and reproducibility.

The tarballs must verify with the checksum files beside them, hold the one file of dist/linux-<arch>/ under every
plugin name of the suite's table (the first a regular entry, the others hard links to it: tar recreates them),
plus LICENSE and README, with fixed owner, modes and times; and a second build of the same sources, from another
folder, must give the very same bytes (no build path, no build time inside: docs/packaging.md).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from cni_common import __version__
from cni_common.bundle.arches import by_debian
from cni_common.bundle.release import tarball_name
from tests.helpers import paths
from tests.helpers.skip import require_dist, skip_or_fail


def architectures() -> list[str]:
    return sorted(p.name.removeprefix("linux-") for p in paths.DIST_DIR.glob("linux-*") if p.is_dir())


@pytest.fixture(scope="module")
def dist() -> Path:
    require_dist()
    if not architectures():
        skip_or_fail("dist/ has no linux-<arch>/ folder: run ./build.sh")
    return paths.DIST_DIR


def test_checksum_files_verify_in_upstreams_format(dist: Path) -> None:
    for arch in architectures():
        tarball = dist / tarball_name(arch)
        data = tarball.read_bytes()
        for algorithm in ("sha256", "sha512"):
            line = Path(f"{tarball}.{algorithm}").read_text()
            assert line == f"{hashlib.new(algorithm, data).hexdigest()}  {tarball.name}\n"
            proc = subprocess.run([f"{algorithm}sum", "--check", "--strict", f"{tarball.name}.{algorithm}"],
                                  cwd=dist, capture_output=True, text=True)
            assert proc.returncode == 0, proc.stdout + proc.stderr


def test_tarball_holds_one_file_under_every_name_license_and_readme(dist: Path) -> None:
    first, *others = sorted(paths.OUR_PLUGINS)
    for arch in architectures():
        folder = dist / f"linux-{arch}"
        assert len({(folder / name).stat().st_ino for name in paths.OUR_PLUGINS}) == 1, "dist/: one file"
        with tarfile.open(dist / tarball_name(arch)) as tar:
            members = tar.getmembers()
            names = [m.name for m in members]
            assert names == [".", "./LICENSE", "./README", *(f"./{t}" for t in sorted(paths.OUR_PLUGINS))]
            assert {(m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, "", "")}
            assert len({m.mtime for m in members}) == 1
            member = tar.getmember(f"./{first}")
            assert member.isfile() and member.mode == 0o755
            assert tar.extractfile(member).read() == (folder / first).read_bytes()
            for plugin_type in others:
                link = tar.getmember(f"./{plugin_type}")
                assert link.islnk() and link.linkname == f"./{first}" and link.mode == 0o755, plugin_type
            # about one file's size, however many plugins: the program compresses little
            assert (dist / tarball_name(arch)).stat().st_size < 1.1 * (folder / first).stat().st_size
            readme = tar.extractfile("./README").read().decode()
            assert f"v{__version__} for linux/{arch}" in readme and "GNU C Library (glibc)" in readme
            assert "Apache License" in tar.extractfile("./LICENSE").read().decode()


def _copy_sources(dest: Path) -> None:
    """The checkout as it is (committed or not), without what builds and runs make."""
    made = {".git", ".venv", "build", "dist", "__pycache__", ".pytest_cache"}

    def ignore(folder: str, names: list[str]) -> list[str]:
        return [n for n in names if n in made or (n == "bin" and Path(folder) == paths.REPO / "tests")]

    shutil.copytree(paths.REPO, dest, symlinks=True, ignore=ignore)
    # the other architectures' Debian packages are an input of the build, not an output (.ci/setup makes them)
    (dest / "build").mkdir()
    (dest / "build" / "sysroot").symlink_to(paths.REPO / "build" / "sysroot")


def test_a_second_build_elsewhere_is_byte_identical(dist: Path, tmp_path: Path) -> None:
    """Built again from a copy in another folder, with dist/'s SOURCE_DATE_EPOCH (its tarball's times): every
    architecture's files, tarball and checksums (the cross-built ones too) are the same bytes. Fails when
    dist/ is older than the sources (run ./build.sh)."""
    arch = by_debian(subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                                    check=True).stdout.strip()).name
    with tarfile.open(dist / tarball_name(arch)) as tar:
        epoch = tar.getmember(".").mtime
    source = tmp_path / "elsewhere"
    _copy_sources(source)
    arches = architectures()
    build = ["./build.sh", *(option for a in arches for option in ("--arch", a))]
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHON": sys.executable, "SOURCE_DATE_EPOCH": str(epoch)}
    proc = subprocess.run(build, cwd=source, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    again = source / "dist"
    names = [f"linux-{a}/{t}" for a in arches for t in paths.OUR_PLUGINS] + [
        tarball_name(a) + suffix for a in arches for suffix in ("", ".sha256", ".sha512")]
    for name in names:
        assert (again / name).read_bytes() == (dist / name).read_bytes(), f"{name} differs between two builds"
    # Built once more with nothing changed: every architecture comes from its cache entry (build/arch-cache/),
    # which stays as it was (built anew, it would be replaced), and dist/ is the same again.
    cache = source / "build" / "arch-cache"
    entries = {a: (cache / a / "cni-suite").stat().st_ino for a in arches}
    proc = subprocess.run(build, cwd=source, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert {a: (cache / a / "cni-suite").stat().st_ino for a in arches} == entries, "a cache entry was rebuilt"
    for name in names:
        assert (again / name).read_bytes() == (dist / name).read_bytes(), f"{name} differs after a cached build"
