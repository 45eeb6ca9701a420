"""The overlay under control-plane faults: a 3-member etcd on test addresses, nodes with their agents and pods,
and each fault of issue 14 in turn on the same cluster (module scope: one set-up for all of them).

Faults: the etcd leader killed (a node joins meanwhile); etcd unavailable three ways for longer than the
liveness TTL (all members killed then restarted; all frozen with SIGSTOP then resumed; the client port dropped
by every node's own iptables); a watch that falls behind a compaction; an agent SIGKILLed and restarted; a node
"rebooted". Throughout, pods ping each other and ``ip monitor`` records every route or neighbour withdrawn on
the VXLAN devices: zero lost pings and no withdrawal of a live peer are asserted; durations are printed (run
with ``-s``), never asserted. ``leaseTTL`` is 5 s and outages last :data:`OUTAGE` s, so every lease expires.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Iterator, Optional

import pytest

from tests.helpers import net
from tests.helpers.etcd import EtcdCluster, store_conf
from tests.helpers.netns import Netns, NetnsPool
from tests.helpers.overlay_watch import PYTHON, Observation, observe
from tests.helpers.vxlan_lab import NET_NAME, Cluster, Lab, Node, eventually, source_bin_dir

TTL = 5
OUTAGE = 9.0  # longer than the TTL: every lease runs out while etcd is away
GRACE = TTL  # the agent's grace after etcd is back (docs/vxlan.md, "Faults")
PREFIX = "/cnt-x/faults"


class FaultLab:
    """The cluster under test: nodes, their agents (source tree) and one pod each."""

    def __init__(self, lab: Lab, etcd: EtcdCluster, cluster: Cluster, tmp: Path) -> None:
        self.lab, self.etcd, self.cluster, self.tmp = lab, etcd, cluster, tmp
        self.agents: dict[str, subprocess.Popen] = {}
        self.store = store_conf(etcd, leaseTTL=TTL, prefix=PREFIX)

    def join(self, n: int) -> tuple[Node, int]:
        """A node with its agent and one pod; the pod's ADD is retried as a runtime would (kubelet retries a
        failed sandbox): a node with no subnet yet gets code 11 while etcd elects a leader. Returns the node
        and the number of ADD attempts."""
        node = self.lab.add_node(n)
        tool = self.cluster.configure(node, store=self.store)
        self.start_agent(node)
        ctr = self.cluster.pool.create(f"xc{n}-", lo_up=True)
        node.containers.append(ctr)
        for attempt in range(1, 31):
            res = tool.add(NET_NAME, ctr)
            if res.rc == 0:
                self.cluster.results[ctr.name] = res.out
                return node, attempt
            assert res.out["code"] == 11, res.out
            time.sleep(1)
        raise AssertionError(f"{node.name} never got its pod: {res.out}")

    def start_agent(self, node: Node) -> subprocess.Popen:
        log = open(self.tmp / f"agent-{node.name}.log", "ab")
        conf = self.cluster.tools[node.name].conf_dir / f"{NET_NAME}.conflist"
        proc = node.ns.popen([str(self.cluster.bin_dir / "vxlan"), "agent", "--conf", str(conf)], stdout=log,
                             stderr=subprocess.STDOUT)
        self.agents[node.name] = proc
        return proc

    def stop_agent(self, node: Node, sig: int = signal.SIGTERM) -> None:
        proc = self.agents.pop(node.name)
        proc.send_signal(sig)
        proc.wait(timeout=30)

    def node(self, name: str) -> Node:
        return next(n for n in self.lab.nodes if n.name == name)

    def pods(self) -> list[Netns]:
        return [n.containers[0] for n in self.lab.nodes if n.containers]

    def ring(self) -> list[tuple[Netns, str]]:
        """Each pod pings the next node's pod."""
        pods = self.pods()
        return [(a, self.cluster.ip_of(b)) for a, b in zip(pods, pods[1:] + pods[:1])]

    def watching(self) -> "contextlib.AbstractContextManager[Observation]":
        return observe([n.ns for n in self.lab.nodes], self.ring())

    def mesh_ok(self) -> bool:
        pods = self.pods()
        return all(net.ping(a, self.cluster.ip_of(b)) for a in pods for b in pods if a is not b)

    def alive(self) -> set[str]:
        """Node names with a liveness record now (read from inside the underlay namespace)."""
        from cni_common.overlay.etcd import _b64, prefix_end

        prefix = f"{PREFIX}/alive/"
        reply = self.etcd.call("/v3/kv/range", {"key": _b64(prefix), "range_end": _b64(prefix_end(prefix)),
                                                "keys_only": True})
        import base64

        return {base64.b64decode(kv["key"]).decode().rsplit("/", 1)[-1] for kv in reply.get("kvs", [])}

    def agents_running(self) -> bool:
        return all(p.poll() is None for p in self.agents.values())

    def http(self, node: Node, path: str) -> tuple[int, str]:
        code = ("import sys, urllib.request, urllib.error\n"
                "try:\n    r = urllib.request.urlopen('http://127.0.0.1:9651' + sys.argv[1], timeout=5)\n"
                "    print(r.status); print(r.read().decode())\n"
                "except urllib.error.HTTPError as e:\n    print(e.code)\n"
                "except OSError:\n    print(0)\n")  # not listening (yet)
        out = node.ns.run([PYTHON, "-c", code, path]).stdout
        status, _, body = out.partition("\n")
        return int(status), body

    def metric(self, node: Node, name: str) -> float:
        _, body = self.http(node, "/metrics")
        for line in body.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        raise KeyError(name)

    def vtep(self, node: Node) -> tuple[str, str]:
        """The node's VTEP MAC and the subnet address on its VXLAN device."""
        dev = net.link(node.ns, "cnivx.1")
        assert dev is not None
        return dev["address"], net.ip_addresses(node.ns, "cnivx.1")[0].split("/")[0]

    def peers_programmed(self, node: Node) -> set[str]:
        return {r["dst"] for r in net.routes(node.ns) if r.get("dev") == "cnivx.1" and "/" in r["dst"]}


