"""The warm process: one per build and calling context, single-threaded, forking one child per plugin call.

Started by a launcher (``warm.h``: ``warm_spawn``) as ``cni-suite warm-server IDLE LOCKFD`` in the caller's
context, detached, with an environment of ``LD_BIND_NOW=1`` alone (dropped at once: the loader has bound every C
function, so no child does it again). It imports every plugin once (the caller of :func:`serve` says which),
listens on ``<build>/warm/w<context>.sock`` in the build's root-only cache folder, and hands each connection to a
child (:mod:`cni_common.warm.child`) that checks the caller and runs the call: the spare, forked ahead while the
previous call ran (or at start), so the fork is not on the call's path. The loop itself only accepts, forks,
watches and reports: it reads no request, so a slow caller never delays the others. That loop is C
(``cni_common/bundle/warm_loop.h``, built into the program): every page this process writes after a fork is
copied, and the same loop in Python wrote ~140 per call. It forks without the interpreter's at-fork hooks
(threading's, logging's, random's: they repair locks a second thread may have held, and this process has one
thread, checked before it serves); each child reseeds ``random`` itself (:func:`child.start`).

- Each connection gets ``F`` as its child gets it (the launcher waits 2 s for it: a hung warm process
  costs a call no more), then the child's ``A`` (10 s: under load the checks of fifty calls at once take time,
  and an exec would only add to it).
- A child's end is reported to its launcher as ``X`` + exit code or ``S`` + signal number (``wait4``, woken by
  SIGCHLD through a wake-up pipe: no threads, no pidfd, any kernel). A child that ends normally has already
  sent its ``X`` itself, before its exit's teardown (:func:`child.report_exit`): the launcher acts on the first
  report, so the warm process's one matters for a child that died of a signal (even after its own report: then
  it is not read).
- A launcher that goes away (the runtime killed it, a timeout) closes its connection: the child is killed
  (SIGKILL), as the runtime's kill would have ended an exec'd plugin.
- Lifetime: it holds ``warm/w<context>.lock`` (one per build and context) and the build's ``.in-use`` lock (the
  launcher's descriptor, so no launcher removes the files its children import), exits after ``idle`` seconds
  without a call, and as soon as no call is running once a newer build was unpacked into the cache: an upgrade
  never runs old code, and the old build's folder is then removed like the launcher's prune would.
"""

from __future__ import annotations

import fcntl
import gc
import json
import os
import shutil
import socket
import sys
import time

from cni_common.warm import child, context

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

#: How often the loop looks for a newer build when no call wakes it (seconds).
UPGRADE_CHECK = 1.0
IN_USE = ".in-use"
WARM_DIR = "warm"  # in the build folder, made at unpack time (cni_common/bundle/pack.py)
MODE_FILE = "warm-mode"  # the operator's switch in the cache (warm.h: warm_mode)


