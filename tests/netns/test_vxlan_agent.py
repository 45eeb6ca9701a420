"""``vxlan agent``: nodes that join later become reachable without any new ADD elsewhere, and nodes whose
liveness lease expires disappear from the others' FDB, neighbour and route tables.

The waits below poll for a state with a generous upper bound; they assert the state, never a duration.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Callable, Iterator

import pytest

from tests.helpers import net
from tests.helpers.etcd import EtcdServer, store_conf
from tests.helpers.vxlan_lab import NET_NAME, Cluster, Lab, Node, eventually


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[Callable[[Node, Path], subprocess.Popen]]:
    started: list[subprocess.Popen] = []

    def start(node: Node, conf: Path) -> subprocess.Popen:
        log = open(tmp_path / f"agent-{node.name}.log", "wb")
        proc = node.ns.popen([str(tmp_path / "bin" / "vxlan"), "agent", "--conf", str(conf)], stdout=log,
                             stderr=subprocess.STDOUT)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)


def _vx_entries(node: Node, subnet: str) -> dict[str, bool]:
    gw = subnet.split("/")[0]
    routes = {r["dst"] for r in net.routes(node.ns) if r.get("dev") == "cnivx.1"}
    neigh = node.ns.ip("neigh", "show", "dev", "cnivx.1").stdout
    return {"route": subnet in routes, "neigh": f"{gw} " in neigh}


def _fdb_dsts(node: Node) -> set[str]:
    out = node.ns.run(["bridge", "-j", "fdb", "show", "dev", "cnivx.1"]).stdout
    return {e["dst"] for e in json.loads(out or "[]") if "dst" in e}


def test_join_and_leave_through_the_agent(lab: Lab, etcd: EtcdServer, cluster: Cluster, agents) -> None:
    store = store_conf(etcd, leaseTTL=5)
    n1, n2 = lab.add_node(1), lab.add_node(2)
    for node in (n1, n2):
        cluster.configure(node, store=store)
        agents(node, cluster.tools[node.name].conf_dir / f"{NET_NAME}.conflist")
    c1, c2 = cluster.add_container(n1), cluster.add_container(n2)
    assert eventually(lambda: net.ping(c1, cluster.ip_of(c2)) and net.ping(c2, cluster.ip_of(c1)))

    # a node joins: one ADD there, none on n1/n2; their agents learn it from the store's watch
    n3 = lab.add_node(3)
    cluster.configure(n3, store=store)
    c3 = cluster.add_container(n3)
    subnet3 = cluster.results[c3.name]["ips"][0]["address"].rsplit(".", 1)[0] + ".0/24"
    assert eventually(lambda: net.ping(c1, cluster.ip_of(c3)) and net.ping(c2, cluster.ip_of(c3)))
    assert net.ping(c3, cluster.ip_of(c1))
    assert n3.underlay_ip in _fdb_dsts(n1)

    # it leaves: nothing renews its lease (no agent there), so etcd expires it and the agents drop it
    assert eventually(lambda: not any(_vx_entries(n1, subnet3).values())
                      and not any(_vx_entries(n2, subnet3).values()))
    assert n3.underlay_ip not in _fdb_dsts(n1) | _fdb_dsts(n2)
    assert net.ping(c1, cluster.ip_of(c2))  # the others are untouched
    assert _vx_entries(n1, cluster.ip_of(c2).rsplit(".", 1)[0] + ".0/24") == {"route": True, "neigh": True}


def test_agent_heals_a_changed_peer_mac_and_a_deleted_entry(lab: Lab, etcd: EtcdServer, cluster: Cluster,
                                                            agents) -> None:
    """Replace semantics: a wrong neighbour MAC (flannel#1788) or a missing route comes back on resync."""
    store = store_conf(etcd)
    n1, n2 = lab.add_node(1), lab.add_node(2)
    for node in (n1, n2):
        cluster.configure(node, store=store)
    cluster.add_container(n2)
    c1 = cluster.add_container(n1)
    c2 = cluster.add_container(n2)  # n2's second ADD learns n1
    subnet2 = cluster.ip_of(c2).rsplit(".", 1)[0] + ".0/24"
    n1.ns.ip("neigh", "replace", subnet2.split("/")[0], "lladdr", "02:00:00:00:00:99", "dev", "cnivx.1",
             "nud", "permanent")
    assert net.ping(c2, cluster.ip_of(n2.containers[0])) and not net.ping(c1, cluster.ip_of(c2))
    n1.ns.ip("route", "del", subnet2)
    agent = agents(n1, cluster.tools[n1.name].conf_dir / f"{NET_NAME}.conflist")
    assert eventually(lambda: net.ping(c1, cluster.ip_of(c2)))
    agent.terminate()
    assert agent.wait(timeout=30) == 0
