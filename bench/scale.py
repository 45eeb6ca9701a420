"""The chain's cost as pods accumulate: ADD+DEL of one more pod with 0, 100 and 300 pods already attached, ours
with the nftables backends and with the iptables ones, beside Go v1.1.1 (iptables: it has no nftables backend).

Each variant has its host namespace; the resident pods are ADDed (unmeasured, four at a time) with the chain
config and a host port each, so every pod has its masquerade and DNAT rules, as on a busy node. At each count,
`n` cycles ADD then DEL one more pod, the variants interleaved sample by sample. The residents go with the lab's
namespaces. What a call does in proportion to other pods' state shows as the growth from 0 to 300 pods.
"""

from __future__ import annotations

import concurrent.futures
from pathlib import Path
from typing import Any

from bench import confs
from bench.cases import CaseFailed, Side, log
from bench.lab import Lab
from bench.stats import Usage, median_usage
from bench.table import Row
from cni_common.netfilter import handles
from cni_common.netns import NetNS

COUNTS = (0, 100, 300)
FLAT_GOAL = 1.2  # issue 20: 300 pods cost at most 1.2x an empty node (nftables backends)


def nft_conflist(data_dir: Path) -> dict[str, Any]:
    """The chain config with both plugins on their nftables layouts."""
    conf = confs.chain_conflist(data_dir)
    conf["plugins"][0]["ipMasqBackend"] = "nftables"
    conf["plugins"][1]["backend"] = "nftables"
    return conf


def _resident(side: Side, lab: Lab, index: int) -> None:
    ctr = lab.netns("res")
    side.call("add", confs.CHAIN_NET, ctr, f"cntb-res-{index}", confs.port_mappings(confs.burst_port(index)))


def scale_rows(lab: Lab, variants: list[tuple[str, Side, bool]], n: int) -> list[Row]:
    """`variants`: (label, side, nftables?) with a host namespace each; rows per count and variant."""
    for _, side, nft in variants:
        side.tool().write_conflist((nft_conflist if nft else confs.chain_conflist)(side.data_dir))
    walls: dict[str, dict[int, Usage]] = {label: {} for label, _, _ in variants}
    failed: dict[str, str] = {}
    resident = 0
    probe = {label: lab.netns("probe") for label, _, _ in variants}
    for count in COUNTS:
        log(f"pods curve: {count} resident pods")
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            for label, side, _ in variants:
                if label in failed:
                    continue
                try:
                    list(pool.map(lambda i, s=side: _resident(s, lab, i), range(resident, count)))
                except CaseFailed as exc:
                    failed[label] = str(exc)
        resident = count
        samples: dict[str, list[Usage]] = {label: [] for label, _, _ in variants}
        for i in range(n + 1):
            for label, side, _ in variants:
                if label in failed:
                    continue
                cid = f"cntb-probe-{count}-{i}"
                cap = confs.port_mappings(confs.CHAIN_PORT)
                try:
                    both = side.cycle(confs.CHAIN_NET, probe[label], cid, cap, per_verb=False)["ADD+DEL"]
                except CaseFailed as exc:
                    failed[label] = str(exc)
                    continue
                if i:
                    samples[label].append(both)
        for label in samples:
            if samples[label]:
                walls[label][count] = median_usage(samples[label])
    for _, side, nft in variants:  # the lab deletes the namespaces without DELs: drop the nft handle records
        if nft:
            with NetNS(side.host.path) as handle, handle.entered():
                handles.forget_namespace()
    rows = []
    go = next((label for label, _, _ in variants if label.startswith("Go")), None)
    for label, _, _ in variants:
        if go is None or label == go:
            continue
        for count in COUNTS:
            ours, theirs = walls[label].get(count), walls[go].get(count)
            rows.append(Row(f"chain ADD+DEL, {count} pods on the node: {label} vs {go}", "ms",
                            ours.wall if ours else None, theirs.wall if theirs else None,
                            ours.cpu if ours else None, theirs.cpu if theirs else None,
                            note="; ".join(failed.values()) if count == COUNTS[-1] else ""))
    growth = []
    for label, _, nft in variants:
        first, last = walls[label].get(COUNTS[0]), walls[label].get(COUNTS[-1])
        if first and last:
            goal = f" (goal ≤{FLAT_GOAL}×)" if nft else ""
            growth.append(f"{label} {last.wall / first.wall:.2f}×{goal}")
    rows.append(Row(f"growth {COUNTS[0]} → {COUNTS[-1]} pods, wall", "ms", note=", ".join(growth)))
    return rows
