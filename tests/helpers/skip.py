"""Skip-or-fail policy: a machine that can't run a tier skips it, CI never does."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import paths


def skip_or_fail(reason: str) -> None:
    """Skip here, fail under CI=true (where every tier must really run)."""
    if paths.in_ci():
        pytest.fail(f"{reason} (CI=true: not skipping)")
    pytest.skip(reason)


def require_dist() -> Path:
    """dist/ holding all our built plugins; skips (fails under CI=true) when build.sh hasn't made them yet."""
    missing = paths.missing_plugins(paths.DIST_DIR)
    if missing:
        skip_or_fail(f"plugins not built in {paths.DIST_DIR} (run ./build.sh): missing {', '.join(missing)}")
    return paths.DIST_DIR
