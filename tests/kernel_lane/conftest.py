"""The kernel lane's tests (see tests/helpers/kernel_lane.py): a module boots Debian's kernel once for its cases.

Not a skip when the lane is missing: like every tier, it fails under CI=true (.ci/setup makes the lane).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from tests.helpers import kernel_lane
from tests.helpers.skip import require_dist, skip_or_fail


@pytest.fixture(scope="module")
def lane_batch(tmp_path_factory: pytest.TempPathFactory) -> Callable[[], kernel_lane.LaneBatch]:
    """Factory of the module's batch: checks the lane, dist/ and cnitool first."""
    def make() -> kernel_lane.LaneBatch:
        reason = kernel_lane.unavailable()
        if reason:
            skip_or_fail(reason)
        require_dist()
        from tests.helpers import paths
        paths.build_cnitool()
        return kernel_lane.LaneBatch(Path(tmp_path_factory.mktemp("lane")))
    return make
