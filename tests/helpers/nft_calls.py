"""The ``nft`` commands the netfilter code runs, seen by the tests that count them (flatness: no listing, no
echo)."""

from __future__ import annotations

from typing import Any

import pytest

from cni_common.netfilter import runner


def count_nft(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Every nft command the code runs from now on (each still runs)."""
    seen: list[list[str]] = []
    real = runner.run

    def counting(argv: list[str], stdin: str = "") -> Any:
        if argv[0] == "nft":
            seen.append(argv)
        return real(argv, stdin)

    monkeypatch.setattr(runner, "run", counting)
    return seen
