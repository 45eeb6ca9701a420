"""Entry script of the frozen program (PyInstaller's script), kept outside the packages' directories.

Run as a script, a module's own directory goes first on ``sys.path``; from ``cni_common/`` that would let
``cni_common/types.py`` shadow the standard library's ``types``. This folder holds no such name.
"""

import sys

from cni_common.multicall import main

sys.exit(main())
