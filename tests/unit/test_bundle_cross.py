"""cni_common.bundle.cross: which arm64 file replaces each amd64 one, and a missing counterpart stops the build."""

from __future__ import annotations

import sysconfig
from pathlib import Path

from cni_common.bundle import cross

LIB_DYNLOAD = "_internal/python3.11/lib-dynload"


def test_an_extension_module_maps_to_the_other_suffix_in_the_same_folder():
    rel = f"{LIB_DYNLOAD}/_ssl.cpython-311-x86_64-linux-gnu.so"
    new_rel, origin = cross.counterpart(rel, "amd64", "arm64")
    assert new_rel == f"{LIB_DYNLOAD}/_ssl.cpython-311-aarch64-linux-gnu.so"
    assert origin == Path(sysconfig.get_config_var("DESTSHARED")) / "_ssl.cpython-311-aarch64-linux-gnu.so"


def test_a_library_keeps_its_name_from_the_targets_multiarch_folder():
    new_rel, origin = cross.counterpart("_internal/libssl.so.3", "amd64", "arm64")
    assert new_rel == "_internal/libssl.so.3"
    assert origin.name == "libssl.so.3" and origin.parent.name == "aarch64-linux-gnu"


def test_an_elf_file_without_counterpart_is_a_problem_and_nothing_else_is_touched(tmp_path: Path):
    internal = tmp_path / "_internal"
    internal.mkdir()
    (tmp_path / "cni-suite").write_bytes(b"\x7fELF the runner, rebuilt by build.sh")
    (internal / "libcnt-nowhere.so.9").write_bytes(b"\x7fELF machine code")
    (internal / "module.pyc").write_bytes(b"bytecode")
    problems = cross.convert(tmp_path, "amd64", "arm64", "true")
    assert len(problems) == 1 and "libcnt-nowhere.so.9" in problems[0] and ":arm64" in problems[0]
    assert (internal / "module.pyc").read_bytes() == b"bytecode"
    assert (tmp_path / "cni-suite").read_bytes().startswith(b"\x7fELF the runner")
