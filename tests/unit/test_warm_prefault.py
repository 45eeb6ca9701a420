"""What a warm process learns of the pages its calls write (cni_common.warm.prefault)."""

from __future__ import annotations

import ctypes
import os
import struct
from typing import Callable

from cni_common.warm import prefault

PAGE = prefault.PAGE


def _in_child(work: Callable[[], None]) -> list[tuple[int, int]]:
    """written_ranges() of a forked child after ``work()``, read back through a pipe."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_end)
            work()
            os.write(write_end, prefault.encode(prefault.written_ranges()))
        finally:
            os._exit(0)
    os.close(write_end)
    data = b""
    while chunk := os.read(read_end, 1 << 16):
        data += chunk
    os.close(read_end)
    os.waitpid(pid, 0)
    return prefault.decode(data)


def test_a_child_reports_the_pages_it_wrote_and_not_the_ones_it_only_shares() -> None:
    area = ctypes.create_string_buffer(64 * PAGE)
    ctypes.memset(area, 1, len(area))  # present in the parent: shared with the child after the fork
    first = (ctypes.addressof(area) + PAGE - 1) // PAGE  # the first whole page of the buffer
    written = {first + 3, first + 10, first + 11}

    def work() -> None:
        for page in written:
            ctypes.memset(page * PAGE, 2, 1)

    ranges = _in_child(work)
    reported = {page for start, count in ranges for page in range(start, start + count)}
    in_area = {page for page in reported if first <= page < first + 60}
    assert in_area == written


def test_the_hot_set_is_what_more_than_half_of_the_calls_wrote() -> None:
    hot = prefault.HotPages(enabled=True)
    assert hot.learning()
    hot.add([(100, 3)])  # pages 100-102
    hot.add([(100, 2), (200, 1)])
    hot.add([(101, 1)])
    assert hot.reports == 3 and hot.pages == 2  # 100 (2 of 3 calls) and 101 (3 of 3); 102 and 200 once
    assert _pairs(hot) == [(100 * PAGE, 2 * PAGE)]
    for _ in range(prefault.LEARN_CALLS - 3):
        hot.add([])
    assert not hot.learning()


def test_close_runs_become_one_range_and_ranges_come_in_chunks() -> None:
    hot = prefault.HotPages(enabled=True)
    pages = [10, 12, 20 + prefault.GAP + 1]  # 10 and 12: one range over the gap; the last stands alone
    hot.add([(page, 1) for page in pages])
    assert _pairs(hot) == [(10 * PAGE, 3 * PAGE), (pages[2] * PAGE, PAGE)]
    many = prefault.HotPages(enabled=True)
    many.add([(page * 10, 1) for page in range(prefault.CHUNK + 5)])
    assert [len(chunk) // 16 for chunk in many.chunks] == [prefault.CHUNK, 5]


def test_ranges_survive_their_trip() -> None:
    ranges = [(1, 2), (1 << 40, 7)]
    assert prefault.decode(prefault.encode(ranges)) == ranges
    assert prefault.decode(prefault.encode(ranges) + b"\0") == ranges  # a torn tail is dropped


def _pairs(hot: prefault.HotPages) -> list[tuple[int, int]]:
    data = b"".join(hot.chunks)
    return [struct.unpack_from("=QQ", data, offset) for offset in range(0, len(data), 16)]


def test_without_the_kernel_advice_nothing_is_learned() -> None:
    assert not prefault.HotPages(enabled=False).learning()
    assert not prefault.supported()  # outside the frozen build there is no native populate()
