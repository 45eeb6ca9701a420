"""bench.stats and bench.machine: medians, sums, ratios, /proc parsing."""

from __future__ import annotations

import pytest

from bench.machine import cpu_model, mem_total_gib
from bench.stats import Usage, median_usage, ratio, total_usage


def test_median_takes_wall_and_cpu_independently() -> None:
    samples = [Usage(3.0, 0.1), Usage(1.0, 0.3), Usage(2.0, 0.2), Usage(10.0, 0.0)]
    assert median_usage(samples) == Usage(2.5, 0.15000000000000002)


def test_median_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError):
        median_usage([])


def test_total_and_addition() -> None:
    assert total_usage([Usage(1.0, 0.5), Usage(2.0, 0.25)]) == Usage(3.0, 0.75)
    assert total_usage([]) == Usage(0.0, 0.0)
    assert Usage(1.0, 1.0) + Usage(0.5, 0.5) == Usage(1.5, 1.5)


@pytest.mark.parametrize("ours, theirs, expected", [(2.0, 1.0, 2.0), (None, 1.0, None), (1.0, None, None),
                                                    (1.0, 0.0, None)])
def test_ratio(ours, theirs, expected) -> None:
    assert ratio(ours, theirs) == expected


def test_cpu_model_and_memory_parsing() -> None:
    cpuinfo = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\nprocessor\t: 1\n"
    assert cpu_model(cpuinfo) == "AMD EPYC 7B13"
    assert cpu_model("processor : 0\n") == "unknown CPU"
    assert mem_total_gib("MemTotal:       2097152 kB\nMemFree: 1 kB\n") == 2.0
    assert mem_total_gib("") == 0.0
