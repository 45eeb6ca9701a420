"""cni_common.spawn: a command's exit status and output through memory files, without subprocess."""

from __future__ import annotations

import errno
import os
import signal

import pytest

from cni_common import spawn


def test_output_exit_status_and_stdin():
    done = spawn.run(["sh", "-c", "cat; echo err >&2; exit 3"], b"in\n")
    assert (done.returncode, done.stdout, done.error_text(), done.text()) == (3, b"in\n", "err", "in\n")


def test_input_and_output_larger_than_a_pipe_buffer():
    data = os.urandom(1 << 20)
    done = spawn.run(["cat"], data)
    assert done.returncode == 0 and done.stdout == data


def test_environment_given_or_inherited(monkeypatch):
    monkeypatch.setenv("CNI_SPAWN_TEST", "inherited")
    assert spawn.run(["sh", "-c", "echo $CNI_SPAWN_TEST"]).stdout == b"inherited\n"
    assert spawn.run(["sh", "-c", "echo $CNI_SPAWN_TEST"], env={"CNI_SPAWN_TEST": "given"}).stdout == b"given\n"


def test_killed_by_a_signal_is_a_negative_status():
    assert spawn.run(["sh", "-c", "kill -KILL $$"]).returncode == -signal.SIGKILL


def test_sigpipe_is_back_to_default_in_the_child():
    # Python ignores SIGPIPE and an ignored signal stays ignored across exec: iptables or a delegate must get
    # the default back, as subprocess gives it.
    status = spawn.run(["cat", "/proc/self/status"]).text()
    ignored = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigIgn:")), 16)
    assert not ignored & (1 << (signal.SIGPIPE - 1))


def test_a_missing_program_raises_oserror():
    with pytest.raises(OSError) as info:
        spawn.run(["/nonexistent/cni-spawn-test"])
    assert info.value.errno == errno.ENOENT


def test_stderr_not_captured_goes_to_ours(capfd):
    done = spawn.run(["sh", "-c", "echo to-ours >&2; echo out"], capture_stderr=False)
    assert done.stdout == b"out\n" and done.stderr == b""
    assert "to-ours" in capfd.readouterr().err
