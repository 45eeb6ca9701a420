"""Handles on existing network namespaces, and a safe way to run code inside one.

A CNI plugin never creates a namespace: the runtime owns them. Opening a path that is missing or that is not a
network namespace raises :class:`NetNSGone`, which DEL treats as "nothing left to clean up in there".

Netlink work does not need :func:`NetNS.entered`: a netlink socket created while entered stays bound to that
namespace (see :func:`cni_common.netlink.open_conn`). ``entered()`` is for things that act on the *current*
task's namespace, such as sysctls and iptables.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
from typing import TYPE_CHECKING, Callable, Iterator

from .errors import CNIError, ErrorCode

if TYPE_CHECKING:
    import ctypes

CLONE_NEWNET = 0x40000000
#: ioctl(NS_GET_NSTYPE) = _IO(0xb7, 0x3): answers the namespace type of an nsfs fd (Linux >= 4.11).
_NS_GET_NSTYPE = 0xB703
#: The current *thread's* namespace: setns() only moves the calling thread.
_SELF_PATH = "/proc/thread-self/ns/net"


class NetNSGone(CNIError):
    """The namespace path does not exist (any more) or is not a network namespace."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(ErrorCode.UNKNOWN_CONTAINER, f"failed to open netns {path!r}: {reason}")
        self.path = path


class NetNS:
    """An open fd on an existing network namespace; close it with ``with`` or :meth:`close`."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = _open_netns_fd(path)

    @classmethod
    def if_present(cls, path: str) -> NetNS | None:
        """The namespace at ``path``, or None when there is none (empty, gone, or not a network namespace):
        what a DEL finds when the runtime removed the container first, and takes as nothing left to do."""
        if not path:
            return None
        try:
            return cls(path)
        except NetNSGone:
            return None

    @classmethod
    def current(cls) -> NetNS:
        """The namespace the calling thread is in now (the host side, for a plugin)."""
        return cls(_SELF_PATH)

    def close(self) -> None:
        """Release the fd (idempotent)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> NetNS:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"NetNS({self.path!r}, fd={self.fd})"

    def entered(self) -> contextlib.AbstractContextManager[None]:
        """Run the ``with`` body inside this namespace, then switch back (see :func:`_entered`)."""
        return _entered(self.fd, self.path)


@contextlib.contextmanager
def scratch() -> Iterator[NetNS]:
    """A new, empty network namespace that no path names, gone when the ``with`` ends (its last fd closes).

    host-device renames a device in one of these (upstream v1.6.0+, #1073): renaming it in the host raced
    with udev and NetworkManager, renaming it in the container could clash with a name there. The namespace
    is made by a short-lived thread (unshare acts on the calling thread only), so the caller never leaves its own.
    """
    import threading

    made: list[NetNS | OSError] = []

    def make() -> None:
        try:
            _unshare_net()
            made.append(NetNS.current())
        except OSError as exc:
            made.append(exc)

    worker = threading.Thread(target=make, name="scratch-netns")
    worker.start()
    worker.join()
    ns = made[0]
    if isinstance(ns, OSError):
        raise CNIError(ErrorCode.INTERNAL, f"failed to create a temporary netns: {ns.strerror}") from ns
    with ns:
        yield ns


def _unshare_net() -> None:
    """unshare(CLONE_NEWNET) for the calling thread: ``os.unshare`` (Python 3.12), else the frozen program's
    built-in, else libc through ctypes (as :func:`_setns`)."""
    native: Callable[[int], None] | None = _native("unshare")
    if native is not None:
        native(CLONE_NEWNET)
        return
    import ctypes

    if _libc().unshare(CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@contextlib.contextmanager
def _entered(fd: int, path: str) -> Iterator[None]:
    """Switch the calling thread into the namespace ``fd``, run the ``with`` body, switch back.

    If switching back fails the process is left in the wrong namespace, where any further step (iptables, IPAM,
    printing a result that the runtime trusts) would be wrong; so it logs and exits at once.
    """
    orig = os.open(_SELF_PATH, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(fd)
        try:
            yield
        finally:
            try:
                _setns(orig)
            except OSError as exc:  # pragma: no cover - cannot be provoked safely
                from .log import get_logger

                get_logger(__name__).error("cannot return to the original netns after %s: %s", path, exc)
                os._exit(1)
    finally:
        os.close(orig)


def _open_netns_fd(path: str) -> int:
    """Open ``path`` read-only and prove it is a network namespace, without ever creating anything."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise NetNSGone(path, "no such file") from exc
    except OSError as exc:
        raise NetNSGone(path, exc.strerror or str(exc)) from exc
    try:
        kind = _namespace_type(fd, path)
    except OSError as exc:
        os.close(fd)
        # ENOTTY/EINVAL: a plain file, e.g. a bind mount that was unmounted after the namespace died.
        reason = "not a namespace" if exc.errno in (errno.ENOTTY, errno.EINVAL) else (exc.strerror or str(exc))
        raise NetNSGone(path, reason) from exc
    if kind != CLONE_NEWNET:
        os.close(fd)
        raise NetNSGone(path, "not a network namespace")
    return fd


def _namespace_type(fd: int, path: str) -> int:
    """The CLONE_NEW* type of the namespace ``fd`` refers to; OSError ENOTTY/EINVAL when it is none.

    The kernel answers ioctl(NS_GET_NSTYPE). qemu-user does not know that ioctl and answers ENOSYS (the arm64
    files run emulated on the amd64 build machine: tests/portability/test_cross.py); then
    :func:`_namespace_type_by_setns`.
    """
    import fcntl

    try:
        return fcntl.ioctl(fd, _NS_GET_NSTYPE)
    except OSError as exc:
        if exc.errno != errno.ENOSYS:
            raise
    return _namespace_type_by_setns(fd, path)


def _namespace_type_by_setns(fd: int, path: str) -> int:
    """CLONE_NEWNET or 0, found without the ioctl: with two syscalls more, exact all the same.

    A namespace file lives on nsfs, the file system of our own /proc/thread-self/ns/net (same st_dev); and
    setns(fd, CLONE_NEWNET) succeeds only for a network namespace (the kernel checks the type: EINVAL for any
    other), so entering it and leaving at once tells net from mnt, uts... No state changes: the thread is back
    in its own namespace before this returns.
    """
    if os.fstat(fd).st_dev != os.stat(_SELF_PATH).st_dev:
        raise OSError(errno.EINVAL, "not on nsfs")
    try:
        with _entered(fd, path):
            pass
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        return 0
    return CLONE_NEWNET


def _setns(fd: int) -> None:
    """setns(fd, CLONE_NEWNET) for the calling thread.

    ``os.setns`` exists from Python 3.12 only; the frozen program's interpreter has it built in (``_cni_suite``,
    see cni_common/bundle/runner.c); elsewhere libc through ctypes, whose import costs ~5 ms.
    """
    native: Callable[[int, int], None] | None = _native("setns")
    if native is not None:
        native(fd, CLONE_NEWNET)
        return
    import ctypes

    if _libc().setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _native(name: str) -> Callable[..., None] | None:
    """``os.<name>`` where Python has it (3.12), else the frozen program's built-in (``_cni_suite``), else None."""
    function = getattr(os, name, None)
    if function is None:
        try:
            import _cni_suite  # type: ignore[import-not-found]
        except ImportError:
            return None
        function = getattr(_cni_suite, name, None)
    return function


@functools.lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL:
    import ctypes

    return ctypes.CDLL(None, use_errno=True)
