"""The architecture table (cni_common.bundle.arches) and the sysroot's symlink repair (cni_common.bundle.sysroot)."""

from __future__ import annotations

import os
from pathlib import Path

from cni_common.bundle import arches, sysroot


def test_upstreams_names_with_debians_and_the_triplets():
    assert list(arches.ARCHES) == ["amd64", "arm64", "arm", "mips64le", "ppc64le", "s390x"]
    assert arches.ARCHES["ppc64le"].debian == "ppc64el" and arches.by_debian("mips64el").name == "mips64le"
    assert [a.name for a in arches.ARCHES.values() if a.big_endian] == ["s390x"]


def test_the_command_line_build_sh_reads(capsys):
    assert arches.main(["arches"]) == 0
    assert capsys.readouterr().out.split() == list(arches.ARCHES)
    assert arches.main(["arches", "arm"]) == 0
    assert capsys.readouterr().out.split() == ["armhf", "arm-linux-gnueabihf", "arm"]
    assert arches.main(["arches", "--native", "s390x"]) == 0 and capsys.readouterr().out.strip() == "s390x"
    assert arches.main(["arches", "riscv64"]) == 2 and "riscv64" in capsys.readouterr().err


def test_absolute_symlinks_are_made_relative_into_the_sysroot(tmp_path: Path):
    (tmp_path / "lib/s390x-linux-gnu").mkdir(parents=True)
    (tmp_path / "usr/lib/s390x-linux-gnu").mkdir(parents=True)
    (tmp_path / "lib/s390x-linux-gnu/libz.so.1.2.13").write_bytes(b"\x7fELF")
    link = tmp_path / "usr/lib/s390x-linux-gnu/libz.so"
    link.symlink_to("/lib/s390x-linux-gnu/libz.so.1.2.13")
    relative = tmp_path / "lib/s390x-linux-gnu/libz.so.1"
    relative.symlink_to("libz.so.1.2.13")
    sysroot.relink_absolute_symlinks(tmp_path)
    assert os.readlink(link) == "../../../lib/s390x-linux-gnu/libz.so.1.2.13"
    assert link.resolve() == (tmp_path / "lib/s390x-linux-gnu/libz.so.1.2.13").resolve()
    assert os.readlink(relative) == "libz.so.1.2.13"


def test_the_sysroot_holds_the_python_of_the_build():
    names = sysroot.packages("3.11")
    assert {"libc6", "libpython3.11-stdlib", "libpython3.11-dev", "libpython3.11-minimal", "zlib1g-dev"} <= set(names)


def test_a_sysroot_is_made_again_when_the_package_list_changes(tmp_path: Path):
    assert not sysroot.is_complete(tmp_path)
    (tmp_path / sysroot.PACKAGES_FILE).write_text("".join(f"{name} 1.0\n" for name in sysroot.packages()))
    assert sysroot.is_complete(tmp_path)
    (tmp_path / sysroot.PACKAGES_FILE).write_text("libc6 2.36\n")
    assert not sysroot.is_complete(tmp_path)
