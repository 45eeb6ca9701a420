"""``cni-suite warm-server``: the build's warm process (:mod:`cni_common.warm.server`), preloaded with the suite.

This module knows what a plugin call needs, which the library may not: it imports every plugin module and the
library modules they import lazily (a lazy import saves an exec'd call time; in a warm child it would cost it
again) and has pyroute2 compile its message tables, then serves calls by running :func:`plugins.multicall.main`
in a child per call. That is all it does before serving, and both depend on code only: nothing a call computes
(configs, the netfilter backend, a store) is made here, so no state can outlive a call or go stale when a config
changes.
"""

from __future__ import annotations

import importlib
import os
import sys

from cni_common.warm import server
from plugins import multicall

#: Standard-library modules the plugins import inside functions.
STDLIB = ("typing", "ipaddress", "json", "subprocess", "shlex", "tempfile", "traceback", "signal", "struct",
          "socket", "fcntl", "stat", "errno", "select", "hashlib", "secrets", "random", "uuid",
          "enum", "importlib.util", "base64", "http.client", "ssl", "urllib.parse",
          "encodings.ascii")  # sysctl writes open files with encoding="ascii": the codec module loads on first use
#: Packages whose every module is imported, but :data:`SKIP`.
PACKAGES = ("cni_common", "ipam", "plugins")
#: The modules (and packages) no CNI call imports, so not preloaded: each is memory whose page tables every call's
#: fork copies and every call's exit unmaps, ~0.03 ms per MiB on this VM (docs/packaging.md). The modes'
#: (``multicall.MODES``: they never run in a warm child), and the whole pyroute2 package they pulled in, took 9.4 of
#: the warm process's 23.6 MiB.
#: tests/unit/test_warm_parts.py checks that these are exactly the modules no plugin's call can import.
SKIP = ("cni_common.bundle.arches", "cni_common.bundle.clibs", "cni_common.bundle.cross",  # the build
        "cni_common.bundle.oci_archive", "cni_common.bundle.pack", "cni_common.bundle.release",
        "cni_common.bundle.sysroot",
        "cni_common.warm", "plugins.warm", "plugins.__main__",  # the warm path itself, the program's entry
        "cni_common.inspect", "plugins.install", "cni_common.kubeapi",  # the modes: inspect, install,
        "cni_common.dhcp.daemon", "cni_common.dhcp.lease", "cni_common.dhcp.routes",  # the DHCP daemon,
        "cni_common.dhcp.store", "cni_common.overlay.agent", "cni_common.overlay.metrics")  # the vxlan agent


def package_modules(root: str) -> dict[str, str]:
    """Every module of :data:`PACKAGES` under ``root``, dotted name -> its file (``.pyc`` in a bundle, ``.py`` in a
    source tree), in a stable order."""
    modules: dict[str, str] = {}
    for package in PACKAGES:
        for folder, dirs, files in os.walk(os.path.join(root, package)):
            dirs[:] = sorted(name for name in dirs if name != "__pycache__")  # a source tree's caches, not modules
            prefix = os.path.relpath(folder, root).replace(os.sep, ".")
            for file in sorted(files):
                stem, ext = os.path.splitext(file)
                if ext not in (".py", ".pyc") or stem.startswith("."):
                    continue
                modules.setdefault(prefix if stem == "__init__" else f"{prefix}.{stem}", os.path.join(folder, file))
    return modules


def suite_modules(root: str) -> list[str]:
    """The dotted names of :func:`package_modules`, but :data:`SKIP`."""
    return [name for name in package_modules(root) if not name.startswith(SKIP)]


def preload() -> None:
    """Import what calls will need (a module that fails to import is left to the call that needs it), and let
    pyroute2 compile its message tables (they depend only on its code).

    pyroute2's message classes come first, loaded as a call loads them (``pyroute2_light``: its package without
    its ``__init__``); a plain import of one of their modules would run that ``__init__``, which imports every
    pyroute2 subsystem (asyncio among them): ~3 MiB more for every fork to copy."""
    from cni_common.netlink import pyroute2_light

    for message in pyroute2_light.MODULES:
        pyroute2_light.message_class(message)
    root = sys.path[0] if sys.path else ""
    for name in (*STDLIB, *multicall.PLUGINS.values(), *suite_modules(root)):
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - e.g. an optional dependency absent: that call imports it itself
            continue
    multicall.register_in_process_delegates()
    from cni_common.netlink import msg

    msg.compile_tables()  # pyroute2 compiles a class's attribute tables on its first message: once here, not per call


def run(argv: list[str]) -> int:
    """One call in a warm child, as the program would run it (the dispatcher, then the plugin)."""
    return multicall.main(list(argv))


def main(args: list[str]) -> int:
    """The mode's entry: ``warm-server IDLE LOCKFD READYFD`` (the launcher's arguments)."""
    return server.serve(args, preload, run)
