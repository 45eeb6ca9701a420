"""Time an ADD+DEL of a vxlan attachment against bridge + host-local on the same node, in one run.

A node namespace gets a veth "underlay" (10.123.0.1/24) and static peers (so no etcd is needed and the
numbers are the plugin's own cost); every cycle attaches a fresh pod namespace through libcni (tests/bin/cnitool)
and detaches it. Cases: our vxlan, our bridge, Go's bridge (/usr/lib/cni), each with host-local from the same
directory. Prints the median wall and CPU time (the whole cnitool -> plugin -> IPAM chain) per case.

Run from the repo root: ``.venv/bin/python bench/bench_vxlan.py [-n 20] [--source]``. Ours comes from dist/
(./build.sh); ``--source`` runs the plugins from the source tree instead (no build needed).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.lab import Lab, ensure_cnitool  # noqa: E402
from bench.measure import TimedNetns  # noqa: E402
from tests.helpers import paths  # noqa: E402
from tests.helpers.cnitool import Cnitool  # noqa: E402
from tests.helpers.netns import Netns  # noqa: E402
from tests.helpers.vxlan_lab import source_wrappers  # noqa: E402

NET = "benchnet"


def _conflist(plugin: dict[str, Any], data_dir: Path) -> dict[str, Any]:
    plugin = {**plugin, "ipam": {"type": "host-local", "dataDir": str(data_dir), **plugin.get("ipam", {})}}
    return {"cniVersion": "1.0.0", "name": NET, "plugins": [plugin]}


def _cases(tmp: Path) -> dict[str, dict[str, Any]]:
    vxlan = {"type": "vxlan", "network": "10.244.0.0/16", "nodeName": "bench",
             "peers": [{"underlayIP": "10.123.0.1", "subnet": "10.244.1.0/24"},
                       {"underlayIP": "10.123.0.2", "subnet": "10.244.2.0/24"}]}
    bridge = {"type": "bridge", "bridge": "cntxbench0", "isGateway": True,
              "ipam": {"ranges": [[{"subnet": "10.245.1.0/24"}]], "routes": [{"dst": "10.245.0.0/16"}]}}
    return {"vxlan (ours)": vxlan, "bridge (ours)": bridge, "bridge (go)": bridge}


def _node(lab: Lab) -> Netns:
    node = lab.netns("xnode")
    node.ip("link", "add", "cntxul", "type", "veth", "peer", "name", "cntxulp")  # no dummy module here
    node.ip("addr", "add", "10.123.0.1/24", "dev", "cntxul")
    node.ip("link", "set", "cntxulp", "up")
    node.ip("link", "set", "cntxul", "up")
    return node


def measure(lab: Lab, tool: Cnitool, host: TimedNetns, n: int) -> tuple[float, float]:
    """Median (wall ms, cpu ms) of ``n`` ADD+DEL cycles, each on a new pod namespace."""
    walls, cpus = [], []
    for _ in range(n):
        pod = lab.netns("xpod")
        add = tool.add(NET, pod)
        if add.rc != 0:
            raise SystemExit(f"ADD failed: {add.out} {add.stderr}")
        u_add = host.last_usage()
        delete = tool.delete(NET, pod)
        if delete.rc != 0:
            raise SystemExit(f"DEL failed: {delete.out} {delete.stderr}")
        u_del = host.last_usage()
        walls.append((u_add.wall + u_del.wall) * 1000)
        cpus.append((u_add.cpu + u_del.cpu) * 1000)
        lab.remove(pod)
    return statistics.median(walls), statistics.median(cpus)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20, help="ADD+DEL cycles per case (default 20)")
    parser.add_argument("--source", action="store_true", help="run our plugins from the source tree")
    opts = parser.parse_args()
    cnitool = ensure_cnitool()
    with Lab(tag="x") as lab:
        ours = source_wrappers(lab.tmp / "src", "vxlan", "bridge", "host-local") if opts.source else paths.DIST_DIR
        if not opts.source and paths.missing_plugins(ours):
            raise SystemExit(f"plugins missing in {ours}: run ./build.sh, or pass --source")
        host = TimedNetns(_node(lab))
        print(f"ours: {ours}   go: {paths.GO_PLUGIN_DIR}   median of {opts.n} ADD+DEL cycles")
        for title, plugin in _cases(lab.tmp).items():
            plugin_dir = paths.GO_PLUGIN_DIR if "(go)" in title else ours
            slug = title.split()[0] + ("-go" if "(go)" in title else "")
            tool = Cnitool(cnitool, host, lab.tmp / slug, plugin_dir)  # type: ignore[arg-type]
            tool.write_conflist(_conflist(plugin, lab.tmp / f"ipam-{slug}"))
            wall, cpu = measure(lab, tool, host, opts.n)
            print(f"{title:14s} wall {wall:7.1f} ms   cpu {cpu:7.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
