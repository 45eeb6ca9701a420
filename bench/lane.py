"""The link plugins this machine's kernel cannot run (dummy, ipvlan, vlan, vrf), measured in the kernel lane,
with two rows to read them by: macvlan (also measured on this kernel) and bridge + host-local (vrf's chain head).

One boot of Debian's kernel under qemu TCG (tests/helpers/kernel_lane.py, docs/kernel-lane.md) runs one case per
plugin: N ADD+DEL cycles through libcni (tests/bin/cnitool), ours and Go's interleaved cycle by cycle, after one
unmeasured warm-up cycle per side (ours unpacks itself into the VM's cache on its first call). The in-VM shell
prints one `sample SIDE ADD_NS DEL_NS` line per measured cycle (wall time from `date +%s%N`), or one
`fail SIDE VERB MESSAGE` line when a side's call fails (that side then stops). Everything runs emulated, so the
absolute times mean little; the ratio in one boot is the figure.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any, Optional

from bench.table import Row
from tests.helpers import kernel_lane

#: The budget per driver call: under TCG one takes ~1-2.5 s (more on a loaded machine, and ours unpacks itself
#: on its first call).
SECONDS_PER_CALL = 4


@dataclass(frozen=True)
class LanePlugin:
    """One plugin of the lane bench: its plugin list (ipam added per side), the shell that sets up the VM's host
    namespace, whether Go v1.1.1 has it, and a note for its ADD+DEL row."""

    title: str
    setup: str
    plugins: tuple[dict[str, Any], ...]
    go: bool = True
    note: str = ""


def _host_local(side: str, subnet: str) -> dict[str, Any]:
    return {"type": "host-local", "dataDir": f"/run/cnt-bench-ipam-{side}", "ranges": [[{"subnet": subnet}]]}


#: A veth in the lane's host namespace with its peer up beside it: the master of ipvlan, macvlan and vlan children.
_MASTER = "mkmaster $HOST cntmst0"
PLUGINS = {
    "dummy": LanePlugin("dummy+host-local", "", ({"type": "dummy"},), go=False),
    "ipvlan": LanePlugin("ipvlan+host-local", _MASTER, ({"type": "ipvlan", "master": "cntmst0", "mode": "l2"},)),
    # Calibration: macvlan runs on this machine's kernel too (the `macvlan` case): its ratio here against there
    # shows how emulation shifts a ratio (an interpreter start costs relatively more under TCG than Go's).
    "macvlan": LanePlugin("macvlan+host-local", _MASTER, ({"type": "macvlan", "master": "cntmst0", "mode": "bridge"},),
                          note="calibration: compare with the macvlan+host-local row measured on this kernel"),
    "vlan": LanePlugin("vlan+host-local", _MASTER, ({"type": "vlan", "master": "cntmst0", "vlanId": 100},)),
    "bridge": LanePlugin("bridge+host-local", "", ({"type": "bridge", "isGateway": True},),
                         note="the vrf row minus this one is what chained vrf costs"),
    "vrf": LanePlugin("bridge+host-local+vrf", "",
                      ({"type": "bridge", "isGateway": True}, {"type": "vrf", "vrfname": "cntblue"})),
}

#: The case's script (after lib.sh): N+1 cycles, ours and Go alternating; cycle 0 is the warm-up.
CYCLES = """
for side in $SIDES; do mkns cnt-$side; done
cycle() {  # cycle SIDE: ADD then DEL of net cntl-bench-SIDE in cnt-SIDE; prints ADD_NS DEL_NS
    t0=$(date +%s%N)
    cni add cntl-bench-$1 cnt-$1 >out 2>&1 || { echo "fail $1 ADD $(head -c 300 out | tr '\\n' ' ')"; return 1; }
    t1=$(date +%s%N)
    cni del cntl-bench-$1 cnt-$1 >out 2>&1 || { echo "fail $1 DEL $(head -c 300 out | tr '\\n' ' ')"; return 1; }
    t2=$(date +%s%N)
    echo "$((t1 - t0)) $((t2 - t1))"
}
failed=" "
i=0
while [ $i -le $N ]; do
    for side in $SIDES; do
        case "$failed" in *" $side "*) continue ;; esac
        [ $side = go ] && CNI_PATH=$GO || CNI_PATH=$OURS
        if line=$(cycle $side); then
            [ $i -gt 0 ] && echo "sample $side $line"
        else
            echo "$line"; failed="$failed$side "
        fi
    done
    i=$((i + 1))