@pytest.fixture(scope="module")
def fl(netns_pool: NetnsPool, cnitool_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultLab]:
    tmp = tmp_path_factory.mktemp("faults")
    lab = Lab(netns_pool).up()
    etcd: Optional[EtcdCluster] = None
    fault_lab: Optional[FaultLab] = None
    try:
        etcd = EtcdCluster(lab.underlay, [lab.bridge_address(n) for n in (251, 252, 253)]).start()
        cluster = Cluster(lab, cnitool_bin, source_bin_dir(tmp / "bin"), tmp, netns_pool)
        fault_lab = FaultLab(lab, etcd, cluster, tmp)
        for n in (1, 2, 3):
            fault_lab.join(n)
        assert eventually(fault_lab.mesh_ok), "the cluster never converged"
        yield fault_lab
    finally:
        if fault_lab is not None:
            for proc in fault_lab.agents.values():
                proc.terminate()
            for proc in fault_lab.agents.values():
                proc.wait(timeout=30)
        if etcd is not None:
            etcd.stop()
        lab.down()


def _report(what: str, obs: Observation, **figures: float) -> None:
    extra = ", ".join(f"{k} {v:.2f}" for k, v in figures.items())
    print(f"\n{what}: {obs.sent} pings, {obs.lost} lost, {len(obs.withdrawn)} withdrawals; {extra}")


def _assert_intact(fl: FaultLab, obs: Observation) -> None:
    assert obs.withdrawn == [], obs.withdrawn
    assert obs.lost == 0, obs.pings
    assert fl.agents_running()  # recovered on their own: no agent exited or was restarted


def _converged(fl: FaultLab) -> bool:
    names = {n.name for n in fl.lab.nodes if n.name in fl.agents}
    return fl.alive() >= names and all(len(fl.peers_programmed(n)) == len(fl.lab.nodes) - 1
                                       for n in fl.lab.nodes)


def test_leader_killed_while_a_node_joins(fl: FaultLab) -> None:
    with fl.watching() as obs:
        leader = fl.etcd.leader()
        fl.etcd.members[leader].kill()
        start = time.monotonic()
        n4, attempts = fl.join(4)
        assert eventually(lambda: _converged(fl) and fl.mesh_ok())
        joined = time.monotonic() - start
    fl.etcd.restart_stopped()
    _report("leader killed, node 4 joins", obs, seconds_to_reachable_everywhere=joined, add_attempts=attempts)
    _assert_intact(fl, obs)
    assert net.ping(n4.containers[0], fl.cluster.ip_of(fl.pods()[0]))


@pytest.mark.parametrize("kind", ["frozen", "killed", "dropped"])  # frozen first: node 5 fails there, 6 joins later
def test_etcd_unavailable_longer_than_the_ttl(fl: FaultLab, kind: str, make_container_ns) -> None:
    """No live peer withdrawn, no ping lost; ADD on a node holding its subnet works, a new node gets code 11;
    agents come back on their own; a node joining right after etcd's return is reachable."""
    n1 = fl.node("node1")
    before = list(fl.lab.nodes)
    with fl.watching() as obs:
        begin = time.monotonic()
        fl.etcd.begin_outage(kind, [n.ns for n in fl.lab.nodes])
        time.sleep(TTL / 3 + 1)  # the agents notice
        t0 = time.monotonic()
        pod = fl.cluster.add_container(n1)  # asserts rc 0: the node goes on with the subnet it holds
        add_seconds = time.monotonic() - t0
        assert fl.cluster.ip_of(pod).startswith(fl.cluster.ip_of(n1.containers[0]).rsplit(".", 1)[0] + ".")
        figures = {"ADD_on_a_node_with_its_subnet_s": add_seconds}
        if kind == "frozen":  # a node that never reserved a subnet cannot go on: code 11, without a long wait
            n5 = fl.lab.add_node(5)
            tool = fl.cluster.configure(n5, store=fl.store)
            t0 = time.monotonic()
            res = tool.add(NET_NAME, make_container_ns(lo_up=True))
            figures["ADD_on_a_new_node_s"] = time.monotonic() - t0
            assert res.rc != 0 and res.out["code"] == 11, res.out
            fl.lab.remove_node(n5)
        time.sleep(max(0.0, OUTAGE - (time.monotonic() - begin)))
        fl.etcd.end_outage(kind, [n.ns for n in fl.lab.nodes])
        back = time.monotonic()
        if kind == "killed":  # a node joins right after: its peers' watches must be up again
            n6, _ = fl.join(6)
            assert eventually(lambda: all(
                n6.containers[0] is p or net.ping(p, fl.cluster.ip_of(n6.containers[0])) for p in fl.pods()))
            figures["join_after_return_reachable_s"] = time.monotonic() - back
        assert eventually(lambda: fl.alive() >= set(fl.agents))
        figures["all_republished_s"] = time.monotonic() - back
        time.sleep(GRACE + 1)  # past the grace: whatever would be withdrawn is withdrawn by now
        assert eventually(lambda: _converged(fl))
    _report(f"etcd {kind} for {OUTAGE:.0f}s", obs, **figures)
    _assert_intact(fl, obs)
    for n in before:  # each agent saw the outage, and recovered from it without a restart
        assert fl.metric(n, "cni_vxlan_agent_store_outages_total") >= 1


