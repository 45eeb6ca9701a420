"""The vxlan overlay at scale and under faults: N simulated nodes, each with its agent and a pod, on a 3-member
etcd; convergence, cost per node, churn, and 60 s etcd outages, measured (issue 14).

Each node is a network namespace on a test underlay (a bridge in another namespace), runs ``vxlan agent``
from the source tree and gets one pod through libcni (tests/bin/cnitool). etcd's three members run inside the
underlay namespace on test addresses (10.123.0.251-253), so "client port dropped" is an iptables rule inside
each node's namespace. Every node runs ``ip -ts monitor route neigh``: its timestamps tell when each peer's
neighbour, FDB entry (a bridge-family neighbour) and route appeared or went, so nothing is polled.

Phases (``--phases``, all by default):
- ``join``: nodes join one by one; for each, the time from its agent's start to the last of the three entries
  on every other node; the cost (agent CPU and RSS, etcd requests/s) idle at N = 3, 12 and N; etcd requests per
  join; ADD time on the node that joined last;
- ``leave``: 5 nodes leave (agent stopped, namespace gone) and come back: the time to their removal everywhere;
- ``churn``: ``--churn`` join/leave events (new names: new subnets) while the pods of nodes 1-3 ping each other;
  at the end every node's entries equal the live set exactly, every liveness record is a live node's, and
  every pod's address is in its own node's subnet;
- ``outages``: etcd unavailable for ``--outage`` s, three ways (members killed then restarted; frozen with
  SIGSTOP then SIGCONT; client port dropped by the nodes), every pod pinging the next node's: lost pings,
  withdrawn entries, an ADD during the outage, the time until every agent re-published.

Run as root from the repo root: ``.venv/bin/python -m bench.bench_vxlan_scale [--nodes 24]`` (~15 min at 24).
Prints a Markdown table (progress on stderr).
"""

from __future__ import annotations

import argparse
import base64
import datetime
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.lab import Lab as BenchLab
from bench.lab import ensure_cnitool
from tests.helpers import net
from tests.helpers.etcd import EtcdCluster, store_conf
from tests.helpers.overlay_watch import observe
from tests.helpers.vxlan_lab import NET_NAME, Cluster, Lab, Node, source_bin_dir

PREFIX = "/cnt-x/scale"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


