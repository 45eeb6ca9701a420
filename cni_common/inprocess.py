"""The plugins of this build that a delegating plugin may run in its own process (see :mod:`cni_common.invoke`).

The library knows no plugin: the program's dispatcher (``plugins/multicall.py``), which does, registers them
here before it runs a plugin, and :func:`cni_common.invoke.delegate` asks here. Each entry is a loader, so a
plugin's module is imported only when a delegation runs it. Nothing is imported here: the dispatcher fills
this on every plugin call.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~4 ms per plugin process)
if TYPE_CHECKING:
    from typing import Callable, Optional

_LOADERS: dict[str, Callable[[], Callable[..., int]]] = {}


def register(plugin_type: str, load_main: Callable[[], Callable[..., int]]) -> None:
    """``load_main()`` returns the ``main`` of ``plugin_type``, one that accepts ``environ``, ``stdin``,
    ``stdout`` and ``stderr`` keywords in place of the process's own."""
    _LOADERS[plugin_type] = load_main


def loader_of(plugin_type: str) -> Optional[Callable[[], Callable[..., int]]]:
    """What returns the ``main`` of ``plugin_type`` (importing it), or None when it cannot run in-process."""
    return _LOADERS.get(plugin_type)
