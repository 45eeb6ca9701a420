"""pyroute2's rtnetlink message classes, loaded without pyroute2's package ``__init__`` and its heavy config.

Why: the suite encodes and decodes rtnetlink messages with pyroute2's classes (``ifinfmsg``, ``ifaddrmsg``,
``rtmsg``, ``ndmsg``) but carries them on its own plain socket (:mod:`.conn`). A plain ``import pyroute2`` runs
the package ``__init__``, which imports IPRoute, NDB (sqlite3), conntrack, nftables, asyncio... (~150 ms per
process); and ``pyroute2.config`` imports ``multiprocessing`` and ``platform`` and calls ``uname()`` (~7-10 ms)
only to be read once by ``ifinfmsg`` for three values. So :func:`message_class` loads each class on first use
(a caller needing only ``rtmsg`` does not pay for ``ifinfmsg`` and its link-kind plugins), and the first time:

1. registers the ``pyroute2`` package object from its import spec without executing its ``__init__`` (submodule
   imports then find it in ``sys.modules`` and only need its ``__path__``);
2. while a message module is imported, puts a stand-in ``pyroute2.config`` in ``sys.modules`` holding what
   ``ifinfmsg`` reads from it at import time (``AF_BRIDGE``, ``data_plugins_pkgs``, ``data_plugins_path``), then
   takes it out again so that a later ``import pyroute2.config`` in the process gets the real one;
3. likewise a stand-in ``logging`` (unless the real one is already loaded): pyroute2's modules only call
   ``logging.getLogger(name)`` at import time and ``.error``/``.warning``/``.debug`` on decoding problems, and
   the standard ``logging`` costs ~7 ms per plugin process. The stand-in sends those lines to
   :mod:`cni_common.log`; the modules keep it, and a later ``import logging`` gets the real one. ``traceback``
   (~4 ms with ``tokenize`` and ``textwrap``) and ``pkgutil`` get stand-ins that import the real module when
   first used (see :data:`_STAND_INS`).

What it depends on (pyroute2 0.9.7, pinned in setup.cfg; tests/unit/test_pyroute2_light.py fails loudly when
any of it changes): the module paths of the four classes; ``pyroute2.config`` being read by them only at import
time and only for the three names above; ``logging`` used by them only as above, ``traceback`` only on error
paths and ``pkgutil`` only for data plugin paths; no module on that path needing anything run by
``pyroute2/__init__``.
If pyroute2 was already imported normally in this process, the real modules are used as they are.
PyInstaller cannot see these imports: cni_common/bundle/cni-suite.spec lists them as hidden imports.
"""

from __future__ import annotations

import sys
from types import ModuleType

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing before pyroute2 does
if TYPE_CHECKING:
    from typing import Any, Callable

PYROUTE2_VERSION = "0.9.7"
#: Class name -> module holding it.
MODULES = {
    "ifinfmsg": "pyroute2.netlink.rtnl.ifinfmsg",
    "ifaddrmsg": "pyroute2.netlink.rtnl.ifaddrmsg",
    "rtmsg": "pyroute2.netlink.rtnl.rtmsg",
    "ndmsg": "pyroute2.netlink.rtnl.ndmsg",
    "tcmsg": "cni_common.netlink.tcmsg",  # ours, on pyroute2's base classes (see that module)
    "fibmsg": "pyroute2.netlink.rtnl.fibmsg",
}
_AF_BRIDGE = 7
_loaded: dict[str, type] = {}


def message_class(name: str) -> type:
    """pyroute2's message class ``name`` (a key of :data:`MODULES`), imported on first use."""
    cls = _loaded.get(name)
    if cls is None:
        cls = _loaded[name] = _load(name)
    return cls


def register_package() -> ModuleType:
    """The ``pyroute2`` package object, registered without running its ``__init__`` (which imports every
    pyroute2 subsystem; the single file does not even carry most of them): submodules import from it as usual."""
    import importlib.util

    if "pyroute2" not in sys.modules:
        spec = importlib.util.find_spec("pyroute2")
        if spec is None:
            raise ImportError("pyroute2 is not installed")
        sys.modules["pyroute2"] = importlib.util.module_from_spec(spec)
    return sys.modules["pyroute2"]


def _load(name: str) -> type:
    import importlib

    package = register_package()
    stand_in = None
    if "pyroute2.config" not in sys.modules:
        stand_in = ModuleType("pyroute2.config")
        stand_in.AF_BRIDGE = _AF_BRIDGE  # type: ignore[attr-defined]
        stand_in.data_plugins_pkgs = []  # type: ignore[attr-defined]
        stand_in.data_plugins_path = []  # type: ignore[attr-defined]
        sys.modules["pyroute2.config"] = package.config = stand_in  # type: ignore[attr-defined]
    stand_ins = {module: make() for module, make in _STAND_INS.items() if module not in sys.modules}
    sys.modules.update(stand_ins)
    try:
        return getattr(importlib.import_module(MODULES[name]), name)
    finally:
        if stand_in is not None:
            del sys.modules["pyroute2.config"], package.config
        for module_name in stand_ins:
            del sys.modules[module_name]


def _deferred(name: str) -> Callable[[], ModuleType]:
    """A maker of a stand-in for the standard module ``name`` that imports the real one on first attribute
    use: pyroute2's message modules call ``traceback`` only on decoding errors, and ``pkgutil`` only for
    the data plugin paths the stand-in config leaves empty."""
    def make() -> ModuleType:
        module = ModuleType(name)

        def __getattr__(attr: str) -> Any:  # noqa: N807 - a module's own __getattr__ (PEP 562)
            if sys.modules.get(name) is module:  # still loading: the real module must not be asked for now
                raise AttributeError(attr)
            import importlib

            return getattr(importlib.import_module(name), attr)

        module.__getattr__ = __getattr__  # type: ignore[method-assign]
        return module

    return make


def _logging_stand_in() -> ModuleType:
    """What pyroute2's message modules use of ``logging``, backed by :mod:`cni_common.log`."""
    from ..log import get_logger

    module = ModuleType("logging")
    default = get_logger("pyroute2")
    module.getLogger = lambda name=None: get_logger(name) if name else default  # type: ignore[attr-defined]
    for level in ("debug", "info", "warning", "error"):
        setattr(module, level, getattr(default, level))
    return module


#: Standard modules pyroute2's message modules import at module level but need little or nothing of, replaced
#: while they load (unless already imported for real): ~7 ms of imports per plugin process.
_STAND_INS: dict[str, Callable[[], ModuleType]] = {
    "logging": _logging_stand_in,
    "traceback": _deferred("traceback"),
    "pkgutil": _deferred("pkgutil"),
}
