"""Upgrade under load, in figures: libcni ADD/DEL calls while the plugins are replaced under them.

Three runs of the same load (default 200 calls from 4 pods at once, bridge + host-local + portmap, through
tests/bin/cnitool; the scenario is tests/helpers/upgrade_load.py, also asserted by
tests/binary/test_install_upgrade.py):
- **no upgrade**: the calls alone (the baseline latency);
- **cni-suite install**: 20 installs alternating between two builds (this build and a repacked one);
- **cp -f**: the same 20 switches done as flannel's init container does them (``cp -f`` over each name): the
  way that makes "text file busy" and half-written files, for contrast.
The Go plugins have no installer, so there is no Go column: the baseline row is the comparison.

Run from the repo root as root: ``.venv/bin/python bench/bench_install_upgrade.py [--calls 200] [--installs 20]``.
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.lab import Lab, ensure_cnitool
from bench.measure import TimedNetns
from tests.helpers import paths
from tests.helpers import warm as warm_path
from tests.helpers.builds import two_builds
from tests.helpers.cnitool import Cnitool
from tests.helpers.upgrade_load import PLUGIN_TYPES, UpgradeFigures, upgrade_under_load

NET = "cnt-upgrade"


def template(data_dir: Path) -> dict:
    return {"cniVersion": "1.0.0", "name": NET, "plugins": [
        {"type": "bridge", "bridge": "cntbup0", "isGateway": True,
         "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.97.0.0/24"}]], "dataDir": str(data_dir)}},
        {"type": "portmap", "capabilities": {"portMappings": True}}]}


def run_case(lab: Lab, name: str, builds: tuple[Path, Path], use_cp: bool, calls: int,
             installs: int, warm: str = "off") -> UpgradeFigures:
    """`calls` calls while `installs` switches run (by the installer, or by `cp -f` when `use_cp`)."""
    root = lab.tmp / name
    bin_dir, conf_dir, cache = root / "bin", root / "net.d", root / "cache"
    cache.mkdir(mode=0o700, parents=True)
    tpl = root / "template.json"
    tpl.write_text(json.dumps(template(root / "ipam")))

    def install(build: Path) -> None:
        env = {"PATH": os.defpath, "CNI_SUITE_CACHE_DIR": str(build.parent / "installer-cache")}
        subprocess.run([str(build), "install", "--bin-dir", str(bin_dir), "--conf-dir", str(conf_dir),
                        "--conflist", str(tpl), "--conflist-name", f"{NET}.conflist", "--log-level", "warning"],
                       env=env, check=True, timeout=120)

    install(builds[0])
    host = lab.netns("uphost")
    # With the warm path, the driver enters the host namespace as a runtime calls plugins (nsenter: one context,
    # so the calls reach the warm process of each build; docs/packaging.md).
    driver = TimedNetns(host, nsenter=True) if warm != "off" else host
    tool = Cnitool(ensure_cnitool(), driver, root / "cnitool", bin_dir,  # type: ignore[arg-type]
                   extra_env={"CNI_SUITE_CACHE_DIR": str(cache), "CNI_SUITE_WARM": warm})
    tool.conf_dir = conf_dir
    pods = [lab.netns("uppod") for _ in range(4)]
    switch: Callable[[Path], None] = (lambda b: cp_f(b, bin_dir)) if use_cp else install
    figures = upgrade_under_load(tool, NET, pods, switch, builds, bin_dir, cache, calls=calls, installs=installs)
    warm_path.stop_warm_processes(str(cache))  # they would keep the host namespace alive
    for pod in pods:
        lab.remove(pod)
    lab.remove(host)
    return figures


def cp_f(build: Path, bin_dir: Path) -> None:
    """flannel's way: ``cp -f`` over each plugin name (truncate-and-write, or unlink-and-create when busy)."""
    for name in PLUGIN_TYPES:
        subprocess.run(["cp", "-f", str(build), str(bin_dir / name)], capture_output=True, timeout=60)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--installs", type=int, default=20)
    parser.add_argument("--warm", choices=("on", "off", "auto"), default="off",
                        help="our warm path (CNI_SUITE_WARM) for the calls; default off")
    opts = parser.parse_args()
    load_start = os.getloadavg()[0]
    with Lab(tag="u") as lab:
        builds = two_builds(lab.tmp / "builds", paths.DIST_DIR / "bridge")
        rows = {
            "no upgrade": run_case(lab, "none", builds, False, opts.calls, 0, opts.warm),
            f"{opts.installs} × cni-suite install": run_case(lab, "ours", builds, False, opts.calls, opts.installs,
                                                             opts.warm),
            f"{opts.installs} × cp -f (flannel's way)": run_case(lab, "cp", builds, True, opts.calls, opts.installs,
                                                                 opts.warm),
        }
    keys = ["calls", "failed calls", "text file busy", "partial files seen", "file samples", "call median ms",
            "call p95 ms", "install median ms", "max builds in cache", "wall s"]
    print("| case | " + " | ".join(keys) + " |")
    print("|---|" + "---:|" * len(keys))
    for name, fig in rows.items():
        summary = fig.summary()
        print(f"| {name} | " + " | ".join(str(summary.get(k, "")) for k in keys) + " |")
    print(f"\nload average {load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end (2 cores: the latencies "
          "are inflated by other work; the counts are what matters)")
    for name, fig in rows.items():
        for what, items in (("failed call", fig.failed), ("partial file", fig.partial_files)):
            if items:
                print(f"- {name}, first {what}: {' '.join(items[0].split())[:300]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
