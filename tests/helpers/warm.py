"""The warm-path switch of the test run, passed on to the plugins the tests exec.

The helpers give plugins a minimal environment (PATH and the CNI variables), so ``CNI_SUITE_WARM=on|off|auto``
set on the test run would not reach the launcher; these helpers add it, so the same test files run the plugins
with the warm path forced on and forced off (docs/packaging.md, "The warm path").
"""

from __future__ import annotations

import os

SWITCHES = ("CNI_SUITE_WARM", "CNI_SUITE_WARM_IDLE")


def passthrough() -> dict[str, str]:
    """The warm-path variables of this test run, to add to a plugin's environment."""
    return {name: os.environ[name] for name in SWITCHES if os.environ.get(name)}