class Scale:
    """The simulated cluster: nodes, agents, monitors, pods."""

    def __init__(self, bench: BenchLab, ttl: int) -> None:
        self.lab = Lab(bench.pool).up()
        self.tmp = bench.tmp
        self.etcd = EtcdCluster(self.lab.underlay, [self.lab.bridge_address(n) for n in (251, 252, 253)]).start()
        self.cluster = Cluster(self.lab, ensure_cnitool(), source_bin_dir(self.tmp / "bin"), self.tmp, bench.pool)
        self.store = store_conf(self.etcd, leaseTTL=ttl, prefix=PREFIX)
        self.ttl = ttl
        self.agents: dict[str, subprocess.Popen] = {}
        self.monitors: dict[str, tuple[subprocess.Popen, Path]] = {}
        self.info: dict[str, dict[str, str]] = {}  # node -> subnet, gateway, mac, underlay

    # -- nodes -------------------------------------------------------------------------------------------
    def join(self, n: int) -> tuple[Node, float]:
        node = self.lab.add_node(n)
        out = self.tmp / f"monitor-{node.name}.log"
        self.monitors[node.name] = (subprocess.Popen(["ip", "-n", node.ns.name, "-ts", "monitor", "route", "neigh"],
                                                     stdout=open(out, "ab"), stderr=subprocess.DEVNULL), out)
        self.cluster.configure(node, store=self.store)
        time.sleep(0.2)
        start = time.time()
        log = open(self.tmp / f"agent-{node.name}.log", "ab")
        conf = self.cluster.tools[node.name].conf_dir / f"{NET_NAME}.conflist"
        self.agents[node.name] = node.ns.popen([str(self.cluster.bin_dir / "vxlan"), "agent", "--conf", str(conf)],
                                               stdout=log, stderr=subprocess.STDOUT)
        return node, start

    def wait_info(self, node: Node, patience: float = 60) -> dict[str, str]:
        deadline = time.monotonic() + patience
        while time.monotonic() < deadline:
            dev = net.link(node.ns, "cnivx.1")
            addrs = net.ip_addresses(node.ns, "cnivx.1") if dev else []
            if dev and addrs:
                gw = addrs[0].split("/")[0]
                info = {"subnet": gw.rsplit(".", 1)[0] + ".0/24", "gateway": gw, "mac": dev["address"],
                        "underlay": node.underlay_ip}
                self.info[node.name] = info
                return info
            time.sleep(0.1)
        raise RuntimeError(f"{node.name} never set up its device")

    def add_pod(self, node: Node) -> tuple[Any, float]:
        start = time.monotonic()
        ctr = self.cluster.add_container(node)
        return ctr, time.monotonic() - start

    def leave(self, node: Node) -> float:
        """The node goes away (agent stopped, namespace and links gone); returns the wall time of the leave."""
        proc = self.agents.pop(node.name)
        proc.terminate()
        proc.wait(timeout=30)
        mon, _ = self.monitors.pop(node.name)
        mon.terminate()
        mon.wait(timeout=10)
        t = time.time()
        self.lab.remove_node(node)
        return t

    # -- observation ---------------------------------------------------------------------------------------
    def events(self, name: str) -> list[tuple[float, bool, str]]:
        """(time, deleted, line) of every route/neigh/fdb event on node ``name``'s VXLAN device."""
        _, path = self.monitors[name]
        out = []
        for line in path.read_text(errors="replace").splitlines():
            if "dev cnivx.1" not in line or not line.startswith("["):
                continue
            stamp, _, rest = line[1:].partition("] ")
            when = datetime.datetime.fromisoformat(stamp).timestamp()
            out.append((when, rest.startswith("Deleted"), rest))
        return out

    def seen_at(self, observer: str, peer: dict[str, str], since: float, deleted: bool) -> Optional[float]:
        """When ``observer`` last got (or lost) all three entries of ``peer`` after ``since``; None if not."""
        neigh = f"{peer['gateway']} dev cnivx.1" + ("" if deleted else f" lladdr {peer['mac']}")  # goes FAILED
        keys = (f"{peer['subnet']} via", neigh, f"{peer['underlay']} dev cnivx.1 lladdr {peer['mac']}")
        times = []
        for key in keys:
            hits = [t for t, d, rest in self.events(observer)
                    if t >= since and d == deleted and rest.split("Deleted ", 1)[-1].startswith(key)]
            if not hits:
                return None
            times.append(max(hits) if not deleted else min(hits))
        return max(times)

    def converge(self, peer: dict[str, str], since: float, observers: list[str], deleted: bool = False,
                 patience: float = 120) -> list[float]:
        """Per observer, the seconds from ``since`` until it had (or had dropped) ``peer``'s entries."""
        deadline = time.monotonic() + patience
        while True:
            got = [self.seen_at(o, peer, since, deleted) for o in observers]
            if all(g is not None for g in got):
                return [g - since for g in got if g is not None]
            if time.monotonic() > deadline:
                missing = [o for o, g in zip(observers, got) if g is None]
                tail = (self.tmp / f"agent-{missing[0]}.log").read_text(errors="replace").splitlines()[-12:]
                raise RuntimeError(f"{peer} not {'removed' if deleted else 'programmed'} on {missing}; "
                                   f"{missing[0]}'s agent log ends with:\n" + "\n".join(tail))
            time.sleep(0.25)

    def etcd_requests(self) -> float:
        """gRPC calls handled by all members so far (etcd's own /metrics; the JSON gateway calls gRPC)."""
        total = 0.0
        for m in self.etcd.members:
            if not m.running():
                continue
            text = self.lab.underlay.run(["python3", "-c", "import urllib.request, sys; "
                                          "print(urllib.request.urlopen(sys.argv[1] + '/metrics').read().decode())",
                                          m.url]).stdout
            total += sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                         if line.startswith("grpc_server_started_total{"))
        return total

    def agent_cost(self, seconds: float) -> tuple[list[float], list[float], float]:
        """Per agent: CPU % of one core over ``seconds`` idle and RSS MiB; and etcd requests/s meanwhile."""
        def ticks() -> dict[str, int]:
            out = {}
            for name, proc in self.agents.items():
                fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
                out[name] = int(fields[11]) + int(fields[12])
            return out
        r0, t0, a = self.etcd_requests(), time.monotonic(), ticks()
        time.sleep(seconds)
        b, r1, t1 = ticks(), self.etcd_requests(), time.monotonic()
        cpu = [100.0 * (b[k] - a[k]) / CLK_TCK / (t1 - t0) for k in a if k in b]
        rss = []
        for proc in self.agents.values():
            for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss.append(int(line.split()[1]) / 1024)
        return cpu, rss, (r1 - r0) / (t1 - t0)

    def alive(self) -> set[str]:
        prefix = f"{PREFIX}/alive/"
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        reply = self.etcd.call("/v3/kv/range", {"key": base64.b64encode(prefix.encode()).decode(),
                                                "range_end": base64.b64encode(end.encode()).decode(),
                                                "keys_only": True})
        return {base64.b64decode(kv["key"]).decode().rsplit("/", 1)[-1] for kv in reply.get("kvs", [])}

    def exactness(self) -> dict[str, int]:
        """Stale and missing entries over all nodes, against the live set (peers = every other live node)."""
        stale = missing = 0
        live = {n.name: self.info[n.name] for n in self.lab.nodes}
        for node in self.lab.nodes:
            want = [i for name, i in live.items() if name != node.name]
            routes = {r["dst"] for r in net.routes(node.ns) if r.get("dev") == "cnivx.1" and "/" in r["dst"]}
            neigh = node.ns.ip("neigh", "show", "dev", "cnivx.1").stdout.split("\n")
            neigh_ips = {ln.split()[0] for ln in neigh if "PERMANENT" in ln}
            fdb = json.loads(node.ns.run(["bridge", "-j", "fdb", "show", "dev", "cnivx.1"]).stdout or "[]")
            fdb_dsts = {e["dst"] for e in fdb if "dst" in e and e.get("mac") != "00:00:00:00:00:00"}
            for have, wanted in ((routes, {i["subnet"] for i in want}), (neigh_ips, {i["gateway"] for i in want}),
                                 (fdb_dsts, {i["underlay"] for i in want})):
                stale += len(have - wanted)
                missing += len(wanted - have)
        return {"stale": stale, "missing": missing}

    def close(self) -> None:
        for proc in self.agents.values():
            proc.terminate()
        for proc in self.agents.values():
            proc.wait(timeout=30)
        for mon, _ in self.monitors.values():
            mon.terminate()
            mon.wait(timeout=10)
        self.etcd.stop()
        self.lab.down()