def test_watch_behind_a_compaction_relists(fl: FaultLab) -> None:
    """node1's agent is frozen while etcd restarts (its watch connection dies) and a fake node joins; the
    history is compacted past the agent's watch revision; resumed, the agent re-lists and programs the node."""
    from cni_common.overlay.etcd import _b64

    n1 = fl.node("node1")
    restarts = fl.metric(n1, "cni_vxlan_agent_watch_restarts_total")
    agent = fl.agents["node1"]
    agent.send_signal(signal.SIGSTOP)
    try:
        fl.etcd.kill_all()
        fl.etcd.restart_stopped()
        lease = fl.etcd.call("/v3/lease/grant", {"TTL": "60"})["ID"]
        record = {"node": "fake", "underlayIP": "10.123.0.200", "subnet": "10.244.200.0/24",
                  "vtepMAC": "02:00:00:00:00:c8"}
        fl.etcd.call("/v3/kv/put", {"key": _b64(f"{PREFIX}/alive/fake"), "value": _b64(json.dumps(record)),
                                    "lease": lease})
        fl.etcd.compact(fl.etcd.revision())
    finally:
        agent.send_signal(signal.SIGCONT)
    assert eventually(lambda: "10.244.200.0/24" in fl.peers_programmed(n1))
    assert fl.metric(n1, "cni_vxlan_agent_watch_restarts_total") > restarts
    fl.etcd.call("/v3/lease/revoke", {"ID": lease})  # the fake node leaves: gone after the grace
    assert eventually(lambda: all("10.244.200.0/24" not in fl.peers_programmed(n) for n in fl.lab.nodes))


def test_agent_sigkill_and_restart(fl: FaultLab) -> None:
    n2 = fl.node("node2")
    before = fl.vtep(n2)
    with fl.watching() as obs:
        fl.stop_agent(n2, signal.SIGKILL)
        time.sleep(1)
        fl.start_agent(n2)
        assert eventually(lambda: fl.http(n2, "/readyz")[0] == 200)
        assert eventually(lambda: _converged(fl))
    _report("agent SIGKILL + restart", obs)
    _assert_intact(fl, obs)
    assert fl.vtep(n2) == before  # same VTEP MAC, same subnet


def test_node_reboot_comes_back_with_its_subnet_and_mac(fl: FaultLab) -> None:
    """node3's namespace and links vanish (its agent dies with them); the others drop it once its lease is
    gone; it comes back with the same name: same subnet, same VTEP MAC, and everyone reaches it again."""
    n3 = fl.node("node3")
    mac, subnet_ip = fl.vtep(n3)
    fl.stop_agent(n3, signal.SIGKILL)
    fl.lab.remove_node(n3)
    gone = f"{subnet_ip}/24"
    assert eventually(lambda: all(gone not in fl.peers_programmed(n) for n in fl.lab.nodes))
    start = time.monotonic()
    n3, _ = fl.join(3)
    assert eventually(lambda: _converged(fl) and fl.mesh_ok())
    print(f"\nnode reboot: reachable everywhere {time.monotonic() - start:.2f}s after it came back")
    assert fl.vtep(n3) == (mac, subnet_ip)


def test_health_and_metrics_endpoint(fl: FaultLab) -> None:
    n1 = fl.node("node1")
    assert fl.http(n1, "/healthz")[0] == 200
    assert fl.http(n1, "/readyz")[0] == 200
    assert fl.http(n1, "/nope")[0] == 404
    assert fl.metric(n1, "cni_vxlan_agent_peers_programmed") == len(fl.lab.nodes) - 1
    assert 0 <= fl.metric(n1, "cni_vxlan_agent_seconds_since_store_contact") < 60
    assert fl.metric(n1, "cni_vxlan_agent_reconcile_duration_seconds_count") >= 1
    assert fl.metric(n1, "cni_vxlan_agent_errors_total") >= 0
    assert fl.metric(n1, "process_resident_memory_bytes") > 0
