"""The frozen program's script: ``runner.c`` runs this file (compiled, from the bundle) as ``__main__``.

It is also the root of PyInstaller's analysis, which decides what the bundle holds. It lives apart from the
packages' modules: a script's own directory would go first on ``sys.path`` in an ordinary run, and from
``cni_common/`` that would let ``cni_common/types.py`` shadow the standard library's ``types``.
"""

import sys

from cni_common.multicall import main

sys.exit(main())