class Server:
    """The listening sockets and the policy (idle exit, upgrade, switch); the calls and the status queries go
    through the loop of ``native`` (runner.c's built-in module ``_cni_suite``: ``warm_loop.h``)."""

    def __init__(self, build_dir: str, idle: float, in_use_fd: int, run: Callable[[list[str]], int], native: Any):
        self.build_dir, self.cache_dir = build_dir, os.path.dirname(build_dir)
        self.warm_dir = os.path.join(build_dir, WARM_DIR)
        self.run, self.native = run, native
        self.idle, self.in_use_fd = idle, in_use_fd
        self.key = context.context_key()
        self.pid = os.getpid()
        self.started = time.time()
        self.listener: socket.socket | None = None
        self.status_listener: socket.socket | None = None
        # A child's pid, sent by the child as it reports its exit code to its launcher itself (child.report_exit),
        # before that launcher can exit: its connection's end is then no reason to kill it.
        self.done_read, self.done_write = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)

    def path(self, suffix: str) -> str:
        return os.path.join(self.warm_dir, f"w{self.key}{suffix}")

    def status_prefix(self) -> str:
        """The fixed part of what ``inspect`` shows of this process (:mod:`cni_common.warm.status`); the loop answers
        the queries, adding the counters: calls, refused, in_flight, cpu_seconds (this process's and its reaped
        children's), max_call_rss_kib."""
        fixed = json.dumps({"pid": self.pid, "build": os.path.basename(self.build_dir), "context": self.key,
                            "started": int(self.started), "idle_exit_seconds": self.idle})
        return fixed[:-1] + ", "

    def listen(self) -> None:
        """Bind the calls' socket and the status socket (``.stat``: connecting is the query, answered inline),
        and hand them to the loop, which forks the first spare when it starts."""
        self.listener = self._bind(".sock")
        self.status_listener = self._bind(".stat")
        # What each child compares its caller with (this process's namespaces, root, ids, capabilities, LSM
        # label, securebits) and where it finds the caller's cgroups: read once, before the first fork.
        self.native.warm_child_prepare(context.cgroup_mounts())
        self.native.warm_loop_start(self.listener.fileno(), self.status_listener.fileno(), self.done_read.fileno(),
                                    child.REFUSED, child.NOT_STARTED, self.status_prefix())

    def _bind(self, suffix: str) -> socket.socket:
        dir_fd = os.open(self.warm_dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            address = f"/proc/self/fd/{dir_fd}/w{self.key}{suffix}"  # any cache path length fits sun_path
            try:
                os.unlink(address)  # a crashed predecessor's (we hold the context's lock)
            except FileNotFoundError:
                pass
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            old_mask = os.umask(0o077)
            try:
                listener.bind(address)
            finally:
                os.umask(old_mask)
        finally:
            os.close(dir_fd)
        listener.listen(128)
        return listener

    def loop(self) -> None:
        """Serve until idle, superseded or switched off; never raises for a single call's trouble. The loop in C
        comes back here only when no call is in flight and the next check is due, and in each child it forks
        (which never returns from here)."""
        next_check = time.monotonic() + UPGRADE_CHECK
        while True:
            event, fd = self.native.warm_loop_run(min(next_check, self.native.warm_loop_last_call() + self.idle))
            if event == "spare":
                self.wait_as_spare(socket.socket(fileno=fd))
            elif event == "call":
                self.become_child(socket.socket(fileno=fd))
            now = time.monotonic()  # "tick": no call in flight
            if now - self.native.warm_loop_last_call() >= self.idle:
                return
            if now >= next_check:
                next_check = now + UPGRADE_CHECK
                if self.superseded() or self.switched_off():
                    return

    def wait_as_spare(self, control: socket.socket) -> None:
        """In the spare: wait for a call's connection (or the warm process's end: EOF), then run its call."""
        self.close_in_child()
        try:
            _, fds = child.receive_descriptors(control, 1)
        except OSError:
            fds = []
        control.close()
        if len(fds) != 1:
            os._exit(child.NOT_STARTED)
        self.run_child(socket.socket(fileno=fds[0]))

    def become_child(self, conn: socket.socket) -> None:
        """In a child forked for ``conn`` (no spare was ready): run its call."""
        self.close_in_child()
        self.run_child(conn)

    def run_child(self, conn: socket.socket) -> None:
        child.run_call(conn, self.done_write, self.native.warm_child_accept, self.run)
        os._exit(1)  # not reached: run_call always exits

    def close_in_child(self) -> None:
        """A child keeps of the warm process's sockets only ``done_write`` (and its own connection); the loop
        already closed the other calls' connections, its wake-up pipe and SIGCHLD's handler in it."""
        child.start()
        for sock in (self.listener, self.status_listener, self.done_read):
            if sock is not None:
                sock.close()

    def superseded(self) -> bool:
        """A newer build was unpacked into the cache (its ``.in-use`` marker is younger than ours)."""
        try:
            own = os.stat(os.path.join(self.build_dir, IN_USE)).st_mtime_ns
            for name in os.listdir(self.cache_dir):
                if len(name) == 64 and name != os.path.basename(self.build_dir):
                    try:
                        if os.stat(os.path.join(self.cache_dir, name, IN_USE)).st_mtime_ns > own:
                            return True
                    except OSError:
                        continue
        except OSError:
            return True  # our own build folder is gone
        return False

    def switched_off(self) -> bool:
        """The operator wrote ``off`` into ``<cache>/warm-mode``: new calls exec from now on (the launcher reads the
        same file), so this process has nothing left to serve and goes now rather than after its idle time."""
        try:
            fd = os.open(os.path.join(self.cache_dir, MODE_FILE), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return False
        try:
            word = os.read(fd, 16)
        finally:
            os.close(fd)
        return word.lstrip(b" \t\n").startswith(b"off")

    def close(self) -> None:
        for suffix in (".sock", ".stat", ".lock"):  # under our lock: no other process of this context exists
            try:
                os.unlink(self.path(suffix))
            except OSError:
                pass
        for listener in (self.listener, self.status_listener):
            if listener is not None:
                listener.close()
        self.native.warm_loop_stop()  # the spare sees the end of its socket and exits

    def remove_build_if_unused(self) -> None:
        """Superseded: remove our build's folder when no call of it runs (the launcher's prune, done by the last
        user instead, since our lock kept the prune from doing it)."""
        if not self.superseded():
            return
        try:
            fcntl.flock(self.in_use_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # converts our shared lock
        except OSError:
            return  # a call of this build is running: the next unpack's prune removes it
        lock = os.open(os.path.join(self.cache_dir, ".lock"), os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            # Under the cache's lock, which every launcher takes before it unpacks, and the build's exclusive
            # in-use lock, which a launcher needs before it runs anything: nobody can find the folder half-removed,
            # so it is removed in place (a rename would show a .tmp- folder meanwhile).
            fcntl.flock(lock, fcntl.LOCK_EX)
            shutil.rmtree(self.build_dir, ignore_errors=True)
        finally:
            os.close(lock)


def _hold_context_lock(path: str) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _sweep_stale(warm_dir: str) -> None:
    """Remove the socket and lock of warm processes that died without cleaning up (killed)."""
    for name in os.listdir(warm_dir):
        if name.startswith("w") and name.endswith(".lock"):
            fd = _hold_context_lock(os.path.join(warm_dir, name))
            if fd is None:
                continue
            for path in (name, name[:-5] + ".sock", name[:-5] + ".stat"):
                try:
                    os.unlink(os.path.join(warm_dir, path))
                except OSError:
                    pass
            os.close(fd)


def serve(args: list[str], preload: Callable[[], None], run: Callable[[list[str]], int]) -> int:
    """``cni-suite warm-server IDLE LOCKFD READYFD``: preload, listen, tell the launcher, serve, exit."""
    if not getattr(sys, "frozen", False) or os.geteuid() != 0:
        sys.stderr.write("cni-suite warm-server: started by the launcher of an installed build only\n")
        return 2
    os.environ.pop("LD_BIND_NOW", None)  # the launcher's (warm.h: warm_spawn), done with once the loader bound all
    idle, in_use_fd, ready_fd = float(args[0]), int(args[1]), int(args[2])
    build_dir = os.path.dirname(sys.executable)
    os.set_inheritable(in_use_fd, False)
    import _cni_suite  # type: ignore[import-not-found]

    server = Server(build_dir, idle, in_use_fd, run, _cni_suite)
    _sweep_stale(server.warm_dir)
    lock = _hold_context_lock(server.path(".lock"))
    if lock is None:
        return 0  # another warm process of this build and context exists (or is starting)
    preload()
    if len(os.listdir("/proc/self/task")) != 1:
        # The loop's fork (warm_loop.h) runs no at-fork hook because no other thread can hold a lock: a preloaded
        # module that started one breaks that. Calls exec meanwhile (the launcher sees no socket).
        sys.stderr.write("cni-suite warm-server: a preloaded module started a thread; not serving\n")
        return 2
    # What the preload made lives as long as this process: out of the collector's sight, a child's collections
    # never walk (and so never copy) the tens of thousands of objects it shares with us (fork + exit: -10%).
    gc.freeze()
    server.listen()
    try:
        os.write(ready_fd, b"R")
    except OSError:
        pass  # an "auto" launcher did not wait
    finally:
        try:
            os.close(ready_fd)
        except OSError:
            pass
    try:
        server.loop()
    finally:
        server.close()
        os.close(lock)
    server.remove_build_if_unused()
    return 0
