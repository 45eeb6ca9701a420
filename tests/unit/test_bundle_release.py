"""The build's portable pieces in isolation: the C library closure (clibs) and the reproducible tarball (release)."""

from __future__ import annotations

import gzip
import io
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from cni_common.bundle import clibs
from cni_common.bundle.release import make_tarball, readme


def _multiarch() -> str:
    proc = subprocess.run(["gcc", "-print-multiarch"], capture_output=True, text=True)
    return proc.stdout.strip()


def test_clibs_copies_the_loader_and_the_needed_libraries(tmp_path: Path) -> None:
    """A dynamic program of the machine (/bin/true) as the bundle's program: its loader, libc and the
    libgcc_s glibc loads by itself end up next to it, as the distribution's files byte for byte."""
    triplet = _multiarch()
    if not triplet or shutil.which("readelf") is None:
        pytest.skip("needs gcc and binutils")
    bundle = tmp_path / "bundle"
    (bundle / clibs.INTERNAL).mkdir(parents=True)
    shutil.copy("/bin/true", bundle / clibs.PROGRAM)
    libdirs = [Path(f"/lib/{triplet}"), Path(f"/usr/lib/{triplet}")]
    loader = clibs.collect(bundle, libdirs)
    assert loader == Path(clibs.interpreter(Path("/bin/true"))).name
    internal = bundle / clibs.INTERNAL
    assert {loader, "libc.so.6", "libgcc_s.so.1"} <= {p.name for p in internal.iterdir()}
    system_libc = next(d / "libc.so.6" for d in libdirs if (d / "libc.so.6").exists())
    assert (internal / "libc.so.6").read_bytes() == system_libc.read_bytes()


def test_tarball_bytes_depend_only_on_the_members_and_the_time() -> None:
    members = {"b": (b"bee", 0o755), "a": (b"ay", 0o644)}
    first = make_tarball(members, 1700000000)
    assert make_tarball(dict(reversed(members.items())), 1700000000) == first
    assert make_tarball(members, 1700000001) != first
    header = first[:10]
    assert header[3] & 0x08 == 0, "no file name in the gzip header"
    assert header[4:8] == b"\0\0\0\0", "no time stamp in the gzip header"
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(first))) as tar:
        assert [m.name for m in tar.getmembers()] == [".", "./a", "./b"]
        assert {(m.uid, m.gid, m.uname, m.gname, m.mtime) for m in tar.getmembers()} == {(0, 0, "", "", 1700000000)}


def test_every_name_but_the_first_is_a_hard_link_to_it_and_tar_recreates_the_links(tmp_path: Path) -> None:
    members = {"bridge": (b"\x7fELF one program", 0o755), "LICENSE": (b"license", 0o644)}
    links = {"vxlan": "bridge", "host-local": "bridge"}
    data = make_tarball(members, 1700000000, links)
    assert make_tarball(members, 1700000000, dict(reversed(links.items()))) == data
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data))) as tar:
        entries = {m.name: m for m in tar.getmembers()}
        assert list(entries) == [".", "./LICENSE", "./bridge", "./host-local", "./vxlan"]
        assert entries["./bridge"].isfile() and entries["./bridge"].size == 16
        for name in ("./host-local", "./vxlan"):
            assert entries[name].islnk() and entries[name].linkname == "./bridge" and entries[name].mode == 0o755
    tarball = tmp_path / "t.tgz"
    tarball.write_bytes(data)
    subprocess.run(["tar", "-C", str(tmp_path), "-xzf", str(tarball)], check=True)
    inodes = {(tmp_path / name).stat().st_ino for name in ("bridge", "host-local", "vxlan")}
    assert len(inodes) == 1 and (tmp_path / "vxlan").read_bytes() == b"\x7fELF one program"


def test_a_link_to_a_later_or_missing_entry_is_refused() -> None:
    with pytest.raises(AssertionError):
        make_tarball({"host-local": (b"x", 0o755)}, 0, {"bridge": "host-local"})


def test_readme_names_the_bundled_c_library() -> None:
    text = readme("arm64", {"glibc": "2.36-9+deb12u13", "musl": "1.2.3-1", "python": "3.11.2-6"},
                  ["bridge", "host-local"])
    assert "for linux/arm64" in text and "libc6 2.36-9+deb12u13" in text and "libpython3.11-stdlib" in text
    assert "musl-dev 1.2.3-1" in text  # the launcher's C library
    assert "./bridge ./host-local" in text  # how to extract one plugin from the hard links


def test_bundled_line_reads_build_info_and_is_silent_without_it(tmp_path: Path, monkeypatch) -> None:
    from cni_common.bundle import buildinfo

    info = tmp_path / "build-info"
    info.write_text("platform=linux/amd64\nglibc=2.36-9+deb12u13\nmusl=1.2.3-1\npython=3.11.2-6\n")
    monkeypatch.setattr(buildinfo, "BUILD_INFO", str(info))
    assert buildinfo.bundled_line() == ("Bundled (Debian package versions): linux/amd64, glibc 2.36-9+deb12u13, "
                                        "musl 1.2.3-1 (the launcher), Python 3.11.2-6")
    monkeypatch.setattr(buildinfo, "BUILD_INFO", str(tmp_path / "absent"))
    assert buildinfo.bundled_line() == ""
