"""The vxlan plugin with real traffic: simulated nodes (namespaces) on an underlay bridge, through libcni.

Each node is a namespace with one veth on the underlay bridge (another namespace); the plugin runs inside the
node namespace, as the runtime would on a real machine. etcd runs on the underlay. Containers are attached
with tests/bin/cnitool (libcni 1.1.2), so config loading and result caching are a runtime's.
"""

from __future__ import annotations

import contextlib
import itertools
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from tests.helpers import net
from tests.helpers.etcd import EtcdServer, store_conf
from tests.helpers.netns import Netns, NetnsPool
from tests.helpers.vxlan_lab import NET_NAME, Cluster, Lab, source_bin_dir


def _mesh_failures(cluster: Cluster) -> list[str]:
    failures = []
    for a, b in itertools.permutations(cluster.all_containers(), 2):
        if not net.ping(a, cluster.ip_of(b)):
            failures.append(f"{a.name} -> {b.name} ({cluster.ip_of(b)})")
    return failures


def test_three_nodes_full_mesh_with_store(lab: Lab, cluster: Cluster, etcd: EtcdServer) -> None:
    nodes = [lab.add_node(n) for n in (1, 2, 3)]
    for node in nodes:
        cluster.configure(node, store=store_conf(etcd))
    for _ in range(2):  # second round: every node's ADD has seen every other node's liveness
        for node in nodes:
            cluster.add_container(node)
    subnets = {cluster.ip_of(c).rsplit(".", 1)[0] for c in cluster.all_containers()}
    assert len(subnets) == 3  # one subnet per node
    assert _mesh_failures(cluster) == []


def test_three_nodes_full_mesh_with_static_peers(lab: Lab, cluster: Cluster) -> None:
    nodes = [lab.add_node(n) for n in (1, 2, 3)]
    peers = [{"underlayIP": n.underlay_ip, "subnet": f"10.244.{i}.0/24"} for i, n in enumerate(nodes, 1)]
    for node in nodes:
        cluster.configure(node, peers=peers)  # the same list everywhere: a node finds itself in it
    for node in nodes:
        for _ in range(2):
            cluster.add_container(node)
    assert _mesh_failures(cluster) == []
    dev = net.link(nodes[0].ns, "cnivx.1")
    assert dev is not None and dev["mtu"] == 1450


def _df_ping(src: Netns, dst: str, size: int) -> subprocess.CompletedProcess[str]:
    """One ICMP echo of ``size`` bytes in all (IP header included) with DF set, from a raw socket."""
    code = r"""
import socket, struct, sys, os
dst, size = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.setsockopt(socket.IPPROTO_IP, 10, 2)  # IP_MTU_DISCOVER = IP_PMTUDISC_DO: DF set, never fragment
s.settimeout(3)
payload = b"x" * (size - 28)
def csum(b):
    if len(b) % 2: b += b"\0"
    t = sum(struct.unpack("!%dH" % (len(b) // 2), b)); t = (t >> 16) + (t & 0xffff); t += t >> 16
    return ~t & 0xffff
ident = os.getpid() & 0xffff
hdr = struct.pack("!BBHHH", 8, 0, 0, ident, 1)
pkt = struct.pack("!BBHHH", 8, 0, csum(hdr + payload), ident, 1) + payload
s.sendto(pkt, (dst, 0))
while True:
    data, _ = s.recvfrom(65535)
    ihl = (data[0] & 15) * 4
    if data[ihl] == 0 and struct.unpack("!H", data[ihl + 4:ihl + 6])[0] == ident:
        print(len(data)); break
"""
    return src.run([str(Path(__file__).resolve().parents[2] / ".venv/bin/python"), "-c", code, dst, str(size)],
                   check=False)


@contextlib.contextmanager
def _two_static_nodes(lab: Lab, cnitool_bin: Path, tmp_path: Path) -> Iterator[tuple[Cluster, Netns, Netns]]:
    """``lab`` (not yet up) with two nodes peered statically and one container on each; torn down after."""
    lab.up()
    try:
        cluster = Cluster(lab, cnitool_bin, source_bin_dir(tmp_path / "bin"), tmp_path, lab.pool)
        nodes = [lab.add_node(n) for n in (1, 2)]
        peers = [{"underlayIP": n.underlay_ip, "subnet": f"10.244.{i}.0/24"} for i, n in enumerate(nodes, 1)]
        for node in nodes:
            cluster.configure(node, peers=peers)
        yield cluster, cluster.add_container(nodes[0]), cluster.add_container(nodes[1])
    finally:
        lab.down()


