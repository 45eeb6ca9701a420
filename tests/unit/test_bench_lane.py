"""The kernel lane bench's pure parts: the in-VM output read back into samples, rows and conflists."""

from __future__ import annotations

import pytest

from bench import lane

OUTPUT = """sample ours 2000000000 1000000000
sample go 1000000000 500000000
sample ours 4000000000 3000000000
sample go 3000000000 1500000000
fail go DEL plugin failed: no such device
"""


def test_parse_reads_samples_in_seconds_and_the_first_failure_per_side():
    got = lane.parse(OUTPUT + "fail go ADD second failure\nnoise line\n")
    assert got.add == {"ours": [2.0, 4.0], "go": [1.0, 3.0]}
    assert got.delete == {"ours": [1.0, 3.0], "go": [0.5, 1.5]}
    assert got.failures == {"go": "DEL plugin failed: no such device"}


def test_rows_are_medians_per_verb_with_failures_noted_on_the_last():
    rows = lane.rows_for("ipvlan+host-local", lane.parse(OUTPUT), 2, "extra")
    assert [r.label for r in rows] == [f"lane: ipvlan+host-local {v} (median of 2)" for v in ("ADD", "DEL", "ADD+DEL")]
    add, delete, both = rows
    assert (add.ours, add.go) == (3.0, 2.0)
    assert (delete.ours, delete.go) == (2.0, 1.0)
    assert (both.ours, both.go) == (5.0, 3.0) and both.wall_ratio == pytest.approx(5 / 3)
    assert both.ours_cpu is None and add.note == ""
    assert both.note == "go: DEL plugin failed: no such device; extra"


def test_a_side_without_samples_has_no_figure():
    rows = lane.rows_for("dummy+host-local", lane.parse("sample ours 1000 2000\n"), 1)
    assert rows[-1].ours == pytest.approx(3e-6) and rows[-1].go is None


@pytest.mark.parametrize("name", list(lane.PLUGINS))
def test_each_side_has_its_own_network_store_and_bridge(name):
    plugin = lane.PLUGINS[name]
    ours, go = (lane.conflist(plugin, side, 3) for side in ("ours", "go"))
    assert (ours["name"], go["name"]) == ("cntl-bench-ours", "cntl-bench-go")
    assert ours["plugins"][0]["ipam"]["dataDir"] != go["plugins"][0]["ipam"]["dataDir"]
    assert ours["plugins"][0]["ipam"]["ranges"] == [[{"subnet": "10.83.0.0/24"}]]
    assert [p["type"] for p in ours["plugins"]][-1] == name
    if ours["plugins"][0]["type"] == "bridge":
        assert ours["plugins"][0]["bridge"] != go["plugins"][0]["bridge"]
    assert "ipam" not in plugin.plugins[0]  # the table itself is never changed


def test_run_knows_the_lane_and_tap_cases_and_the_lane_cycles():
    from bench import run
    opts = run.parse_args(["--quick", "--cases", "tap,lane"])
    assert opts.cases == ["tap", "lane"] and opts.lane_cycles == 3
    assert run.parse_args(["--lane-cycles", "7"]).lane_cycles == 7
    assert run.parse_args([]).lane_cycles == 10


def test_without_the_lane_each_plugin_gets_a_note_row(monkeypatch):
    monkeypatch.setattr(lane.kernel_lane, "unavailable", lambda: "qemu missing")
    rows = lane.lane_rows(3)
    assert [r.note for r in rows] == ["not run: qemu missing"] * len(lane.PLUGINS)
    assert all(r.ours is None and r.go is None for r in rows)
