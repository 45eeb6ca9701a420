"""One call in a child forked from the warm process: take the caller's place, then run the plugin.

The launcher's request (``warm.h``: ``warm_send_request``) carries its umask and securebits, argv and the
environment; its 'G' (go) carries its stdin, stdout, stderr and working directory as descriptors. Before
answering 'A', the child reads the request, checks the caller and takes on what an exec'd process would have
inherited that a fork does not give (cgroups, rlimits, OOM score, nice value and CPU affinity): all of it in C,
``warm_child_accept`` (``cni_common/bundle/warm_child.h``), since every Python object made or touched here
copies a page of the warm process. Any of that failing is a refusal ('R'), and the launcher execs: nothing of
the call has run yet. After the launcher's 'G' the child becomes the call: the caller's descriptors as 0, 1, 2,
its directory, umask, environment (so the plugin's own children, iptables or a delegate, get the runtime's
environment unchanged), argv, process name, fresh randomness; then the plugin runs, and the process exits with
its code.
"""

from __future__ import annotations

import array
import os
import random
import socket
import struct
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable

DESCRIPTORS = 4  # stdin, stdout, stderr, working directory

#: The exit code of a child that refused its call (the warm process counts refusals for ``inspect``).
REFUSED = 86
NOT_STARTED = 88  # ... and of one whose launcher gave up before 'G'


class Request:
    """A launcher's call, as ``warm_child_accept`` received and accepted it."""

    def __init__(self, umask: int, argv: list[str], env: dict[str, str]):
        self.umask, self.argv, self.env = umask, argv, env


def receive_go(conn: socket.socket) -> list[int] | None:
    """The launcher's 'G' and the descriptors it carries (stdin, stdout, stderr, working directory), or None
    when the launcher gave up instead."""
    data, fds = receive_descriptors(conn, DESCRIPTORS)
    if data != b"G" or len(fds) != DESCRIPTORS:
        return None
    return fds


def receive_descriptors(sock: socket.socket, count: int) -> tuple[bytes, list[int]]:
    """One byte and up to ``count`` descriptors (``socket.recv_fds`` without its Python layer, which costs a fresh
    child page copies)."""
    fds = array.array("i")
    data, ancillary, _, _ = sock.recvmsg(1, socket.CMSG_SPACE(count * fds.itemsize))
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[:len(payload) - len(payload) % fds.itemsize])
    return data, list(fds)


def start() -> None:
    """The first things a fresh fork of the warm process does, before its call comes (a spare does them while it
    waits, off the call's path): draw its own random numbers (the fork, ``warm_loop.h``, runs no at-fork hook, so
    ``random``'s own reseed did not happen); make one object of each small size, so that the allocator pages a
    call's first objects go to are copied now, not on its path (measured: ~0.4 ms less wall per host-local
    ADD+DEL). The loop already set SIGCHLD back to its default, as an exec'd program has it."""
    random.seed()
    blocks = [bytes(size) for size in range(0, 480, 16)]  # 33 + size bytes: pymalloc's size classes 48 to 512
    del blocks  # each block back at the head of its pool's free list, where the call's next object of its size goes


def become_caller(request: Request, fds: list[int]) -> None:
    """Take the caller's descriptors, directory, umask, environment and argv (after 'G': cannot fail back)."""
    stdin, stdout, stderr, cwd = fds
    for fd, target in ((stdin, 0), (stdout, 1), (stderr, 2)):
        os.dup2(fd, target)
    os.fchdir(cwd)
    for fd in fds:
        if fd > 2:
            os.close(fd)
    os.umask(request.umask)
    for name in list(os.environ):  # one by one: clear() and update() add a Python layer per variable
        del os.environ[name]
    for name, value in request.env.items():
        os.environ[name] = value
    sys.argv = list(request.argv)
    try:
        from _cni_suite import set_name  # type: ignore[import-not-found]

        set_name(os.path.basename(request.argv[0])[:15])
    except (ImportError, OSError, ValueError):
        pass


def run_call(conn: socket.socket, done: socket.socket, accept: Callable[[int], object],
             run: Callable[[list[str]], int]) -> None:
    """The whole life of a child: never returns (``os._exit``). ``done``: the warm process's socket for
    :func:`report_exit`; ``accept``: ``warm_child_accept`` (``(umask, argv, env)``, or why the call is refused)."""
    code = 0
    try:
        accepted = accept(conn.fileno())
        if not isinstance(accepted, tuple):
            conn.sendall(b"R" + struct.pack("<I", 0))
            os._exit(REFUSED)
        request = Request(*accepted)
        conn.sendall(b"A" + struct.pack("<I", os.getpid()))
        fds = receive_go(conn)
        if fds is None:  # the launcher gave up (timeout, killed): the call never starts here
            os._exit(NOT_STARTED)
        conn.set_inheritable(False)  # open during the call (report_exit): the plugin's own children never get it
        become_caller(request, fds)
        code = _run_as_program(run, request.argv) & 0xFF
        report_exit(conn, done, code)
    finally:
        os._exit(code)


def report_exit(conn: socket.socket, done: socket.socket, code: int) -> None:
    """Tell the launcher the exit code now, before this process's exit tears down its ~30 MiB of copied
    memory: the runtime gets its answer as soon as the plugin is done. Every other descriptor is closed first,
    as an exit would close them before the runtime sees it: the caller's stdout (a runtime reading it to its end
    sees that end when the launcher exits), locks held by open files (host-local's store), namespaces held open.

    The warm process hears of it first (our pid on ``done``, before the launcher can have its answer and exit),
    so that the launcher's exit is no reason to kill this child, and it sends no report of its own for it. A
    child killed before this point is reported by the warm process as a death by that signal, as before."""
    try:
        done.send(struct.pack("<i", os.getpid()), socket.MSG_DONTWAIT)
    except OSError:
        pass  # the warm process is gone, or its queue is full: at worst it kills this child as it exits
    keep = conn.fileno()
    for name in os.listdir("/proc/self/fd"):  # the few that are open (close_range(2) needs Linux 5.9)
        if int(name) != keep:
            try:
                os.close(int(name))
            except OSError:
                pass  # the listing's own descriptor, already closed
    try:
        conn.sendall(b"X" + struct.pack("<i", code))
    except OSError:
        pass  # the launcher went away: the warm process has killed, or is killing, this child


def _run_as_program(run: Callable[[list[str]], int], argv: list[str]) -> int:
    """``run(argv)``, ending as the interpreter ends a script: SystemExit's code, a traceback for an uncaught
    exception (exit 1), and stdout and stderr flushed (an unflushed result is a failed call)."""
    try:
        code = run(argv)
    except SystemExit as stop:
        code = _exit_code(stop.code)
    except BaseException:  # noqa: BLE001 - what the interpreter does for an uncaught one: print it, exit 1
        sys.excepthook(*sys.exc_info())
        code = 1
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        code = code or 1
    try:
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    return code


def _exit_code(value: object) -> int:
    if value is None:
        return 0
    if isinstance(value, int):
        return value & 0xFF
    try:
        sys.stderr.write(f"{value}\n")
    except (OSError, ValueError):
        pass
    return 1
