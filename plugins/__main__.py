"""The suite's program: ``python -m plugins <type>`` from a source tree, and the frozen program's script.

``runner.c`` runs this file (compiled, from the bundle) as ``__main__``; it is also the root of PyInstaller's
analysis, which decides what the bundle holds. It is a script of the ``plugins`` package, the layer that knows
every plugin, and not of ``cni_common``: the library imports no plugin, and a script run from ``cni_common/``
would put that folder first on ``sys.path`` in an ordinary run, where ``cni_common/types.py`` would shadow the
standard library's ``types``.
"""

import sys

from plugins.multicall import main

sys.exit(main())
