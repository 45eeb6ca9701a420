"""cni_common.bundle.cross: which target file (from the sysroot) replaces each amd64 one, and a missing counterpart
stops the build."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest

from cni_common.bundle import cross

LIB_DYNLOAD = "_internal/python3.11/lib-dynload"
SYSROOT = Path("/srv/sysroot-s390x")


def test_an_extension_module_maps_to_the_other_suffix_in_the_same_folder():
    rel = f"{LIB_DYNLOAD}/_ssl.cpython-311-x86_64-linux-gnu.so"
    new_rel, origin = cross.counterpart(rel, "amd64", "s390x", SYSROOT)
    assert new_rel == f"{LIB_DYNLOAD}/_ssl.cpython-311-s390x-linux-gnu.so"
    destshared = str(sysconfig.get_config_var("DESTSHARED")).lstrip("/")
    assert origin == SYSROOT / destshared / "_ssl.cpython-311-s390x-linux-gnu.so"


def test_a_library_keeps_its_name_from_the_targets_multiarch_folder_in_the_sysroot():
    new_rel, origin = cross.counterpart("_internal/libssl.so.3", "amd64", "ppc64le", SYSROOT)
    assert new_rel == "_internal/libssl.so.3"
    assert origin == SYSROOT / "usr/lib/powerpc64le-linux-gnu/libssl.so.3"


def test_a_symlink_out_of_the_sysroot_stops_the_build(tmp_path: Path):
    sysroot = tmp_path / "sysroot"
    (sysroot / "lib/s390x-linux-gnu").mkdir(parents=True)
    (sysroot / "lib/s390x-linux-gnu/libz.so.1").symlink_to("/lib/x86_64-linux-gnu/libz.so.1")
    with pytest.raises(SystemExit, match="leads out of"):
        cross._resolve_inside(sysroot / "lib/s390x-linux-gnu/libz.so.1", sysroot)


def test_an_elf_file_without_counterpart_is_a_problem_and_nothing_else_is_touched(tmp_path: Path):
    internal = tmp_path / "_internal"
    internal.mkdir()
    (tmp_path / "cni-suite").write_bytes(b"\x7fELF the runner, rebuilt by build.sh")
    (internal / "libcnt-nowhere.so.9").write_bytes(b"\x7fELF machine code")
    (internal / "module.pyc").write_bytes(b"bytecode")
    problems = cross.convert(tmp_path, "amd64", "arm64", "true", tmp_path / "sysroot")
    assert len(problems) == 1 and "libcnt-nowhere.so.9" in problems[0] and "sysroot.py" in problems[0]
    assert (internal / "module.pyc").read_bytes() == b"bytecode"
    assert (tmp_path / "cni-suite").read_bytes().startswith(b"\x7fELF the runner")
