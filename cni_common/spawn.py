"""Run a command to its end and collect its exit status and output, without the ``subprocess`` module.

Why: a plugin call runs a few short commands (``iptables-restore``, ``nft``, a delegated plugin), and importing
``subprocess`` costs ~3 ms of every such call (it pulls in ``locale``, ``selectors`` and more), and its pipes
need a poll loop so that a child writing much cannot block on a full pipe while we write its input. Here the
child's stdin, stdout and stderr are memory files (``memfd_create``): the input is written before the child
starts, the output can never fill anything, and the parent only waits for the exit. The child is started with
``posix_spawn`` (vfork-like), from the calling thread, so it runs in that thread's network namespace.
:func:`find_executable` is the one lookup of a program in a list of directories (``CNI_PATH``, ``PATH``).
"""

from __future__ import annotations

import os

from .record import record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~4 ms per plugin process)
if TYPE_CHECKING:
    from typing import Iterable, Mapping, Optional

@record
class Completed:
    """What a finished command left: its exit status (negative: killed by that signal) and its output."""

    returncode: int
    stdout: bytes
    stderr: bytes

    def text(self) -> str:
        """stdout, decoded."""
        return self.stdout.decode(errors="replace")

    def error_text(self) -> str:
        """stderr, decoded and stripped, for error messages."""
        return self.stderr.decode(errors="replace").strip()


def run(argv: list[str], stdin: bytes = b"", env: Optional[Mapping[str, str]] = None,
        capture_stderr: bool = True) -> Completed:
    """Run ``argv`` (``argv[0]`` looked up on ``PATH``) with ``stdin`` as its input, in ``env`` (default: ours).

    Without ``capture_stderr`` the child writes to our stderr (a delegate's log lines reach the runtime's).
    Raises OSError when the program cannot be started (missing, not executable, "text file busy").
    """
    import signal  # here, not at import: find_executable is on every delegation's path, in-process ones too

    from .durable import write_all

    opened: list[int] = []
    try:
        stdin_fd = _memory_file("stdin", opened)
        write_all(stdin_fd, stdin)
        os.lseek(stdin_fd, 0, os.SEEK_SET)
        stdout_fd = _memory_file("stdout", opened)
        actions = [(os.POSIX_SPAWN_DUP2, stdin_fd, 0), (os.POSIX_SPAWN_DUP2, stdout_fd, 1)]
        stderr_fd = -1
        if capture_stderr:
            stderr_fd = _memory_file("stderr", opened)
            actions.append((os.POSIX_SPAWN_DUP2, stderr_fd, 2))
        # Python ignores SIGPIPE and SIGXFSZ; the child gets the defaults back, as subprocess gives them.
        pid = os.posix_spawnp(argv[0], argv, os.environ if env is None else env, file_actions=actions,
                              setsigdef=(signal.SIGPIPE, signal.SIGXFSZ))
        _, status = os.waitpid(pid, 0)
        return Completed(os.waitstatus_to_exitcode(status), _read_all(stdout_fd),
                         _read_all(stderr_fd) if capture_stderr else b"")
    finally:
        for fd in opened:
            os.close(fd)


def find_executable(name: str, directories: Iterable[str]) -> Optional[str]:
    """The first regular, executable file ``name`` in ``directories`` (an empty entry is the current directory,
    as in ``PATH``), or None."""
    for directory in directories:
        candidate = os.path.join(directory or ".", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def _memory_file(name: str, opened: list[int]) -> int:
    fd = os.memfd_create(f"cni-{name}", os.MFD_CLOEXEC)
    opened.append(fd)
    return fd


def _read_all(fd: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)
