"""The pages a call writes, copied by the spare before the call arrives.

A child forked from the warm process shares its ~25 MiB of memory copy-on-write: every page the call writes
(Python writes a reference count each time it uses an object, so reading a module's function is a write) is
copied at that moment, one page fault each. A host-local call takes ~900 such faults, ~1 ms of its ~3 ms in the
child (measured: docs/packaging.md, "The warm path"). The spare (:meth:`server.Server.fork_spare`) waits idle
until its call comes, so it makes those copies itself while it waits, with ``madvise(MADV_POPULATE_WRITE)``
(Linux 5.14; on older kernels the advice is refused and the call takes its faults as before).

Which pages: the ones earlier calls wrote. A child that is told to learn reads, after it has reported its exit
(off its call's path), which pages of its private writable mappings it holds alone (``/proc/self/pagemap``:
present and exclusively mapped, i.e. copied or new since the fork) and sends their address ranges to the warm
process, which keeps their union (:class:`HotPages`). Only addresses cross calls, never contents: the copies are
of the warm process's own pages, identical to what the call would have copied itself.
"""

from __future__ import annotations

import os
import re
import struct

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable

PAGE = os.sysconf("SC_PAGE_SIZE")
#: In the top byte of a pagemap entry: bit 63 (present) and bit 56 (exclusively mapped).
_PRESENT, _EXCLUSIVE = 0x80, 0x01
#: Top byte -> 1 where the page is present and ours alone, else 0.
_OURS_ALONE = bytes(1 if (b & _PRESENT and b & _EXCLUSIVE) else 0 for b in range(256))
_RUN = re.compile(b"\x01+")
#: A range as it travels to the warm process: first page number, number of pages.
RANGE = struct.Struct("<QI")
#: At most this many ranges per report (a datagram of ~48 KiB; the rest is learned from later calls).
MAX_RANGES = 4096
#: Pages between two written runs that the spare copies too, to make one madvise of them (a syscall costs
#: about what two page copies cost).
GAP = 2
#: Ranges per native call: between two, the spare looks whether its call came (then it stops copying).
CHUNK = 64
#: The calls a warm process learns from: its first ones (it lives while calls come at least once a minute).
LEARN_CALLS = 16


def _private_writable() -> list[tuple[int, int]]:
    """(start, end) of the private writable mappings (heap, anonymous arenas, stack, libraries' data)."""
    found = []
    with open("/proc/self/maps", "rb") as f:
        for line in f.read().splitlines():
            fields = line.split()
            if len(fields) < 2 or fields[1][:2] != b"rw" or fields[1][3:4] != b"p":
                continue
            start, end = fields[0].split(b"-")
            found.append((int(start, 16), int(end, 16)))
    return found


def written_ranges() -> list[tuple[int, int]]:
    """(first page, pages) of every run of pages this process holds alone: what it wrote since its fork."""
    ranges: list[tuple[int, int]] = []
    fd = os.open("/proc/self/pagemap", os.O_RDONLY | os.O_CLOEXEC)
    try:
        for start, end in _private_writable():
            first = start // PAGE
            entries = os.pread(fd, (end - start) // PAGE * 8, first * 8)
            flags = entries[7::8].translate(_OURS_ALONE)
            ranges.extend((first + run.start(), run.end() - run.start()) for run in _RUN.finditer(flags))
    finally:
        os.close(fd)
    return ranges[:MAX_RANGES]


def encode(ranges: list[tuple[int, int]]) -> bytes:
    return b"".join(RANGE.pack(first, count) for first, count in ranges)


def decode(data: bytes) -> list[tuple[int, int]]:
    usable = len(data) - len(data) % RANGE.size
    return [RANGE.unpack_from(data, offset) for offset in range(0, usable, RANGE.size)]


class HotPages:
    """What the warm process learned: how often each page was written by the calls that reported, and the
    pages more than half of them wrote, as the ranges a spare populates.

    More than half: a page that only some plugins or verbs write (host-local's ADD, not its DEL) would cost each
    other call a copy it never uses, and a copy costs what the fault it saves costs (~1 us; measured in
    docs/packaging.md); what every call writes (the interpreter, the protocol, this package) is the gain."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled  # :func:`supported`
        self.counts: dict[int, int] = {}
        self.reports = 0
        self.pages = 0
        self.chunks: list[bytes] = []  # (address, length) pairs, native 64-bit, CHUNK per chunk

    def learning(self) -> bool:
        """Whether the next spare's call reports its pages (it then copies none ahead: what it reports must be
        what its call wrote, not what was copied for it)."""
        return self.enabled and self.reports < LEARN_CALLS

    def add(self, ranges: list[tuple[int, int]]) -> None:
        self.reports += 1
        for first, count in ranges:
            for page in range(first, first + count):
                self.counts[page] = self.counts.get(page, 0) + 1
        hot = sorted(page for page, times in self.counts.items() if 2 * times > self.reports)
        self.pages = len(hot)
        runs: list[list[int]] = []  # [first page, pages]
        for page in hot:
            if runs and page - (runs[-1][0] + runs[-1][1]) <= GAP:
                runs[-1][1] = page - runs[-1][0] + 1
            else:
                runs.append([page, 1])
        pairs = [struct.pack("=QQ", first * PAGE, count * PAGE) for first, count in runs]
        self.chunks = [b"".join(pairs[i:i + CHUNK]) for i in range(0, len(pairs), CHUNK)]


def supported() -> bool:
    """Whether this kernel populates (Linux 5.14 or later): tried on one page of our own. Without it the warm
    process neither learns nor copies, and calls take their faults as before."""
    try:
        from _cni_suite import populate as native  # type: ignore[import-not-found]

        start, _ = _private_writable()[0]
        return bool(native(struct.pack("=QQ", start, PAGE)))
    except (ImportError, OSError, IndexError):
        return False


def populate(chunks: list[bytes], call_came: Callable[[], bool]) -> None:
    """Copy the pages of ``chunks`` (:attr:`HotPages.chunks`) into this process now, until ``call_came()``: a
    call never waits for its spare's copies (what is left, it faults as it would have). A range no longer
    mapped is skipped likewise."""
    from _cni_suite import populate as native

    for chunk in chunks:
        if call_came():
            return
        native(chunk)
