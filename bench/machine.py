"""Describe the machine a run happened on (CPU model, cores, kernel, Python), for the table's header.

Figures from a 2-core VM shared with other work are not comparable with a laptop's; the header says which.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model(cpuinfo_text: str) -> str:
    """The first `model name` of /proc/cpuinfo text ("unknown CPU" when absent, e.g. on some ARM kernels)."""
    for line in cpuinfo_text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("model name", "Model", "cpu model") and value.strip():
            return value.strip()
    return "unknown CPU"


def mem_total_gib(meminfo_text: str) -> float:
    """MemTotal of /proc/meminfo text, in GiB (0.0 when absent)."""
    for line in meminfo_text.splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / (1024 * 1024)
    return 0.0


def describe() -> str:
    """One line: CPU model, cores (usable by this process), memory, kernel, Python version."""
    cpuinfo = _read("/proc/cpuinfo")
    meminfo = _read("/proc/meminfo")
    cores = len(os.sched_getaffinity(0))
    return (f"{cpu_model(cpuinfo)}, {cores} cores, {mem_total_gib(meminfo):.1f} GiB, "
            f"kernel {platform.release()}, Python {platform.python_version()}")


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""
