"""The attachment ADD's waits for kernel state (host veth oper-up, IPv6 DAD; cni_common.ifconfig): check at
once, then after 1 ms, doubling up to 50 ms apart, until the budget is spent (upstream sleeps 50 ms before its
first re-check)."""

from __future__ import annotations

import pytest

from cni_common import ifconfig


@pytest.fixture
def clock(monkeypatch):
    """A fake monotonic clock advanced only by the recorded sleeps."""
    state = {"now": 0.0, "pauses": []}

    def sleep(seconds: float) -> None:
        state["pauses"].append(seconds)
        state["now"] += seconds

    monkeypatch.setattr(ifconfig.time, "sleep", sleep)
    monkeypatch.setattr(ifconfig.time, "monotonic", lambda: state["now"])
    return state


def test_ready_at_once_does_not_sleep(clock):
    assert ifconfig.wait_until(lambda: True, 1.0)
    assert clock["pauses"] == []


def test_pauses_double_from_one_millisecond_up_to_fifty(clock):
    answers = iter([False] * 8 + [True])
    assert ifconfig.wait_until(lambda: next(answers), 5.0)
    assert clock["pauses"] == [0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.05, 0.05]


def test_gives_up_after_the_budget(clock):
    assert not ifconfig.wait_until(lambda: False, 0.5)
    assert 0.5 <= clock["now"] < 0.5 + ifconfig.MAX_PAUSE + 1e-9
