"""The one side-by-side table: each row is ours vs Go, wall and CPU, with ratios and the issue's goals.

It is printed as a Markdown table, padded so that it also reads well in a terminal, so the README's "latest
figures" section is a plain copy of a run's output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Optional, Sequence

from bench.stats import ratio

HEADERS = ("measurement", "ours", "Go", "ours/Go", "ours CPU", "Go CPU", "CPU ours/Go", "goal", "notes")
#: Which columns are numbers (right-aligned).
_NUMERIC = {1, 2, 3, 4, 5, 6}


class Goal(NamedTuple):
    """A target from issue 5: `metric` is "wall_ratio", "cpu_ratio" (ours/Go at most `limit`) or "ours"
    (our wall value at most `limit`, in the row's unit)."""

    metric: str
    limit: float


@dataclass
class Row:
    """One measurement. Times are seconds (shown as `unit` "ms" or "s"); sizes are bytes (unit "MiB").

    A side that was not measured (Go has no vxlan) or failed is None; `note` says why.
    """

    label: str
    unit: str = "ms"
    ours: Optional[float] = None
    go: Optional[float] = None
    ours_cpu: Optional[float] = None
    go_cpu: Optional[float] = None
    goals: tuple[Goal, ...] = ()
    note: str = ""

    @property
    def wall_ratio(self) -> Optional[float]:
        return ratio(self.ours, self.go)

    @property
    def cpu_ratio(self) -> Optional[float]:
        return ratio(self.ours_cpu, self.go_cpu)


def format_value(value: Optional[float], unit: str) -> str:
    """A time (seconds) or size (bytes) in the row's display unit; "—" when missing."""
    if value is None:
        return "—"
    if unit == "ms":
        scaled = value * 1000
        return f"{scaled:.1f} ms" if scaled < 1000 else f"{scaled:.0f} ms"
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "MiB":
        return f"{value / (1024 * 1024):.1f} MiB"
    raise ValueError(f"unknown unit {unit!r}")


def format_ratio(value: Optional[float]) -> str:
    """ours/Go as "1.23×"; "—" when either side is missing."""
    return "—" if value is None else f"{value:.2f}×"


def goal_met(goal: Goal, row: Row) -> Optional[bool]:
    """Whether `row` meets `goal`; None when the figures it needs are missing."""
    if goal.metric == "wall_ratio":
        value = row.wall_ratio
    elif goal.metric == "cpu_ratio":
        value = row.cpu_ratio
    elif goal.metric == "ours":
        value = row.ours
    else:
        raise ValueError(f"unknown goal metric {goal.metric!r}")
    return None if value is None else value <= goal.limit


def describe_goal(goal: Goal, unit: str) -> str:
    """Short text of a goal: "wall ≤1×", "CPU ≤2×", "≤20 ms"."""
    if goal.metric == "wall_ratio":
        return f"≤{goal.limit:g}×" if unit == "MiB" else f"wall ≤{goal.limit:g}×"
    if goal.metric == "cpu_ratio":
        return f"CPU ≤{goal.limit:g}×"
    return "≤" + format_value(goal.limit, unit).replace(".0 ", " ")


def goal_cell(row: Row) -> str:
    """All goals of a row with ✓ (met), ✗ (missed) or ? (not measurable), joined by ", "."""
    marks = {True: "✓", False: "✗", None: "?"}
    return ", ".join(f"{describe_goal(g, row.unit)} {marks[goal_met(g, row)]}" for g in row.goals)


def cells(row: Row) -> list[str]:
    """The row's cells in HEADERS order."""
    return [row.label, format_value(row.ours, row.unit), format_value(row.go, row.unit),
            format_ratio(row.wall_ratio),
            format_value(row.ours_cpu, row.unit) if row.ours_cpu is not None or row.go_cpu is not None else "",
            format_value(row.go_cpu, row.unit) if row.ours_cpu is not None or row.go_cpu is not None else "",
            format_ratio(row.cpu_ratio) if row.ours_cpu is not None or row.go_cpu is not None else "",
            goal_cell(row), row.note]


#: Notes longer than this move under the table as numbered footnotes, keeping the table narrow.
NOTE_WIDTH = 40


def render(rows: Sequence[Row]) -> str:
    """A padded Markdown table of `rows`, long notes as footnotes `[n]` below it."""
    grid = [list(HEADERS)]
    footnotes: list[str] = []
    for row in rows:
        line_cells = cells(row)
        if len(row.note) > NOTE_WIDTH:
            footnotes.append(row.note)
            line_cells[-1] = f"[{len(footnotes)}]"
        grid.append(line_cells)
    widths = [max(len(line[i]) for line in grid) for i in range(len(HEADERS))]

    def line(values: Sequence[str]) -> str:
        padded = [v.rjust(w) if i in _NUMERIC else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths))]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if i in _NUMERIC else "-" * (w + 2)
                          for i, w in enumerate(widths)) + "|"
    table = [line(grid[0]), rule] + [line(r) for r in grid[1:]]
    return "\n".join(table + ([""] if footnotes else []) + [f"[{i}] {n}" for i, n in enumerate(footnotes, 1)])