def phase_join(s: Scale, n_nodes: int, sizes: list[int], rows: list[tuple[str, str]], cost_seconds: float) -> None:
    joins: list[float] = []
    requests_per_join: list[float] = []
    for n in range(1, n_nodes + 1):
        r0 = s.etcd_requests()
        node, start = s.join(n)
        info = s.wait_info(node)
        others = [o.name for o in s.lab.nodes if o is not node]
        if others:
            times = s.converge(info, start, others)
            joins.append(max(times))
            requests_per_join.append(s.etcd_requests() - r0)
        _, add_s = s.add_pod(node)
        say(f"node{n} joined: everywhere in {max(times) if others else 0:.2f}s; its first ADD {add_s:.2f}s")
        if n in sizes:
            cpu, rss, rps = s.agent_cost(cost_seconds)
            rows.append((f"agents idle at N = {n}: CPU per agent (median / max), RSS per agent (median / max), "
                         f"etcd requests/s (all)",
                         f"{statistics.median(cpu):.2f}% / {max(cpu):.2f}% of a core, "
                         f"{statistics.median(rss):.1f} / {max(rss):.1f} MiB, {rps:.1f}/s"))
            say(rows[-1][1])
    rows.append((f"join: agent start → neighbour + FDB + route on every other node (N = 2..{n_nodes}, "
                 f"{len(joins)} joins)",
                 f"p50 {pct(joins, 0.5):.2f} s, p99 {pct(joins, 0.99):.2f} s, max {max(joins):.2f} s"))
    rows.append(("etcd requests per join (all members, the joining node's and every watcher's)",
                 f"median {statistics.median(requests_per_join):.0f}, "
                 f"at the last join {requests_per_join[-1]:.0f}"))
    last = s.lab.nodes[-1]
    adds = [s.add_pod(last)[1] for _ in range(5)]
    rows.append((f"ADD on the node that joined last (N = {n_nodes}, median of 5, vxlan from the source tree)",
                 f"{statistics.median(adds) * 1000:.0f} ms"))


