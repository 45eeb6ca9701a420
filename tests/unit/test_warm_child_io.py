"""The warm child's cheap reads (docs/packaging.md, "Copy-on-write"): the same answers as the text-mode reads and
per-item decoding they replaced, which cost each child page copies."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from cni_common.warm import child, context

STATUS = """\
Name:\tcni-suite
Umask:\t0022
State:\tS (sleeping)
Uid:\t0\t0\t0\t0
Gid:\t0\t0\t0\t0
Groups:\t
CapInh:\t0000000000000000
CapPrm:\t000001ffffffffff
CapEff:\t000001ffffffffff
CapBnd:\t000001ffffffffff
CapAmb:\t0000000000000000
NoNewPrivs:\t0
Seccomp:\t2
Seccomp_filters:\t1
Speculation_Store_Bypass:\tthread vulnerable
"""


def _status_by_lines(text: str) -> dict[str, str]:
    """The parse the regex replaced: every line, split at its first colon, the value stripped."""
    fields = {}
    for line in text.splitlines():
        name, _, value = line.partition(":")
        fields[name] = value.strip()
    return fields


def test_status_takes_the_compared_fields_as_the_line_parse_did() -> None:
    fields = context._status(STATUS)
    by_lines = _status_by_lines(STATUS)
    assert fields == {name: by_lines[name] for name in context.STATUS_FIELDS}
    assert fields["Seccomp"] == "2" and fields["Seccomp_filters"] == "1" and fields["Groups"] == ""
    own = _status_by_lines(Path("/proc/self/status").read_text())
    assert context._status(context._read("/proc/self/status")) == {
        name: own[name] for name in context.STATUS_FIELDS if name in own}


def test_read_gives_the_whole_file_or_nothing(tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.write_bytes(b"x" * 70000 + "é\n".encode() + b"\xff")  # more than one read; invalid UTF-8 replaced
    assert context._read(str(big)) == "x" * 70000 + "é\n\ufffd"
    assert context._read(str(tmp_path / "absent")) == ""


def test_copy_file_writes_only_a_different_value(tmp_path: Path) -> None:
    source, target = tmp_path / "source", tmp_path / "target"
    source.write_text("-998\n")
    target.write_text("0\n")
    child._copy_file(str(source), str(target))
    assert target.read_text() == "-998"
    os.utime(target, ns=(0, 0))
    child._copy_file(str(source), str(target))  # equal now: not written again
    assert target.stat().st_mtime_ns == 0
    with pytest.raises(OSError):  # an unreadable caller's value is a refusal (check_and_adopt), not a guess
        child._copy_file(str(tmp_path / "absent"), str(target))


def test_a_request_decodes_as_the_launcher_sent_it() -> None:
    """One decode of the whole request gives what a decode of each string gave, undecodable bytes included
    (surrogateescape, as os.fsdecode does)."""
    argv = [b"host-local"]
    env = [b"CNI_COMMAND=ADD", "CNT_NAME=é€".encode(), b"CNT_RAW=\xff\xe2\x82", b"CNI_COMMAND=DEL", b"EMPTY="]
    strings = b"".join(item + b"\0" for item in (*argv, *env))
    header = child.HEADER.pack(child.MAGIC, child.PROTOCOL, 0o022, 0, len(argv), len(env), len(strings))
    ours, theirs = socket.socketpair()
    with ours, theirs:
        ours.sendall(header + strings)
        request = child.receive(theirs)
    assert request.argv == ["host-local"]
    assert request.env == {"CNI_COMMAND": "ADD", "CNT_NAME": "é€", "CNT_RAW": os.fsdecode(b"\xff\xe2\x82"),
                           "EMPTY": ""}  # the first of two equal names, as getenv() finds it
    assert request.umask == 0o022
