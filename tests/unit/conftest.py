"""Fixtures the unit tests share."""

from __future__ import annotations

import pytest

from tests.helpers import inprocess


@pytest.fixture
def no_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process plugin calls stop where they would change the kernel (they run in the machine's own
    namespace): a module opts in with ``pytestmark = pytest.mark.usefixtures("no_kernel")``."""
    inprocess.install_guard(monkeypatch)
