"""The linter and the type checker, as part of the suite: `.ci/run` is only the README's two commands, so the
static checks run here, where every contributor's `pytest` runs them too.

Their rules live in the repo (ruff: `pyproject.toml`; mypy: `setup.cfg`) and both tools are pinned in the
test extra. They cover the shipped code: `cni_common/`, `plugins/`, `ipam/`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHIPPED = ("cni_common", "plugins", "ipam")


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *argv], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_ruff_is_clean() -> None:
    proc = _run("ruff", "check", *SHIPPED)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy_is_clean() -> None:
    proc = _run("mypy")
    assert proc.returncode == 0, proc.stdout + proc.stderr
