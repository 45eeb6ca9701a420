"""cni_common.parallel: independent steps at once, every failure reported."""

from __future__ import annotations

import threading
import time

import pytest

from cni_common.errors import CNIError
from cni_common.parallel import Task, for_each


def test_for_each_overlaps_the_waits_and_runs_the_first_item_here():
    threads: dict[int, int] = {}

    def step(item: int) -> None:
        threads[item] = threading.get_ident()
        time.sleep(0.2)

    started = time.monotonic()
    for_each([4, 6], step, "sleep")
    assert time.monotonic() - started < 0.38  # not one after the other (0.4 s)
    assert threads[4] == threading.get_ident() != threads[6]


def test_for_each_reports_every_cni_failure_after_all_ran():
    ran: list[int] = []

    def step(item: int) -> None:
        ran.append(item)
        if item != 5:
            raise CNIError(105, f"family {item} failed")

    with pytest.raises(CNIError) as info:
        for_each([4, 5, 6], step, "change the tables")
    assert sorted(ran) == [4, 5, 6]
    assert (info.value.code, info.value.msg) == (105, "failed to change the tables")
    assert "family 4 failed" in info.value.details and "family 6 failed" in info.value.details


def test_for_each_raises_a_single_failure_as_it_is():
    def step(item: int) -> None:
        if item == 6:
            raise CNIError(7, "only v6")

    with pytest.raises(CNIError, match="only v6"):
        for_each([4, 6], step, "x")


def test_for_each_of_nothing_does_nothing():
    for_each([], lambda item: pytest.fail("called"), "x")


def test_task_hands_a_bug_to_the_waiter():
    task = Task(lambda: [][0])
    with pytest.raises(IndexError):
        task.wait()
