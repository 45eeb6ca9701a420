"""bench.table: value formatting, goals and the rendered Markdown table."""

from __future__ import annotations

import pytest

from bench.table import Goal, Row, describe_goal, format_ratio, format_value, goal_cell, goal_met, render


@pytest.mark.parametrize("value, unit, text", [
    (0.0123, "ms", "12.3 ms"), (1.5, "ms", "1500 ms"), (12.345, "s", "12.35 s"),
    (3 * 1024 * 1024, "MiB", "3.0 MiB"), (None, "ms", "—"),
])
def test_format_value(value, unit, text) -> None:
    assert format_value(value, unit) == text


def test_unknown_unit_is_an_error() -> None:
    with pytest.raises(ValueError):
        format_value(1.0, "parsecs")


def test_format_ratio() -> None:
    assert format_ratio(2.0) == "2.00×"
    assert format_ratio(None) == "—"


def test_goals() -> None:
    row = Row("chain", "ms", ours=0.9, go=1.0, ours_cpu=2.5, go_cpu=1.0,
              goals=(Goal("wall_ratio", 1.0), Goal("cpu_ratio", 2.0)))
    assert goal_met(row.goals[0], row) is True
    assert goal_met(row.goals[1], row) is False
    assert goal_cell(row) == "wall ≤1× ✓, CPU ≤2× ✗"
    assert goal_met(Goal("ours", 0.020), Row("v", ours=0.013)) is True
    assert goal_met(Goal("wall_ratio", 1.0), Row("v", ours=0.013)) is None
    assert describe_goal(Goal("ours", 0.020), "ms") == "≤20 ms"
    assert describe_goal(Goal("wall_ratio", 4.0), "MiB") == "≤4×"
    with pytest.raises(ValueError):
        goal_met(Goal("speed", 1.0), row)


def test_render_aligns_columns_and_moves_long_notes_to_footnotes() -> None:
    rows = [Row("VERSION bridge", "ms", 0.013, 0.002, 0.012, 0.002, (Goal("ours", 0.020),), "short"),
            Row("size", "MiB", 8 * 1024 * 1024, 7 * 1024 * 1024, note="x" * 60)]
    lines = render(rows).splitlines()
    assert lines[0].startswith("| measurement")
    assert "---:" in lines[1]
    assert len({len(line) for line in lines[:4]}) == 1  # header, rule and rows have one width
    assert "6.50×" in lines[2] and "≤20 ms ✓" in lines[2] and "short" in lines[2]
    assert "[1]" in lines[3] and "1.14×" in lines[3]
    assert lines[-1] == "[1] " + "x" * 60
