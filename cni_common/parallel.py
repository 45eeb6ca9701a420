"""Independent slow steps of one call, run at the same time.

Why: most of a plugin call's wall time is spent waiting, not computing: for the kernel to delete a veth (it
waits for RCU grace periods), or for ``iptables-restore``/``ip6tables-restore`` to run. The IPv4 and IPv6 tables
are separate kernel objects changed by separate execs, and a container's masquerade rules do not depend on
its veth, so those waits can overlap. A thread per step is enough: every one of them blocks outside the
interpreter (in a syscall or waiting for a child), where the GIL is released.

A thread starts in the network namespace of the thread that starts it and keeps it (``setns`` changes only the
calling thread): start a :class:`Task` that acts on the host while the caller is in the host's namespace.
"""

from __future__ import annotations

import threading

from .errors import CNIError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~4 ms per plugin process)
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable


class Task:
    """``action(*args)`` running on a thread from construction on; :meth:`wait` returns once it has finished
    and raises what it raised."""

    def __init__(self, action: Callable[..., None], *args: Any) -> None:
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(action, *args), daemon=True)
        self._thread.start()

    def _run(self, action: Callable[..., None], *args: Any) -> None:
        try:
            action(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread, which decides
            self._error = exc

    def wait(self) -> None:
        self._thread.join()
        if self._error is not None:
            raise self._error


def for_each(items: Iterable[Any], action: Callable[[Any], None], what: str) -> None:
    """``action(item)`` for every item (none of them None) at once, the first one on the calling thread.

    Every action runs to its end; CNI failures are reported together as one error saying ``what`` failed
    (the first one's code), anything else (a bug) is raised as it is.
    """
    first, *others = list(items) or [None]
    if first is None:
        return
    tasks = [Task(action, item) for item in others]
    errors: list[CNIError] = []
    try:
        action(first)
    except CNIError as exc:
        errors.append(exc)
    for task in tasks:
        try:
            task.wait()
        except CNIError as exc:
            errors.append(exc)
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise CNIError(errors[0].code, f"failed to {what}", "; ".join(str(e) for e in errors))
