"""The warm process's whole-file read of a kernel file (cni_common/procfs.py): the same answer as a text-mode read.

What a warm child reads of its caller (request, /proc/PID facts, cgroups) is C since session 9
(cni_common/bundle/warm_child.h) and is tested through the built program (tests/binary/test_warm.py)."""

from __future__ import annotations

from pathlib import Path

from cni_common.warm import context


def test_read_gives_the_whole_file_or_nothing(tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.write_bytes(b"x" * 70000 + "é\n".encode() + b"\xff")  # more than one read; invalid UTF-8 replaced
    assert context._read(str(big)) == "x" * 70000 + "é\n\ufffd"
    assert context._read(str(tmp_path / "absent")) == ""
