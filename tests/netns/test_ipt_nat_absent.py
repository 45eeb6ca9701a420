"""A DEL's cleanup of the iptables layout runs no iptables at all when the namespace has no nat table of that
family (runner.ipt_nat_absent), and still removes what the iptables layout made when there is one.

In throwaway namespaces (``cnt-i<run>``).
"""

from __future__ import annotations

import ipaddress
from typing import Any, Iterator

import pytest

from cni_common import netfilter
from cni_common.netfilter import masquerade, names, portmap, runner
from tests.helpers.netfilter_ns import bare_netns, inside
from tests.helpers.netns import Netns

NET = "cnt-net"
CID = "cnt-ipt-absent"
IP4 = ipaddress.ip_interface("10.96.0.2/24")
IP6 = ipaddress.ip_interface("fd96::2/64")


@pytest.fixture
def ns() -> Iterator[Netns]:
    yield from bare_netns("cnt-i")


def count_iptables(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Every iptables/ip6tables command (save, restore, -C...) the code runs from now on (each still runs)."""
    seen: list[list[str]] = []
    real = runner.run

    def counting(argv: list[str], stdin: str = "") -> Any:
        if argv[0].startswith(("iptables", "ip6tables")):
            seen.append(argv)
        return real(argv, stdin)

    monkeypatch.setattr(runner, "run", counting)
    return seen


def del_both_layouts() -> None:
    """What bridge's and portmap's DEL do on every node: clean both layouts."""
    netfilter.teardown_masquerade(NET, CID, "eth0", [IP4, IP6])
    netfilter.unforward_ports(NET, CID)


def test_no_nat_table_means_no_iptables_exec(ns: Netns, monkeypatch: pytest.MonkeyPatch) -> None:
    assert inside(ns, lambda: (runner.ipt_nat_absent(4), runner.ipt_nat_absent(6))) == (True, True)
    seen = count_iptables(monkeypatch)
    inside(ns, del_both_layouts)
    inside(ns, lambda: netfilter.teardown_masquerade(NET, CID, "eth0"))  # no addresses known
    assert seen == []
    assert "nat" not in ns.run(["nft", "list", "tables"]).stdout  # nothing was made by looking


def test_iptables_layout_is_still_removed(ns: Netns) -> None:
    """The drop-in promise: an attachment made on the iptables layout (by Go, or ours under another config)
    is removed by a DEL on a node that otherwise uses nftables."""
    spec = portmap.PortMapSpec(NET, CID, [portmap.PortMapping(8080, 80, "tcp")])
    inside(ns, lambda: masquerade.ipt_setup(NET, CID, [IP4, IP6]))
    inside(ns, lambda: portmap.ipt_forward(spec, [IP4, IP6]))
    assert inside(ns, lambda: (runner.ipt_nat_absent(4), runner.ipt_nat_absent(6))) == (False, False)
    for tool in ("iptables-save", "ip6tables-save"):
        saved = ns.run([tool, "-t", "nat"]).stdout
        assert names.masq_chain(NET, CID) in saved and names.dnat_chain(NET, CID) in saved
    inside(ns, del_both_layouts)
    for tool in ("iptables-save", "ip6tables-save"):
        saved = ns.run([tool, "-t", "nat"]).stdout
        assert names.masq_chain(NET, CID) not in saved and names.dnat_chain(NET, CID) not in saved


def test_one_family_table_only(ns: Netns, monkeypatch: pytest.MonkeyPatch) -> None:
    """An IPv4 nat table alone: IPv4 is read as before, IPv6 costs nothing."""
    ns.run(["iptables", "-t", "nat", "-N", "CNI-cnt-other"])
    assert inside(ns, lambda: (runner.ipt_nat_absent(4), runner.ipt_nat_absent(6))) == (False, True)
    seen = count_iptables(monkeypatch)
    inside(ns, del_both_layouts)
    assert seen and all(argv[0].startswith("iptables") for argv in seen)


@pytest.mark.skipif(not runner.on_path("iptables-legacy"), reason="needs iptables-legacy")
def test_legacy_nat_table_is_seen(ns: Netns) -> None:
    """iptables-legacy's tables are not nf_tables': the namespace's ip_tables_names tells they exist."""
    ns.run(["ip6tables-legacy", "-t", "nat", "-N", "CNI-cnt-legacy"])
    assert inside(ns, lambda: (runner.ipt_nat_absent(4), runner.ipt_nat_absent(6))) == (True, False)
    ns.run(["ip6tables-legacy", "-t", "nat", "-X", "CNI-cnt-legacy"])
