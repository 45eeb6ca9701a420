"""The plugins of this build that a delegating plugin may run in its own process (see :mod:`cni_common.invoke`).

The library knows no plugin: the program's dispatcher (``plugins/multicall.py``), which does, registers them
here before it runs a plugin, and :func:`cni_common.invoke.delegate` asks here. Each entry is a loader, so a
plugin's module is imported only when a delegation runs it. Nothing is imported here: the dispatcher fills
this on every plugin call.

An IPAM registered here also answers a question the CNI protocol has no verb for: "which addresses do you hold
for this attachment" (:func:`cni_common.invoke.held_addresses`, asked by a DEL without ``prevResult``), so that
no other module reads an IPAM's files.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~4 ms per plugin process)
if TYPE_CHECKING:
    from typing import Callable, Optional

    from .skel import CmdArgs
    from .types import IPAddress

    HeldAddresses = Callable[[CmdArgs], list[IPAddress]]

_LOADERS: dict[str, Callable[[], Callable[..., int]]] = {}
_HELD_LOADERS: dict[str, Callable[[], HeldAddresses]] = {}


def register(plugin_type: str, load_main: Callable[[], Callable[..., int]],
             load_held: Optional[Callable[[], HeldAddresses]] = None) -> None:
    """``load_main()`` returns the ``main`` of ``plugin_type``, one that accepts ``environ``, ``stdin``,
    ``stdout`` and ``stderr`` keywords in place of the process's own. ``load_held()`` (IPAM only) returns the
    function that answers, for a request's ``CmdArgs``, the addresses the attachment holds."""
    _LOADERS[plugin_type] = load_main
    if load_held is not None:
        _HELD_LOADERS[plugin_type] = load_held


def loader_of(plugin_type: str) -> Optional[Callable[[], Callable[..., int]]]:
    """What returns the ``main`` of ``plugin_type`` (importing it), or None when it cannot run in-process."""
    return _LOADERS.get(plugin_type)


def held_loader_of(plugin_type: str) -> Optional[Callable[[], HeldAddresses]]:
    """What returns IPAM ``plugin_type``'s "addresses held" answer (importing it), or None when this build has
    none for that type."""
    return _HELD_LOADERS.get(plugin_type)
