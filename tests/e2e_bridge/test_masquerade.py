"""ipMasq with real traffic: what source address a "remote" machine behind the node sees.

The container's default route goes to the bridge gateway; the node routes to the remote namespace over its
own link (lab.make_remote). With ipMasq the remote sees the node's address on that link, without it the
container's own (the remote has a route back to the container subnets for that case).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e_bridge import lab
from tests.helpers import net

SUBNETS = ("10.78.0.0/24", "fd78::/64")


@pytest.mark.parametrize("masq, backend", [(True, "iptables"), (True, "nftables"), (False, None)],
                         ids=["masq-iptables", "masq-nftables", "no-masq"])
def test_source_address_seen_by_remote(masq, backend, cnitool, host_ns, remote_ns, make_container_ns,
                                       tmp_path: Path):
    opts = {"ipMasq": masq, **({"ipMasqBackend": backend} if backend else {})}
    conf = lab.bridge_conflist("cnte-masq", "cnte1", tmp_path / "ipam", subnets=SUBNETS, isDefaultGateway=True,
                               **opts)
    cnitool.write_conflist(conf)
    lab.make_remote(host_ns, remote_ns, routes_back=() if masq else SUBNETS)
    ctr = make_container_ns(lo_up=True)
    add = cnitool.add("cnte-masq", ctr)
    assert add.rc == 0, add
    ctr_v4, ctr_v6 = lab.result_ips(add.out)
    lab.wait_dad(host_ns, "cnte1")

    with net.serve(remote_ns, "tcp", 8080, bind="::", accepts=2):
        seen_v4 = net.tcp_connect(ctr, lab.REMOTE_V4, 8080)
        seen_v6 = net.tcp_connect(ctr, lab.REMOTE_V6, 8080)
    with net.serve(remote_ns, "udp", 8081, bind=lab.REMOTE_V4):
        seen_udp = net.udp_connect(ctr, lab.REMOTE_V4, 8081)
    want_v4, want_v6 = (lab.NODE_V4, lab.NODE_V6) if masq else (ctr_v4, ctr_v6)
    assert (seen_v4 or "").removeprefix("::ffff:") == want_v4
    assert seen_v6 == want_v6
    assert seen_udp == want_v4
    # Traffic inside the container subnet is never masqueraded: the gateway sees the container.
    with net.serve(host_ns, "tcp", 8082, bind="10.78.0.1"):
        assert net.tcp_connect(ctr, "10.78.0.1", 8082) == ctr_v4

    ipt, nft = lab.ipt_masq_rules(host_ns, "cnte-masq"), lab.nft_masq_rules(host_ns)
    if backend == "iptables":
        assert len(ipt) == 6 and nft == []  # per family: the jump, the ACCEPT and the MASQUERADE
    elif backend == "nftables":
        assert ipt == [] and len(nft) == 2
    else:
        assert ipt == [] and nft == []
    assert cnitool.delete("cnte-masq", ctr).rc == 0
    assert lab.ipt_masq_rules(host_ns, "cnte-masq") == [] and lab.nft_masq_rules(host_ns) == []
    assert lab.ipt_nat_chains(host_ns) == []
    assert lab.leases(tmp_path / "ipam", "cnte-masq") == []
