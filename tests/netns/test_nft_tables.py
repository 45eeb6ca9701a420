"""runner.nft_table_handles() reads the tables and their handles over nfnetlink exactly as ``nft -j list tables``
reports them."""

from __future__ import annotations

import json

from cni_common.netfilter import runner
from cni_common.netns import NetNS
from tests.helpers.netns import NetnsPool


def test_netlink_table_list_matches_nft(pool: NetnsPool) -> None:
    ns = pool.create("nft")
    with NetNS(ns.path) as handle, handle.entered():
        assert runner._nft_tables_netlink() == {}
    for family, name in (("ip", "cni_hostport"), ("ip6", "cni_hostport"), ("inet", "cni_plugins_masquerade"),
                         ("bridge", "b1"), ("netdev", "n1"), ("arp", "a1")):
        ns.run(["nft", "add", "table", family, name])
    listed = json.loads(ns.run(["nft", "-j", "list", "tables"]).stdout)["nftables"]
    expected = {(o["table"]["family"], o["table"]["name"]): o["table"]["handle"] for o in listed if "table" in o}
    with NetNS(ns.path) as handle, handle.entered():
        assert runner._nft_tables_netlink() == expected == runner.nft_table_handles()
        assert runner.nft_tables() == set(expected)
    assert ("ip6", "cni_hostport") in expected and len(expected) == 6
