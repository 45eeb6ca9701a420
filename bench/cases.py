"""The measurements: VERSION per plugin, chain and pair ADD+DEL cycles, and the 50-pod burst.

Every case runs ours and Go in the same run, alternating sample by sample so that a noisy neighbour on the
shared machine hurts both alike. Each side has its own "host" namespace (bridge, rules), its own IPAM dataDir
and libcni cache, and drives the plugins through libcni (tests/bin/cnitool) the way a runtime does.
A side that fails is reported in the row's notes; the other side's figures still count.
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from bench import confs
from bench.lab import Lab
from bench.leaks import leftovers, result_addresses
from bench.measure import TimedNetns, WarmCpu, run_measured
from bench.stats import Usage, median_usage, total_usage
from bench.table import Goal, Row
from tests.helpers import paths
from tests.helpers.cnitool import Cnitool, ToolResult
from tests.helpers.netns import Netns

VERSION_GOAL = (Goal("ours", 0.020),)
CHAIN_GOALS = (Goal("wall_ratio", 1.0), Goal("cpu_ratio", 2.0))
BURST_GOALS = (Goal("wall_ratio", 2.0),)


class CaseFailed(Exception):
    """A plugin call of one side failed; the message is the driver's error, shortened."""


@dataclass
class Side:
    """One implementation under test: its CNI_PATH, host namespace, dataDir and libcni dirs."""

    label: str
    cni_path: Path
    host: Netns
    workdir: Path
    cnitool: Path
    env: dict[str, str] = field(default_factory=dict)
    nsenter: bool = False
    warm: Optional[WarmCpu] = None
    timed: TimedNetns = field(init=False)

    def __post_init__(self) -> None:
        self.timed = TimedNetns(self.host, self.env, self.nsenter, self.warm)
        self.workdir.mkdir(parents=True, exist_ok=True)

    @property
    def data_dir(self) -> Path:
        return self.workdir / "ipam"

    def tool(self) -> Cnitool:
        """A libcni driver for this side; its conf and cache dirs are the same for every call."""
        return Cnitool(self.cnitool, self.timed, self.workdir, self.cni_path)  # type: ignore[arg-type]

    def call(self, verb: str, net: str, ctr: Netns, cid: str, cap_args: Optional[dict[str, Any]] = None
             ) -> tuple[ToolResult, Usage]:
        """One measured driver call; raises CaseFailed when it fails."""
        res = self.tool().run(verb, net, ctr, container_id=cid, cap_args=cap_args, timeout=120)
        if res.rc != 0:
            raise CaseFailed(f"{self.label} {verb}: {short_error(res)}")
        return res, self.timed.last_usage()

    def cycle(self, net: str, ctr: Netns, cid: str, cap_args: Optional[dict[str, Any]] = None,
              per_verb: bool = True) -> dict[str, Usage]:
        """ADD then DEL of one pod, back to back as a runtime runs them: "ADD+DEL" (both walls, all CPU) and, with
        ``per_verb``, "ADD" and "DEL". Reading a warm meter between the two would delay the DEL (`WarmCpu`), so
        with one the per-verb CPU comes from a second cycle of the same pod, metered call by call, whose walls
        are dropped."""
        with self.timed.back_to_back() as warm_spent:
            _, add = self.call("add", net, ctr, cid, cap_args)
            _, delete = self.call("del", net, ctr, cid, cap_args)
        figures = {"ADD+DEL": Usage(add.wall + delete.wall, add.cpu + delete.cpu + warm_spent[0])}
        if per_verb and self.warm is not None:
            add_cpu = self.call("add", net, ctr, cid, cap_args)[1].cpu
            delete_cpu = self.call("del", net, ctr, cid, cap_args)[1].cpu
            add, delete = Usage(add.wall, add_cpu), Usage(delete.wall, delete_cpu)
        if per_verb:
            figures.update({"ADD": add, "DEL": delete})
        return figures


def short_error(res: ToolResult) -> str:
    """The driver's error, on one line, at most 100 characters."""
    text = res.out.get("error", "") if isinstance(res.out, dict) else str(res.out or res.stderr)
    text = " ".join(text.split())
    return text[:100] + ("…" if len(text) > 100 else "")