done
"""


def conflist(plugin: LanePlugin, side: str, index: int) -> dict[str, Any]:
    """The network `cntl-bench-SIDE` of `plugin`: a subnet per plugin, a dataDir and a bridge name per side.
    The first plugin takes the addresses (vrf, chained, gets them from the bridge's result)."""
    plugins = [dict(p) for p in plugin.plugins]
    plugins[0]["ipam"] = _host_local(side, f"10.{80 + index}.0.0/24")
    if plugins[0]["type"] == "bridge":
        plugins[0]["bridge"] = f"cntbr{side}"
    return {"cniVersion": "1.0.0", "name": f"cntl-bench-{side}", "plugins": plugins}


@dataclass
class Samples:
    """One plugin's measured cycles per side (seconds), and the first failure of each side."""

    add: dict[str, list[float]]
    delete: dict[str, list[float]]
    failures: dict[str, str]


def parse(stdout: str) -> Samples:
    """The case's stdout (`sample SIDE ADD_NS DEL_NS` and `fail SIDE VERB MESSAGE` lines) as samples."""
    out = Samples({}, {}, {})
    for line in stdout.splitlines():
        words = line.split(maxsplit=3)
        if len(words) == 4 and words[0] == "sample":
            out.add.setdefault(words[1], []).append(int(words[2]) / 1e9)
            out.delete.setdefault(words[1], []).append(int(words[3]) / 1e9)
        elif len(words) >= 3 and words[0] == "fail":
            out.failures.setdefault(words[1], " ".join(words[2:])[:100])
    return out


def rows_for(title: str, samples: Samples, n: int, note: str = "") -> list[Row]:
    """ADD, DEL and ADD+DEL rows (wall medians; no CPU columns: the VM's time is all emulation)."""
    series = {"ADD": samples.add, "DEL": samples.delete,
              "ADD+DEL": {side: [a + d for a, d in zip(samples.add[side], samples.delete[side], strict=True)]
                          for side in samples.add}}
    notes = [f"{side}: {msg}" for side, msg in samples.failures.items()] + ([note] if note else [])
    rows = []
    for verb, by_side in series.items():
        values: dict[str, Optional[float]] = {s: median(v) if v else None for s, v in by_side.items()}
        rows.append(Row(f"lane: {title} {verb} (median of {n})", "ms", values.get("ours"), values.get("go"),
                        note="; ".join(notes) if verb == "ADD+DEL" else ""))
    return rows


def lane_rows(n: int, names: tuple[str, ...] = tuple(PLUGINS)) -> list[Row]:
    """Boot the lane once, run `n` cycles of each plugin of `names`, and return its rows (one note row when the
    lane cannot run here or the VM did not boot, so that the rest of the bench's table still prints)."""
    reason = kernel_lane.unavailable()
    if reason:
        return [Row(f"lane: {PLUGINS[name].title} ADD+DEL", note=f"not run: {reason}") for name in names]
    with tempfile.TemporaryDirectory(prefix="cnt-bench-lane-") as tmp:
        calls = 2 * 2 * (n + 1)
        batch = kernel_lane.LaneBatch(Path(tmp), case_timeout=calls * SECONDS_PER_CALL + 60,
                                      boot_timeout=len(names) * (calls * SECONDS_PER_CALL + 60) + 120)
        for index, name in enumerate(names):
            plugin = PLUGINS[name]
            sides = ("ours", "go") if plugin.go else ("ours",)
            script = f"N={n}\nSIDES='{' '.join(sides)}'\n{plugin.setup}\n{CYCLES}"
            batch.case(name, script, conflists=[conflist(plugin, side, index) for side in sides])
        try:
            results = batch.run()
        except AssertionError as exc:  # the VM never ran its cases: the other cases' rows still count
            return [Row("lane: (no boot)", note=str(exc).splitlines()[0][:200])]
        release = batch.kernel_release
    rows = []
    for name in names:
        plugin, result = PLUGINS[name], results[name]
        note = plugin.note or ("" if plugin.go else f"no Go twin: v1.1.1 has no {name}")
        if result.rc != 0:
            note = f"case rc={result.rc}: {result.stderr.strip()[-200:]}"
        rows += rows_for(plugin.title, parse(result.stdout), n, note)
    rows[-1].note = "; ".join(filter(None, (rows[-1].note, f"Debian kernel {release} under qemu TCG")))
    return rows