@pytest.mark.parametrize("underlay_mtu", [1500, 9000])
def test_mtu_is_underlay_minus_overhead_and_full_size_df_crosses(netns_pool: NetnsPool, cnitool_bin: Path,
                                                                  tmp_path: Path,
                                                                  underlay_mtu: int) -> None:
    with _two_static_nodes(Lab(netns_pool, mtu=underlay_mtu), cnitool_bin, tmp_path) as (cluster, a, b):
        mtu = underlay_mtu - 50
        assert net.link(a, "eth0")["mtu"] == mtu
        ok = _df_ping(a, cluster.ip_of(b), mtu)
        assert ok.returncode == 0 and ok.stdout.strip() == str(mtu), ok.stderr
        too_big = _df_ping(a, cluster.ip_of(b), mtu + 1)
        assert too_big.returncode != 0 and "Message too long" in too_big.stderr


def test_ipv6_underlay_overhead_is_70(netns_pool: NetnsPool, cnitool_bin: Path, tmp_path: Path) -> None:
    with _two_static_nodes(Lab(netns_pool, ipv6=True), cnitool_bin, tmp_path) as (cluster, a, b):
        assert net.link(a, "eth0")["mtu"] == 1430
        ok = _df_ping(a, cluster.ip_of(b), 1430)
        assert ok.returncode == 0, ok.stderr


def test_del_leaves_no_container_state_and_keeps_the_overlay(lab: Lab, cluster: Cluster) -> None:
    nodes = [lab.add_node(n) for n in (1, 2)]
    peers = [{"underlayIP": n.underlay_ip, "subnet": f"10.244.{i}.0/24"} for i, n in enumerate(nodes, 1)]
    for node in nodes:
        cluster.configure(node, peers=peers)
    a, keep = cluster.add_container(nodes[0]), cluster.add_container(nodes[0])
    b = cluster.add_container(nodes[1])
    tool = cluster.tools[nodes[0].name]
    links_before = {lk["ifname"] for lk in net.links(nodes[0].ns)}
    res = tool.delete(NET_NAME, a)
    assert res.rc == 0, (res.out, res.stderr)
    assert net.link(a, "eth0") is None
    ipam_dir = cluster.tmp / "ipam" / nodes[0].name / NET_NAME
    assert cluster.ip_of(a) not in {p.name for p in ipam_dir.iterdir()}
    links_after = {lk["ifname"] for lk in net.links(nodes[0].ns)}
    assert len(links_before - links_after) == 1 and all(n.startswith("veth") for n in links_before - links_after)
    assert {"cnivx.1", "cnivxbr1"} <= links_after
    assert net.ping(keep, cluster.ip_of(b))  # the other pod still crosses the overlay
    again = tool.delete(NET_NAME, a)  # idempotent
    assert again.rc == 0, again.out


def test_ip_masq_exempts_the_pod_network_and_is_removed_on_del(lab: Lab, cluster: Cluster) -> None:
    nodes = [lab.add_node(n) for n in (1, 2)]
    peers = [{"underlayIP": n.underlay_ip, "subnet": f"10.244.{i}.0/24"} for i, n in enumerate(nodes, 1)]
    for node in nodes:
        ipam = {"type": "host-local", "dataDir": str(cluster.tmp / "ipam" / node.name),
                "routes": [{"dst": "0.0.0.0/0"}]}  # a default route, so the pod can leave the pod network
        cluster.configure(node, peers=peers, ipMasq=True, ipam=ipam)
    a, b = cluster.add_container(nodes[0]), cluster.add_container(nodes[1])
    with net.serve(b, "tcp", 8080):
        assert net.tcp_connect(a, cluster.ip_of(b), 8080) == cluster.ip_of(a)  # pod to pod: source kept
    with net.serve(nodes[1].ns, "tcp", 8081, bind=nodes[1].underlay_ip):
        # leaving the pod network (to another node's underlay address): masqueraded to node 1's address
        assert net.tcp_connect(a, nodes[1].underlay_ip, 8081) == nodes[0].underlay_ip
    res = cluster.tools[nodes[0].name].delete(NET_NAME, a)
    assert res.rc == 0, res.out
    rules = nodes[0].ns.run(["iptables-save", "-t", "nat"], check=False).stdout
    nft = nodes[0].ns.run(["nft", "list", "ruleset"], check=False).stdout
    assert cluster.ip_of(a) not in rules + nft
