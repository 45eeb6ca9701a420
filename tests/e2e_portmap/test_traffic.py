"""portmap through libcni with the conf-examples chain (bridge + host-local + portmap), real TCP and UDP.

Every test runs once per backend (the ``lab`` fixture: conf-examples 30 = iptables, 31 = nftables). Servers
answer with the source address they saw, so each probe also tells plain DNAT (client address kept) from
DNAT + masquerade (hairpin and localhost: the bridge's gateway address).
"""

from __future__ import annotations

import sys
from typing import Callable, Iterator

import pytest

from tests.e2e_portmap.conftest import NODE_V4, NODE_V4_OTHER, NODE_V6, REMOTE_V4, Lab, conntrack_udp
from tests.helpers import net

TCP_WEB = {"hostPort": 18080, "containerPort": 80, "protocol": "tcp"}
UDP_DNS = {"hostPort": 18053, "containerPort": 53, "protocol": "udp"}
TCP_PINNED = {"hostPort": 18081, "containerPort": 81, "protocol": "tcp", "hostIP": NODE_V4}


def seen(peer: str | None) -> str | None:
    """A server's view of its client, with the v4-mapped prefix of dual-stack sockets dropped."""
    return peer.removeprefix("::ffff:") if peer else peer


def gateway(lab: Lab, version: int) -> str:
    """The bridge's address of that family: the source of masqueraded (hairpin, localhost) traffic."""
    ctr = lab.containers[0]
    return next(i["gateway"] for i in ctr.result["ips"] if (":" in i["address"]) == (version == 6))


def test_tcp_udp_from_node_and_remote_with_host_ip(lab: Lab) -> None:
    a = lab.add("a", [TCP_WEB, UDP_DNS, TCP_PINNED])
    check = lab.tool.check(lab.net, a.ns, container_id=a.cid, cap_args={"portMappings": a.mappings})
    assert check.rc == 0, check
    with net.serve(a.ns, "tcp", 80, bind="::", accepts=10), net.serve(a.ns, "udp", 53, bind="::", accepts=10), \
            net.serve(a.ns, "tcp", 81, bind="::", accepts=10):
        # From the node itself, to its own address: DNAT in OUTPUT, no masquerade.
        assert seen(net.tcp_connect(lab.node, NODE_V4, 18080)) == NODE_V4
        assert seen(net.udp_connect(lab.node, NODE_V4, 18053)) == NODE_V4
        # From a remote host routed through the node: the client address is kept.
        assert seen(net.tcp_connect(lab.remote, NODE_V4, 18080)) == REMOTE_V4
        assert seen(net.udp_connect(lab.remote, NODE_V4, 18053)) == REMOTE_V4
        # No hostIP: every local address of the node forwards.
        assert seen(net.tcp_connect(lab.remote, NODE_V4_OTHER, 18080)) == "198.51.100.2"
        # hostIP: only that address forwards.
        assert seen(net.tcp_connect(lab.remote, NODE_V4, 18081)) == REMOTE_V4
        assert net.tcp_connect(lab.remote, NODE_V4_OTHER, 18081, timeout=1) is None
        assert net.tcp_connect(lab.node, NODE_V4_OTHER, 18081, timeout=1) is None


def test_ipv6_mappings(lab: Lab) -> None:
    a = lab.add("a", [TCP_WEB, UDP_DNS])
    with net.serve(a.ns, "tcp", 80, bind="::", accepts=10), net.serve(a.ns, "udp", 53, bind="::", accepts=10):
        assert seen(net.tcp_connect(lab.node, NODE_V6, 18080)) == NODE_V6
        assert seen(net.tcp_connect(lab.remote, NODE_V6, 18080)) == "fd98::2"
        assert seen(net.udp_connect(lab.remote, NODE_V6, 18053)) == "fd98::2"
        # Hairpin over IPv6: the container reaches itself through the node's v6 address, masqueraded.
        assert seen(net.tcp_connect(a.ns, NODE_V6, 18080)) == gateway(lab, 6)


@pytest.mark.parametrize("bridge_nf", ["1", "0"], ids=["br-netfilter-on", "br-netfilter-off"])
def test_hairpin_self_and_neighbour(lab: Lab, bridge_nf: str, set_bridge_nf: Callable[[Lab, str], None]) -> None:
    """Hairpin, with and without br_netfilter seeing bridged traffic (the reply from A to a neighbour B is
    bridged: without br_netfilter only masquerading the request makes it come back through the node)."""
    set_bridge_nf(lab, bridge_nf)
    a = lab.add("a", [TCP_WEB, UDP_DNS])
    b = lab.add("b", [{"hostPort": 18090, "containerPort": 80, "protocol": "tcp"}])
    with net.serve(a.ns, "tcp", 80, bind="::", accepts=10), net.serve(a.ns, "udp", 53, bind="::", accepts=10), \
            net.serve(b.ns, "tcp", 80, bind="::", accepts=10):
        gw = gateway(lab, 4)
        assert seen(net.tcp_connect(a.ns, NODE_V4, 18080)) == gw  # itself
        assert seen(net.udp_connect(a.ns, NODE_V4, 18053)) == gw
        assert seen(net.tcp_connect(b.ns, NODE_V4, 18080)) == gw  # B reaches A
        assert seen(net.tcp_connect(a.ns, NODE_V4, 18090)) == gw  # A reaches B