def phase_leave(s: Scale, rows: list[tuple[str, str]], count: int = 5) -> None:
    times = []
    candidates = [n for n in s.lab.nodes if int(n.name[4:]) > 3]
    count = min(count, len(candidates))
    if not count:
        return
    for node in random.sample(candidates, count):
        info = s.info[node.name]
        n = int(node.name[4:])
        t = s.leave(node)
        others = [o.name for o in s.lab.nodes]
        took = s.converge(info, t, others, deleted=True)
        times.extend(took)
        say(f"{node.name} left: removed everywhere in {max(took):.2f}s")
        back, _ = s.join(n)
        s.wait_info(back)
        s.add_pod(back)
    rows.append((f"leave: node gone → its entries removed on every other node ({count} leaves, leaseTTL "
                 f"{s.ttl} s)", f"p50 {pct(times, 0.5):.2f} s, p99 {pct(times, 0.99):.2f} s, max {max(times):.2f} s"))


def phase_churn(s: Scale, events: int, rows: list[tuple[str, str]]) -> None:
    sample = [n for n in s.lab.nodes if n.name in ("node1", "node2", "node3")]
    pods = [n.containers[0] for n in sample]
    pairs = [(a, s.cluster.ip_of(b)) for a, b in zip(pods, pods[1:] + pods[:1])]
    next_n = max(int(n.name[4:]) for n in s.lab.nodes) + 1
    pod_nodes: dict[str, str] = {}
    start = time.monotonic()
    with observe([n.ns for n in sample], pairs) as obs:
        for i in range(events):
            if i % 2 == 0:
                victim = random.choice([n for n in s.lab.nodes if n not in sample])
                s.leave(victim)
            else:
                node, _ = s.join(next_n)
                next_n += 1
                s.wait_info(node)
                ctr, _ = s.add_pod(node)
                pod_nodes[s.cluster.ip_of(ctr)] = node.name
            time.sleep(1.0)
        time.sleep(s.ttl * 2 + 3)  # leases of the last leavers expire, grace passes
    took = time.monotonic() - start
    exact = s.exactness()
    alive_ok = s.alive() == {n.name for n in s.lab.nodes}
    wrong_subnet = sum(1 for ip, name in pod_nodes.items()
                       if name in s.info and not ip.startswith(s.info[name]["subnet"].rsplit(".", 1)[0] + "."))
    sample_subnets = {s.info[n.name]["subnet"] for n in sample}
    sample_withdrawn = [w for w in obs.withdrawn if any(sub.split("/")[0] in w for sub in sample_subnets)]
    rows.append((f"churn: {events} join/leave events in {took:.0f} s, N kept at {len(s.lab.nodes)}; pods of "
                 f"nodes 1-3 pinging each other",
                 f"{obs.lost} of {obs.sent} pings lost; {len(sample_withdrawn)} entries of live sample nodes "
                 f"withdrawn; at the end {exact['stale']} stale and {exact['missing']} missing entries on all "
                 f"nodes; liveness records = live nodes: {'yes' if alive_ok else 'NO'}; pods with an address "
                 f"outside their node's subnet: {wrong_subnet} of {len(pod_nodes)}"))
    say(rows[-1][1])


