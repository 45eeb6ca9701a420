"""`python -m bench.run [--quick]`: measure ours against the Go plugins in one run and print one table.

Must run as root (it creates network namespaces, never touching the root one). See bench/README.md for what
each row means. Progress goes to stderr, the report (machine, inputs, table) to stdout.
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys

from bench import cases, confs, cross, footprint, lane, machine, scale, warm
from bench.lab import Lab, ensure_cnitool, install_ours
from bench.measure import WarmCpu
from bench.table import Row, render
from tests.helpers import paths
from tests.helpers import warm as warm_path

CASES = ("version", "chain", "pair", "tuning-firewall", "bandwidth", "ptp", "loopback", "static", "macvlan", "hostdev",
         "sbr", "burst", "footprint", "cross", "alone", "pods", "tap", "lane")


def go_version() -> str:
    """The Debian package version of the Go plugins (they don't report it themselves)."""
    proc = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "containernetworking-plugins"],
                          capture_output=True, text=True)
    return proc.stdout.strip() or "unknown version"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples: about a minute in all")
    parser.add_argument("-n", type=int, help="ADD+DEL cycles per side (default 20, quick 5)")
    parser.add_argument("--versions", type=int, help="VERSION execs per plugin and side (default 50, quick 10)")
    parser.add_argument("--pods", type=int, help="pods in the burst (default 50, quick 20)")
    parser.add_argument("--lane-cycles", type=int,
                        help="ADD+DEL cycles per side in the kernel lane (default 10, quick 3)")
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated subset of {','.join(CASES)}")
    parser.add_argument("--warm", choices=("on", "off", "auto"), default="on",
                        help="our warm path (CNI_SUITE_WARM; docs/packaging.md), default on")
    parser.add_argument("--driver", choices=("nsenter", "ip-netns-exec"), default="nsenter",
                        help="how the driver enters the host namespace: nsenter --net, as a runtime calls plugins "
                             "from one context (default), or ip netns exec, a mount namespace per call")
    opts = parser.parse_args(argv)
    opts.n = opts.n or (5 if opts.quick else 20)
    opts.versions = opts.versions or (10 if opts.quick else 50)
    opts.pods = opts.pods or (20 if opts.quick else 50)
    opts.lane_cycles = opts.lane_cycles or (3 if opts.quick else 10)
    opts.cases = [c.strip() for c in opts.cases.split(",") if c.strip()]
    unknown = set(opts.cases) - set(CASES)
    if unknown:
        parser.error(f"unknown case(s): {', '.join(sorted(unknown))}")
    return opts


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(sys.argv[1:] if argv is None else argv)
    cnitool = ensure_cnitool()
    load = os.getloadavg()
    rows: list[Row] = []
    with Lab() as lab:
        ours_dir = install_ours(lab.tmp / "opt-cni-bin")
        dist = footprint.dist_sizes(paths.DIST_DIR)
        go_dir = paths.GO_PLUGIN_DIR
        build = footprint.bundle_digest(ours_dir / "bridge")[:12]
        # A private unpack cache: another build started on this machine meanwhile would otherwise replace
        # the shared one under our feet (docs/packaging.md: an unpack removes other builds' folders).
        suite_cache = lab.tmp / "suite-cache"
        suite_cache.mkdir(mode=0o700)
        nsenter = opts.driver == "nsenter"
        warm_env = {"CNI_SUITE_WARM": opts.warm, "CNI_SUITE_WARM_IDLE": "600"}
        sides = [cases.Side("ours", ours_dir, lab.netns("host"), lab.tmp / "ours", cnitool,
                            {"CNI_SUITE_CACHE_DIR": str(suite_cache), **warm_env}, nsenter,
                            WarmCpu(str(suite_cache)) if opts.warm != "off" else None),
                 cases.Side("Go", go_dir, lab.netns("host"), lab.tmp / "go", cnitool, nsenter=nsenter)]
        if "version" in opts.cases:
            cases.log("VERSION")
            rows += cases.version_rows(sides, opts.versions)
        if "chain" in opts.cases:
            cases.log("chain bridge + host-local + portmap")
            rows += cases.cycle_rows(lab, sides, "chain bridge+host-local+portmap", confs.CHAIN_NET,
                                     confs.chain_conflist, confs.port_mappings(confs.CHAIN_PORT), opts.n,
                                     cases.CHAIN_GOALS)
        if "pair" in opts.cases:
            cases.log("pair bridge + host-local")
            rows += cases.cycle_rows(lab, sides, "pair bridge+host-local", confs.PAIR_NET, confs.pair_conflist,
                                     None, opts.n, ())
        if "tuning-firewall" in opts.cases:
            cases.log("pair + firewall + tuning")
            rows += cases.cycle_rows(lab, sides, "pair+firewall+tuning", confs.TUNING_FIREWALL_NET,
                                     confs.tuning_firewall_conflist, None, opts.n, ())
        if "bandwidth" in opts.cases:
            cases.log("bridge + host-local + bandwidth")
            rows += cases.cycle_rows(lab, sides, "bridge+host-local+bandwidth", confs.BANDWIDTH_NET,
                                     confs.bandwidth_conflist, None, opts.n, ())
        for case, title, net, conflist in (
                ("ptp", "ptp+host-local", confs.PTP_NET, confs.ptp_conflist),
                ("loopback", "loopback", confs.LOOPBACK_NET, confs.loopback_conflist),
                ("static", "static", confs.STATIC_NET, confs.static_conflist)):
            if case in opts.cases:
                cases.log(title)
                rows += cases.cycle_rows(lab, sides, title, net, conflist, None, opts.n, ())
        if "macvlan" in opts.cases:
            cases.log("macvlan + host-local")
            for side in sides:
                side.host.ip("link", "add", confs.MACVLAN_MASTER, "type", "veth", "peer", "name", "cntbm1")
                for name in (confs.MACVLAN_MASTER, "cntbm1"):
                    side.host.ip("link", "set", name, "up")
            rows += cases.cycle_rows(lab, sides, "macvlan+host-local", confs.MACVLAN_NET, confs.macvlan_conflist,
                                     None, opts.n, ())
        if "hostdev" in opts.cases:
            cases.log("host-device + host-local")
            for side in sides:
                side.host.ip("link", "add", confs.HOSTDEV_DEVICE, "type", "veth", "peer", "name", "cntbd1")
                side.host.ip("link", "set", "cntbd1", "up")
            rows += cases.cycle_rows(lab, sides, "host-device+host-local", confs.HOSTDEV_NET, confs.hostdev_conflist,
                                     None, opts.n, ())
        if "sbr" in opts.cases:
            cases.log("bridge + host-local + sbr")
            rows += cases.cycle_rows(lab, sides, "pair+sbr", confs.SBR_NET, confs.sbr_conflist, None, opts.n, ())
        if "tap" in opts.cases:
            cases.log("tap + host-local (ours alone: Go v1.1.1 has no tap)")
            tap_rows = cases.cycle_rows(lab, sides[:1], "tap+host-local", confs.TAP_NET, confs.tap_conflist, None,
                                        opts.n, ())
            tap_rows[-1].note = tap_rows[-1].note or "no Go twin: v1.1.1 has no tap"
            rows += tap_rows
        if "burst" in opts.cases:
            rows += cases.burst_rows(lab, sides, opts.pods)
        if "footprint" in opts.cases:
            rows += footprint.footprint_rows(dist, ours_dir, go_dir, suite_cache)
        if "cross" in opts.cases:
            rows += cross.cross_rows(lab, cnitool, opts.n)
        if "lane" in opts.cases:
            cases.log(f"kernel lane: {', '.join(lane.PLUGINS)} in one boot of Debian's kernel under qemu TCG")
            rows += lane.lane_rows(opts.lane_cycles)
        if "alone" in opts.cases:
            cases.log("host-local alone")
            rows += warm.alone_rows(ours_dir / "host-local", lab.tmp / "alone", suite_cache, opts.n)
        if "pods" in opts.cases:
            ours_env = {"CNI_SUITE_CACHE_DIR": str(suite_cache), **warm_env}
            meter = WarmCpu(str(suite_cache)) if opts.warm != "off" else None
            variants = [(f"ours {kind}", cases.Side("ours", ours_dir, lab.netns(f"h{kind[:3]}"),
                                                    lab.tmp / f"pods-{kind}", cnitool, ours_env, nsenter, meter),
                         kind == "nftables") for kind in ("nftables", "iptables")]
            variants.append(("Go iptables", cases.Side("Go", go_dir, lab.netns("hgo"), lab.tmp / "pods-go", cnitool,
                                                       nsenter=nsenter), False))
            rows += scale.scale_rows(lab, variants, max(3, opts.n // 4))
        warm_path.stop_warm_processes(str(suite_cache))  # they would keep the lab's host namespace alive
    print(f"cni-suite bench, {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}"
          f"{' (--quick)' if opts.quick else ''}")
    print(f"machine: {machine.describe()}; load average at the start {load[0]:.2f}, at the end "
          f"{os.getloadavg()[0]:.2f} (other work on the machine inflates wall times)")
    print(f"ours: dist/ via `./build.sh install` (build {build})"
          f"; Go: {paths.GO_PLUGIN_DIR} (containernetworking-plugins {go_version()})")
    print("driver: libcni 1.1.2 (tests/bin/cnitool) in a throwaway host netns per side; "
          "ratios are ours/Go; wall = elapsed, CPU = user+sys of all processes of the call\n")
    print(render(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
