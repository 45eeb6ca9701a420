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
          "socket", "fcntl", "stat", "errno", "select", "hashlib", "secrets", "random", "uuid", "dataclasses",
          "enum", "importlib.util", "base64", "http.client", "ssl", "urllib.parse",
          "encodings.ascii")  # sysctl writes open files with encoding="ascii": the codec module loads on first use
#: Packages whose every module is imported, except the parts that never serve a CNI call.
PACKAGES = ("cni_common", "ipam", "plugins")
SKIP = ("cni_common.bundle", "cni_common.inspect", "cni_common.warm", "plugins.warm", "plugins.install",
        "plugins.__main__")


def suite_modules(root: str) -> list[str]:
    """The dotted names of every module of :data:`PACKAGES` under ``root`` (``.pyc`` in a bundle, ``.py`` in a
    source tree), but :data:`SKIP`."""
    names = []
    for package in PACKAGES:
        for folder, dirs, files in os.walk(os.path.join(root, package)):
            dirs.sort()
            prefix = os.path.relpath(folder, root).replace(os.sep, ".")
            for file in sorted(files):
                stem, ext = os.path.splitext(file)
                if ext not in (".py", ".pyc") or stem.startswith("."):
                    continue
                name = prefix if stem == "__init__" else f"{prefix}.{stem}"
                if not name.startswith(SKIP) and name not in names:
                    names.append(name)
    return names


def preload() -> None:
    """Import what calls will need (a module that fails to import is left to the call that needs it), and let
    pyroute2 compile its message tables (they depend only on its code)."""
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
