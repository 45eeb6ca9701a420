"""A warm child reports its exit code itself (cni_common.warm.child.report_exit), before its exit's teardown:
the warm process hears of it first, and by then the child holds no descriptor but its connection, as an exited
process would hold none."""

from __future__ import annotations

import os
import socket
import struct

from cni_common.warm import child


def test_the_report_comes_after_every_other_descriptor_closed() -> None:
    ours, theirs = socket.socketpair()
    done_read, done_write = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the call's child: still holds the pipe's write end (a caller's stdout, a store's lock)
        ours.close()
        done_read.close()
        os.close(read_end)
        try:
            child.report_exit(theirs, done_write, 7)
            theirs.recv(1)  # alive until the test has looked
        finally:
            os._exit(0)
    theirs.close()
    done_write.close()
    os.close(write_end)
    try:
        assert ours.recv(5) == b"X" + struct.pack("<i", 7)
        assert done_read.recv(4) == struct.pack("<i", pid), "the warm process heard of it first"
        assert os.waitpid(pid, os.WNOHANG) == (0, 0), "the report came before the exit"
        assert os.read(read_end, 1) == b"", "no descriptor of the call is open when the report arrives"
    finally:
        ours.close()
        done_read.close()
        os.close(read_end)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_gone_launcher_or_warm_process_is_no_error() -> None:
    ours, theirs = socket.socketpair()
    done_read, done_write = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    ours.close()
    done_read.close()
    pid = os.fork()
    if pid == 0:
        try:
            child.report_exit(theirs, done_write, 0)
        finally:
            os._exit(3)
    theirs.close()
    done_write.close()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 3