@pytest.fixture
def set_bridge_nf(lab: Lab) -> Iterator[Callable[[Lab, str], None]]:
    """Set net.bridge.bridge-nf-call-ip(6)tables in the node; back to the default (1) after the test."""
    keys = ("net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables")

    def set_to(lab: Lab, value: str) -> None:
        lab.node.run(["sysctl", "-qw", *(f"{k}={value}" for k in keys)])

    yield set_to
    set_to(lab, "1")


def test_localhost_reaches_container(lab: Lab) -> None:
    a = lab.add("a", [TCP_WEB, UDP_DNS])
    with net.serve(a.ns, "tcp", 80, bind="::", accepts=10), net.serve(a.ns, "udp", 53, bind="::", accepts=10):
        assert seen(net.tcp_connect(lab.node, "127.0.0.1", 18080)) == gateway(lab, 4)
        assert seen(net.udp_connect(lab.node, "127.0.0.1", 18053)) == gateway(lab, 4)


@pytest.mark.parametrize("with_mappings", [True, False], ids=["del-with-mappings", "del-without-mappings"])
def test_del_stops_forwarding_and_leaves_nothing(lab: Lab, with_mappings: bool) -> None:
    a = lab.add("a", [TCP_WEB, UDP_DNS, TCP_PINNED])
    assert lab.leftovers(a), "the container's rules should be visible before DEL"
    with net.serve(a.ns, "tcp", 80, bind="::", accepts=10):
        assert net.tcp_connect(lab.remote, NODE_V4, 18080) is not None
        res = lab.delete(a, with_mappings=with_mappings)
        assert res.rc == 0, res
        assert lab.leftovers(a) == []
        assert net.tcp_connect(lab.remote, NODE_V4, 18080, timeout=1) is None
        assert net.tcp_connect(lab.node, "127.0.0.1", 18080, timeout=1) is None
    # DEL is repeatable.
    res = lab.tool.delete(lab.net, a.ns, container_id=a.cid, cap_args={"portMappings": a.mappings})
    assert res.rc == 0, res


_FIXED_PORT_CLIENT = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[3]))); s.settimeout(float(sys.argv[4]))
s.sendto(b"hi", (sys.argv[1], int(sys.argv[2])))
try:
    print(s.recvfrom(64)[0].decode())
except (socket.timeout, ConnectionRefusedError):
    sys.exit(1)
"""


def udp_flow(lab: Lab, port: int, timeout: float = 2) -> bool:
    """One datagram of the same UDP flow (fixed source port) from the remote host; True when answered."""
    proc = lab.remote.run([sys.executable, "-c", _FIXED_PORT_CLIENT, NODE_V4, str(port), "40053", str(timeout)],
                          check=False, timeout=timeout + 20)
    return proc.returncode == 0


def test_udp_flow_reaches_the_new_container(lab: Lab) -> None:
    """Stale conntrack: a flow that ran to an old container must reach the new owner of the hostPort."""
    old = lab.add("old", [UDP_DNS])
    with net.serve(old.ns, "udp", 53, bind="::", accepts=10):
        assert udp_flow(lab, 18053)
    assert old.ip(4) in conntrack_udp(lab.node, 18053)
    assert lab.delete(old).rc == 0
    assert old.ip(4) not in conntrack_udp(lab.node, 18053), "DEL should flush the flows to the old container"
    assert not udp_flow(lab, 18053, timeout=0.5)  # the flow keeps sending while nobody owns the port
    new = lab.add("new", [UDP_DNS])
    with net.serve(new.ns, "udp", 53, bind="::", accepts=10):
        assert udp_flow(lab, 18053), conntrack_udp(lab.node, 18053)
    assert new.ip(4) in conntrack_udp(lab.node, 18053)


def test_transit_traffic_is_not_hijacked(lab: Lab) -> None:
    """Traffic routed through the node to a container's own address on a hostPort number stays untouched.

    Also shows conf-example 31's ``conditionsV4`` (service range excluded): a node-local address in
    10.96.0.0/12 is forwarded by the iptables example only.
    """
    a = lab.add("a", [TCP_WEB])
    b = lab.add("b", [])
    # Only B listens: a hijacked connection would be DNATed to A:80, where nothing listens, and be refused.
    with net.serve(b.ns, "tcp", 18080, bind="::", accepts=10):
        assert seen(net.tcp_connect(lab.remote, b.ip(4), 18080)) == REMOTE_V4
        assert seen(net.tcp_connect(lab.remote, b.ip(6), 18080)) == "fd98::2"
        lab.node.ip("addr", "replace", "10.96.0.10/32", "dev", "lo")
    with net.serve(a.ns, "tcp", 80, bind="::", accepts=10):
        forwarded = net.tcp_connect(lab.node, "10.96.0.10", 18080, timeout=1) is not None
        assert forwarded == (lab.backend == "iptables")
