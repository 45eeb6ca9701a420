"""Fixtures the unit tests share."""

from __future__ import annotations

import tempfile
from typing import Iterator

import pytest

from tests.helpers import inprocess


@pytest.fixture
def no_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process plugin calls stop where they would change the kernel (they run in the machine's own
    namespace): a module opts in with ``pytestmark = pytest.mark.usefixtures("no_kernel")``."""
    inprocess.install_guard(monkeypatch)


@pytest.fixture(scope="module")
def data_dir() -> Iterator[str]:
    """A temp dir for the files a module's generated configs may write (``dataDir``, relative paths)."""
    with tempfile.TemporaryDirectory(prefix="cnt-prop-") as path:
        yield path
