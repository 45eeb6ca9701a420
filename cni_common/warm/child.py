"""One call in a child forked from the warm process: take the caller's place, then run the plugin.

The launcher's request (``warm.h``: ``warm_send_request``) carries its umask and securebits, argv and the
environment; its 'G' (go) carries its stdin, stdout, stderr and working directory as descriptors. Before
answering 'A', the child checks the caller (:mod:`cni_common.warm.context`) and takes on what an exec'd
process would have inherited that a fork does not give: cgroups, rlimits, OOM score, nice value and CPU
affinity. Any of that failing is a refusal ('R'), and the launcher execs: nothing of the call has run yet.
After the launcher's 'G' the child becomes the call: the caller's descriptors as 0, 1, 2, its directory, umask,
environment (so the plugin's own children, iptables or a delegate, get the runtime's environment unchanged),
argv, process name, fresh randomness; then the plugin runs, and the process exits with its code.
"""

from __future__ import annotations

import array
import os
import random
import resource
import socket
import struct
import sys

from cni_common import procfs
from cni_common.warm import context

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable

MAGIC = b"CNIW"
PROTOCOL = 1
HEADER = struct.Struct("<4sIIIIII")  # magic, protocol, umask, securebits, argc, envc, length of the strings
DESCRIPTORS = 4  # stdin, stdout, stderr, working directory
#: How long a launcher may take to send its request (it sends it right after connecting).
REQUEST_TIMEOUT = 2.0
#: Every limit an exec'd process would inherit.
RLIMITS = tuple(getattr(resource, name) for name in dir(resource) if name.startswith("RLIMIT_"))


#: The exit code of a child that refused its call (the warm process counts refusals for ``inspect``).
REFUSED = 86
NOT_STARTED = 88  # ... and of one whose launcher gave up before 'G'


class Refused(Exception):
    """The call cannot run here as it would by exec; the message says why (the launcher then execs)."""


class Request:
    """A launcher's call, as received."""

    def __init__(self, umask: int, securebits: int, argv: list[str], env: dict[str, str]):
        self.umask, self.securebits, self.argv, self.env = umask, securebits, argv, env


def receive(conn: socket.socket) -> Request:
    """Read the request (Refused when it is not one)."""
    conn.settimeout(REQUEST_TIMEOUT)
    data = conn.recv(65536)
    if len(data) < HEADER.size:
        raise Refused("malformed request")
    magic, protocol, umask, securebits, argc, envc, length = HEADER.unpack_from(data)
    if magic != MAGIC or protocol != PROTOCOL:
        raise Refused("another protocol")
    body = bytearray(data[HEADER.size:])
    while len(body) < length:
        chunk = conn.recv(length - len(body))
        if not chunk:
            raise Refused("truncated request")
        body += chunk
    strings = os.fsdecode(bytes(body)).split("\0")[:-1]  # one decode (a NUL byte is never part of a character)
    if len(strings) != argc + envc or argc < 1:
        raise Refused("malformed request")
    env = {}
    for item in strings[argc:]:
        name, sep, value = item.partition("=")
        if sep and name not in env:  # getenv() finds the first of two equal names
            env[name] = value
    return Request(umask, securebits, strings[:argc], env)


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


def check_and_adopt(conn: socket.socket, request: Request, own: dict[str, object], own_bits: int,
                    mounts: dict[str, tuple[str, str]]) -> int:
    """Refuse a caller that differs from us; else take its cgroups and limits. Returns the caller's pid."""
    pid, uid, _ = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    if pid <= 0 or uid != os.geteuid():
        raise Refused("caller not visible or not root")
    differs = context.mismatch(own, context.snapshot(pid), own_bits, request.securebits)
    if differs:
        raise Refused(f"caller's {differs} differs")
    failed = context.join_cgroups(pid, mounts)
    if failed:
        raise Refused(failed)
    try:
        for limit in RLIMITS:
            wanted = resource.prlimit(pid, limit)
            if resource.getrlimit(limit) != wanted:
                resource.setrlimit(limit, wanted)
        _copy_file(f"/proc/{pid}/oom_score_adj", "/proc/self/oom_score_adj")
        nice = os.getpriority(os.PRIO_PROCESS, pid)
        if os.getpriority(os.PRIO_PROCESS, 0) != nice:
            os.setpriority(os.PRIO_PROCESS, 0, nice)
        affinity = os.sched_getaffinity(pid)
        if os.sched_getaffinity(0) != affinity:
            os.sched_setaffinity(0, affinity)
    except (OSError, ValueError) as err:
        raise Refused(f"cannot take the caller's limits: {err}") from None
    return pid


def _copy_file(source: str, target: str) -> None:
    """Write ``source``'s value (a /proc number) into ``target`` unless equal; OSError when either fails."""
    value = _read_value(source)
    if _read_value(target) != value:
        fd = os.open(target, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, value)
        finally:
            os.close(fd)


def _read_value(path: str) -> bytes:
    return procfs.read(path).strip()


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


def run_call(conn: socket.socket, done: socket.socket, own: dict[str, object], own_bits: int,
             mounts: dict[str, tuple[str, str]], run: Callable[[list[str]], int]) -> None:
    """The whole life of a child: never returns (``os._exit``). ``done``: the warm process's socket for
    :func:`report_exit`."""
    code = 0
    try:
        try:
            request = receive(conn)
            check_and_adopt(conn, request, own, own_bits, mounts)
        except (Refused, OSError, ValueError):
            conn.sendall(b"R" + struct.pack("<I", 0))
            os._exit(REFUSED)
        conn.settimeout(None)
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
