"""Entry script of the frozen program (PyInstaller's script), kept outside the packages' directories.

Run as a script, a module's own directory goes first on ``sys.path``; from ``cni_common/`` that would let
``cni_common/types.py`` shadow the standard library's ``types``. This folder holds no such name.

Before the plugin runs, the environment is given back the shape the runtime gave it: PyInstaller's bootloader
adds ``_PYI_*`` variables and points ``LD_LIBRARY_PATH`` at the bundle's libraries, and every child would
inherit them. A delegate that is another build of this suite would then take itself for a child of this
process's bootloader, and ``iptables``/``nft`` would load the bundle's copies of system libraries. The dynamic
linker of this process read ``LD_LIBRARY_PATH`` at start, so our own extension modules still find theirs.
"""

import os
import sys


def restore_runtime_environment(environ=os.environ) -> None:
    """Drop the bootloader's variables and put ``LD_LIBRARY_PATH`` back as it was before it (or remove it)."""
    for name in [n for n in environ if n.startswith("_PYI_")]:
        del environ[name]
    original = environ.pop("LD_LIBRARY_PATH_ORIG", None)
    if original is not None:
        environ["LD_LIBRARY_PATH"] = original
    else:
        environ.pop("LD_LIBRARY_PATH", None)


if getattr(sys, "frozen", False):
    restore_runtime_environment()

from cni_common.multicall import main  # noqa: E402 - after the environment is restored

sys.exit(main())
