"""Skip-or-fail policy: a machine that can't run a tier skips it, CI never does."""

from __future__ import annotations

import pytest

from tests.helpers.paths import in_ci


def skip_or_fail(reason: str) -> None:
    """Skip here, fail under CI=true (where every tier must really run)."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: not skipping)")
    pytest.skip(reason)