def phase_outages(s: Scale, seconds: float, rows: list[tuple[str, str]]) -> None:
    for kind in EtcdCluster.OUTAGES:
        pods = [n.containers[0] for n in s.lab.nodes]
        pairs = [(a, s.cluster.ip_of(b)) for a, b in zip(pods, pods[1:] + pods[:1])]
        n1 = s.lab.nodes[0]
        with observe([n.ns for n in s.lab.nodes], pairs) as obs:
            begin = time.monotonic()
            s.etcd.begin_outage(kind, [n.ns for n in s.lab.nodes])
            time.sleep(min(10.0, seconds / 2))
            _, add_s = s.add_pod(n1)
            time.sleep(max(0.0, seconds - (time.monotonic() - begin)))
            s.etcd.end_outage(kind, [n.ns for n in s.lab.nodes])
            back = time.monotonic()
            names = {n.name for n in s.lab.nodes}
            while s.alive() < names and time.monotonic() - back < 120:
                time.sleep(0.2)
            republished = time.monotonic() - back
            time.sleep(s.ttl + 3)  # past the grace
        for line in obs.withdrawn[:20]:
            say(f"withdrawn: {line}")
        running = all(p.poll() is None for p in s.agents.values())
        exact = s.exactness()
        rows.append((f"etcd {kind} for {seconds:.0f} s at N = {len(s.lab.nodes)} (every pod pings the next "
                     f"node's)",
                     f"{obs.lost} of {obs.sent} pings lost, {len(obs.withdrawn)} entries withdrawn; ADD on a "
                     f"node holding its subnet {add_s * 1000:.0f} ms; every agent re-published "
                     f"{republished:.1f} s after etcd's return; agents running: {'all' if running else 'NOT all'}; "
                     f"after: {exact['stale']} stale, {exact['missing']} missing"))
        say(rows[-1][1])


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=24)
    parser.add_argument("--ttl", type=int, default=5, help="leaseTTL of the lab (default 5 s, the minimum)")
    parser.add_argument("--churn", type=int, default=60, help="join/leave events (default 60)")
    parser.add_argument("--outage", type=float, default=60.0, help="seconds of each etcd outage (default 60)")
    parser.add_argument("--cost-seconds", type=float, default=20.0, help="idle window for the cost figures")
    parser.add_argument("--phases", default="join,leave,churn,outages")
    opts = parser.parse_args(argv)
    phases = opts.phases.split(",")
    sizes = sorted({min(3, opts.nodes), min(12, opts.nodes), opts.nodes})
    rows: list[tuple[str, str]] = []
    random.seed(14)
    load = os.getloadavg()[0]
    t0 = time.monotonic()
    with BenchLab(tag="b") as bench:
        s = Scale(bench, opts.ttl)
        try:
            phase_join(s, opts.nodes, sizes, rows, opts.cost_seconds)
            if "leave" in phases:
                phase_leave(s, rows)
            if "churn" in phases:
                phase_churn(s, opts.churn, rows)
            if "outages" in phases:
                phase_outages(s, opts.outage, rows)
        except Exception as exc:  # report what was measured before the failure
            rows.append(("FAILED", f"{type(exc).__name__}: {exc}"))
            raise
        finally:
            s.close()
            print(f"vxlan at scale, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: N = {opts.nodes}, "
                  f"3-member etcd, leaseTTL {opts.ttl} s; load average {load:.1f} at the start, "
                  f"{os.getloadavg()[0]:.1f} at the end; {time.monotonic() - t0:.0f} s in all\n")
            print("| measurement | result |\n|---|---|")
            for what, result in rows:
                print(f"| {what} | {result} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
