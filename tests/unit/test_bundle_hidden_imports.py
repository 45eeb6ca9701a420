"""The bundle collects every pyroute2 message module the netlink layer loads by name: PyInstaller cannot see
those imports, and a missing one fails only in the built file (the sbr rules' ``fibmsg`` did, in CHECK)."""

from __future__ import annotations

import pytest

from cni_common.netlink.pyroute2_light import MODULES
from tests.helpers import paths

pytestmark = pytest.mark.unit


def test_every_message_module_is_a_hidden_import():
    spec = (paths.REPO / "cni_common" / "bundle" / "cni-suite.spec").read_text()
    missing = [module for module in MODULES.values() if f'"{module}"' not in spec]
    assert missing == [], f"add to hiddenimports in cni-suite.spec: {missing}"