def log(message: str) -> None:
    """Progress goes to stderr; stdout is the table."""
    print(message, file=sys.stderr, flush=True)


def version_rows(sides: list[Side], n: int) -> list[Row]:
    """VERSION of each plugin, exec'd directly with libcni's stdin; median of `n` (VERSION touches no kernel)."""
    rows = []
    stdin = f'{{"cniVersion":"{confs.CNI_VERSION}"}}'.encode()
    ours_side, go_side = sides
    ours_dir, go_dir = ours_side.cni_path, go_side.cni_path
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CNI_COMMAND": "VERSION", **ours_side.env}
    for plugin in paths.OUR_PLUGINS:
        binaries = {"ours": ours_dir / plugin, "go": go_dir / plugin}
        if not binaries["go"].exists():
            del binaries["go"]  # upstream has no vxlan plugin; v1.1.1 has no dummy and tap
        samples: dict[str, list[Usage]] = {k: [] for k in binaries}
        errors = []
        for binary in binaries.values():  # warm-up: a new build of ours unpacks itself on its first call
            run_measured([str(binary)], env=env, stdin=stdin)
        for _ in range(n):
            for side, binary in binaries.items():
                proc, usage = run_measured([str(binary)], env=env, stdin=stdin)
                if proc.returncode != 0:
                    errors.append(f"{side} rc={proc.returncode}")
                    continue
                samples[side].append(usage)
        ours = median_usage(samples["ours"]) if samples["ours"] else None
        go = median_usage(samples["go"]) if samples.get("go") else None
        rows.append(Row(f"VERSION {plugin} (median of {n})", "ms",
                        ours.wall if ours else None, go.wall if go else None,
                        ours.cpu if ours else None, go.cpu if go else None, VERSION_GOAL,
                        "; ".join(sorted(set(errors))) or ("no Go twin" if "go" not in binaries else "")))
    return rows


def cycle_rows(lab: Lab, sides: list[Side], title: str, net: str,
               conflist: Callable[[Path], dict[str, Any]], cap_args: Optional[dict[str, Any]], n: int,
               goals: tuple[Goal, ...]) -> list[Row]:
    """ADD then DEL of one pod, `n` times per side after one warm-up cycle; rows ADD, DEL and ADD+DEL.

    Each side has its own pod namespace: a side whose DEL failed must not spoil the other's next ADD.
    """
    pods = {side.label: lab.netns("pod") for side in sides}
    samples: dict[str, dict[str, list[Usage]]] = {s.label: {"ADD": [], "DEL": [], "ADD+DEL": []} for s in sides}
    failed: dict[str, str] = {}
    for side in sides:
        side.tool().write_conflist(conflist(side.data_dir))
    for i in range(n + 1):
        for side in sides:
            if side.label in failed:
                continue
            cid = f"cntb-{net}-{i}"
            ctr = pods[side.label]
            try:
                cycle = side.cycle(net, ctr, cid, cap_args)
            except CaseFailed as exc:
                failed[side.label] = str(exc)
                _best_effort_del(side, net, ctr, cid, cap_args)
                continue
            if i:  # cycle 0 warms up: creates the bridge, unpacks our bundle, fills caches
                for verb, usage in cycle.items():
                    samples[side.label][verb].append(usage)
    for ctr in pods.values():
        lab.remove(ctr)
    note = "; ".join(failed.values())
    rows = []
    for verb in ("ADD", "DEL", "ADD+DEL"):
        figures = {}
        for side in sides:
            series = samples[side.label][verb]
            figures[side.label] = median_usage(series) if series else None
        ours, go = figures.get("ours"), figures.get("Go")
        rows.append(Row(f"{title} {verb} (median of {n})", "ms", ours.wall if ours else None,
                        go.wall if go else None, ours.cpu if ours else None, go.cpu if go else None,
                        goals if verb == "ADD+DEL" else (), note if verb == "ADD+DEL" else ""))
    return rows


