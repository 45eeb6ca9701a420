"""``python -m cni_common.inspect``: the inspect mode from the source tree (the tutorial uses this form)."""

import sys

from . import main

sys.exit(main())