def _best_effort_del(side: Side, net: str, ctr: Netns, cid: str, cap_args: Optional[dict[str, Any]]) -> None:
    try:
        side.call("del", net, ctr, cid, cap_args)
    except CaseFailed:
        pass


@dataclass
class BurstOutcome:
    """What one side's burst did: wall of each phase, summed CPU, failures, distinctness, left-overs."""

    add: Usage
    delete: Usage
    failures: list[str]
    distinct: bool
    left: str
    while_up: str


def burst(lab: Lab, side: Side, pods: int) -> BurstOutcome:
    """`pods` chain ADDs at once, then `pods` DELs at once, each pod with its own host port."""
    net = confs.CHAIN_NET
    side.tool().write_conflist(confs.chain_conflist(side.data_dir))
    namespaces = [lab.netns("burst", lo_up=False) for _ in range(pods)]
    ids = [f"cntb-burst-{i}" for i in range(pods)]
    caps = [confs.port_mappings(confs.burst_port(i)) for i in range(pods)]
    failures: list[str] = []
    addresses: list[str] = []

    def add(i: int) -> Usage:
        try:
            res, usage = side.call("add", net, namespaces[i], ids[i], caps[i])
        except CaseFailed as exc:
            failures.append(str(exc))
            return Usage(0.0, 0.0)
        addresses.extend(result_addresses(res.out))
        return usage

    def delete(i: int) -> Usage:
        try:
            return side.call("del", net, namespaces[i], ids[i], caps[i])[1]
        except CaseFailed as exc:
            failures.append(str(exc))
            return Usage(0.0, 0.0)

    def state() -> str:
        """The left-over counters, run while the pods are up too: proof that they see what a DEL must remove."""
        return leftovers(side.host, side.data_dir / net, len(side.tool().cache_files()), addresses + ids).describe()

    phases = []
    while_up = ""
    warm, side.timed.warm = side.timed.warm, None  # concurrent calls' warm CPU is counted per phase, not per call
    try:
        with ThreadPoolExecutor(max_workers=pods) as pool:
            for action in (add, delete):
                warm_before = warm.total() if warm else 0.0
                start = time.perf_counter()
                usages = list(pool.map(action, range(pods)))
                wall = time.perf_counter() - start
                warm_cpu = max(0.0, warm.total() - warm_before) if warm else 0.0
                phases.append(Usage(wall, total_usage(usages).cpu + warm_cpu))
                if action is add:
                    while_up = state()
    finally:
        side.timed.warm = warm
    left = state()
    for ns in namespaces:
        lab.remove(ns)
    return BurstOutcome(phases[0], phases[1], failures, len(addresses) == len(set(addresses)), left, while_up)


def burst_rows(lab: Lab, sides: list[Side], pods: int) -> list[Row]:
    """Rows for the burst: ADD phase, DEL phase, both (wall = total elapsed, CPU = sum over all calls)."""
    outcomes = {}
    for side in sides:
        log(f"burst of {pods} pods: {side.label}")
        outcomes[side.label] = burst(lab, side, pods)
    notes = []
    for label, out in outcomes.items():
        ok = pods * 2 - len(out.failures)
        text = (f"{label}: {ok}/{pods * 2} calls ok, {'addresses distinct' if out.distinct else 'DUPLICATE addresses'}, "
                f"after DEL {out.left} (while up the same counters saw {out.while_up.removeprefix('LEFT: ')})")
        if out.failures:
            text += f" (first error: {out.failures[0]})"
        notes.append(text)
    rows = []
    for phase in ("ADD", "DEL", "ADD+DEL"):
        figures = {}
        for label, out in outcomes.items():
            figures[label] = {"ADD": out.add, "DEL": out.delete, "ADD+DEL": out.add + out.delete}[phase]
            if out.failures:
                figures[label] = None
        ours, go = figures.get("ours"), figures.get("Go")
        last = phase == "ADD+DEL"
        rows.append(Row(f"{pods}-pod burst, chain, {phase} (total)", "s", ours.wall if ours else None,
                        go.wall if go else None, ours.cpu if ours else None, go.cpu if go else None,
                        BURST_GOALS if last else (), "; ".join(notes) if last else ""))
    return rows
