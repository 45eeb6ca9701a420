"""An ADD learns its nft rules' handles from the kernel's notifications of its commit (handles.add,
runner.nft_watch), without ``nft -e -a`` (whose echo makes nft 1.0.6 read the whole ruleset): the handles are
those ``nft -a list`` shows, with 300 pods' rules as with none, beside stale deletions, concurrent ADDs and
foreign commits; whatever cannot be trusted leaves the record pending (the DEL lists), and the ruleset holds
nothing but upstream's objects.

In throwaway namespaces (``cnt-h<run>``), records under /run/cni-suite/nft/<the namespace's cookie>/.
"""

from __future__ import annotations

import concurrent.futures
import ipaddress
import json
import threading
from typing import Any, Iterator

import pytest

from cni_common.netfilter import handles, masquerade, names, portmap, runner
from tests.helpers.netfilter_ns import bare_netns, inside
from tests.helpers.netns import Netns
from tests.helpers.nft_calls import count_nft

NET = "cnt-net"
MASQ_TABLE = ("inet", masquerade.NFT_TABLE)
UPSTREAM_CHAINS = {
    ("inet", "cni_plugins_masquerade"): {"masq_checks", "postrouting"},
    ("ip", "cni_hostport"): {"hostports", "hostip_hostports", "hostports_all", "prerouting", "output",
                             "masquerading"},
    ("ip6", "cni_hostport"): {"hostports", "hostip_hostports", "hostports_all", "prerouting", "output",
                              "masquerading"},
}


@pytest.fixture
def ns() -> Iterator[Netns]:
    yield from bare_netns("cnt-h")


def ruleset(ns: Netns) -> list[dict[str, Any]]:
    return list(json.loads(ns.run(["nft", "-j", "list", "ruleset"]).stdout)["nftables"])


def listed(ns: Netns, comment: str, chains: tuple[str, ...]) -> list[tuple[str, str, str, int]]:
    """(family, table, chain, handle) of the rules with ``comment`` in ``chains``, as ``nft -a list`` has them."""
    return sorted((r["family"], r["table"], r["chain"], int(r["handle"])) for o in ruleset(ns) if "rule" in o
                  for r in [o["rule"]] if r["chain"] in chains and r.get("comment") == comment)


def chains(ns: Netns) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for o in ruleset(ns):
        if "chain" in o:
            out.setdefault((o["chain"]["family"], o["chain"]["table"]), set()).add(o["chain"]["name"])
    return out


def pod_ips(i: int) -> list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]:
    return [ipaddress.ip_interface(f"10.96.{i // 250}.{i % 250 + 2}/16"),
            ipaddress.ip_interface(f"fd96::{i + 2:x}/64")]


def pod_spec(cid: str, port: int) -> portmap.PortMapSpec:
    return portmap.PortMapSpec(NET, cid, [portmap.PortMapping(port, 80, "tcp")])


def add_pod(i: int, cid: str) -> None:
    masquerade.nft_setup(NET, cid, "eth0", pod_ips(i))
    portmap.nft_forward(pod_spec(cid, 10000 + i), pod_ips(i))


def del_pod(cid: str) -> None:
    masquerade.nft_teardown(NET, cid, "eth0")
    portmap.nft_unforward(cid)


def masq_comment(cid: str) -> str:
    return names.nft_masq_comment(NET, "eth0", cid)


def recorded(cid: str) -> tuple[handles.Record | None, handles.Record | None]:
    return handles.load(("masq", NET, "eth0", cid)), handles.load(("portmap", cid))


def assert_recorded_as_listed(ns: Netns, cid: str) -> None:
    masq, pm = inside(ns, lambda: recorded(cid))
    assert masq is not None and not masq.pending and pm is not None and not pm.pending
    assert sorted(masq.rules) == listed(ns, masq_comment(cid), (masquerade.NFT_CHAIN,)) and len(masq.rules) == 2
    assert sorted(pm.rules) == listed(ns, cid, portmap.NFT_OWNED_CHAINS) and len(pm.rules) == 5
    tables = inside(ns, runner.nft_table_handles)
    assert masq.tables == {"inet cni_plugins_masquerade": tables[MASQ_TABLE]}
    assert pm.tables == {"ip cni_hostport": tables[("ip", "cni_hostport")],
                         "ip6 cni_hostport": tables[("ip6", "cni_hostport")]}


def test_handles_match_the_listing_with_300_pods_and_no_nft_reads_the_ruleset(
        ns: Netns, monkeypatch: pytest.MonkeyPatch) -> None:
    def resident() -> None:
        for i in range(300):
            add_pod(i, f"cnt-r{i}")

    inside(ns, resident)
    seen = count_nft(monkeypatch)
    inside(ns, lambda: add_pod(300, "cnt-new"))
    assert seen == [["nft", "-f", "-"], ["nft", "-f", "-"]]  # no -e (echo), no list
    assert_recorded_as_listed(ns, "cnt-new")
    for i in (0, 150, 299):
        assert_recorded_as_listed(ns, f"cnt-r{i}")
    seen.clear()
    inside(ns, lambda: del_pod("cnt-new"))
    assert seen == [["nft", "-f", "-"], ["nft", "-f", "-"]]
    assert listed(ns, "cnt-new", portmap.NFT_OWNED_CHAINS) == []
    assert listed(ns, masq_comment("cnt-new"), (masquerade.NFT_CHAIN,)) == []
    assert len(listed(ns, "cnt-r7", portmap.NFT_OWNED_CHAINS)) == 5
    assert chains(ns) == UPSTREAM_CHAINS  # upstream's objects only: nothing of ours beside them


def test_a_repeated_add_deletes_its_stale_rules_in_the_batch_and_records_the_new_ones(ns: Netns) -> None:
    inside(ns, lambda: add_pod(1, "cnt-a"))
    inside(ns, lambda: add_pod(2, "cnt-b"))
    old_masq, old_pm = inside(ns, lambda: recorded("cnt-a"))
    inside(ns, lambda: add_pod(1, "cnt-a"))  # stale rules deleted by handle in the same batch
    assert_recorded_as_listed(ns, "cnt-a")
    new_masq, new_pm = inside(ns, lambda: recorded("cnt-a"))
    assert old_masq and new_masq and not set(old_masq.rules) & set(new_masq.rules)
    assert old_pm and new_pm and not set(old_pm.rules) & set(new_pm.rules)
    # A pending record: the stale rules are found by listing, and the new record is right again.
    inside(ns, lambda: handles.save(("portmap", "cnt-a"), handles.Record({}, [], pending=True)))
    inside(ns, lambda: portmap.nft_forward(pod_spec("cnt-a", 10001), pod_ips(1)))
    assert_recorded_as_listed(ns, "cnt-a")
    assert_recorded_as_listed(ns, "cnt-b")
    inside(ns, lambda: del_pod("cnt-a"))
    inside(ns, lambda: del_pod("cnt-b"))
    assert listed(ns, "cnt-a", portmap.NFT_OWNED_CHAINS) == listed(ns, "cnt-b", portmap.NFT_OWNED_CHAINS) == []


def test_concurrent_adds_and_foreign_commits(ns: Netns) -> None:
    """Our ADDs from 4 threads (the suite lock serialises them) while another writer commits rules into the same
    chains all along, some with a comment like ours: every record is exactly that ADD's rules."""
    stop = threading.Event()

    def foreign() -> None:
        k = 0
        while not stop.is_set():
            k += 1
            ns.run(["nft", "-f", "-"], input=f'add rule ip cni_hostport hostports tcp dport {30000 + k} '
                   f'dnat to 10.96.9.9:80 comment "cnt-foreign"\n'
                   f'add rule inet cni_plugins_masquerade masq_checks ip saddr 10.96.9.{k % 250} masquerade '
                   f'comment "cnt-foreign"\n', check=False)

    inside(ns, lambda: add_pod(0, "cnt-first"))  # the tables exist for the foreign writer
    writer = threading.Thread(target=foreign)
    writer.start()
    try:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda i: inside(ns, lambda: add_pod(i, f"cnt-c{i}")), range(1, 25)))
    finally:
        stop.set()
        writer.join()
    assert listed(ns, "cnt-foreign", portmap.NFT_OWNED_CHAINS)
    for i in range(1, 25):
        assert_recorded_as_listed(ns, f"cnt-c{i}")
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: inside(ns, lambda: del_pod(f"cnt-c{i}")), range(1, 25)))
    for i in range(1, 25):
        assert listed(ns, f"cnt-c{i}", portmap.NFT_OWNED_CHAINS) == []
    assert len(listed(ns, "cnt-first", portmap.NFT_OWNED_CHAINS)) == 5


def test_a_failed_add_leaves_a_pending_record_and_no_objects(ns: Netns) -> None:
    inside(ns, lambda: add_pod(0, "cnt-ok"))
    before = chains(ns)
    bad = portmap.PortMapSpec(NET, "cnt-bad", [portmap.PortMapping(8080, 80, "tcp")], conditions_v4=["bogus"])
    with pytest.raises(runner.NetfilterError):
        inside(ns, lambda: portmap.nft_forward(bad, pod_ips(5)))
    assert chains(ns) == before
    record = inside(ns, lambda: handles.load(("portmap", "cnt-bad")))
    assert record is not None and record.pending
    assert listed(ns, "cnt-bad", portmap.NFT_OWNED_CHAINS) == []
    inside(ns, lambda: portmap.nft_unforward("cnt-bad"))
    assert inside(ns, lambda: handles.load(("portmap", "cnt-bad"))) is None
    assert_recorded_as_listed(ns, "cnt-ok")


def test_lost_notifications_leave_the_record_pending_and_the_del_lists(
        ns: Netns, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "nft_rules_added", lambda sock, chains, comment: None)
    inside(ns, lambda: add_pod(1, "cnt-a"))
    masq, pm = inside(ns, lambda: recorded("cnt-a"))
    assert masq is not None and masq.pending and pm is not None and pm.pending
    inside(ns, lambda: del_pod("cnt-a"))
    assert listed(ns, "cnt-a", portmap.NFT_OWNED_CHAINS) == []
    assert listed(ns, masq_comment("cnt-a"), (masquerade.NFT_CHAIN,)) == []


def test_notifications_missing_a_rule_leave_the_record_pending(ns: Netns, monkeypatch: pytest.MonkeyPatch) -> None:
    real = runner.nft_rules_added
    monkeypatch.setattr(runner, "nft_rules_added", lambda sock, chains, comment: (real(sock, chains, comment)
                                                                                or [])[1:])
    inside(ns, lambda: portmap.nft_forward(pod_spec("cnt-a", 8080), pod_ips(1)))
    record = inside(ns, lambda: handles.load(("portmap", "cnt-a")))
    assert record is not None and record.pending
    inside(ns, lambda: portmap.nft_unforward("cnt-a"))
    assert listed(ns, "cnt-a", portmap.NFT_OWNED_CHAINS) == []


def test_without_a_watch_the_echo_still_gives_the_handles(ns: Netns, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "nft_watch", lambda: None)
    seen = count_nft(monkeypatch)
    inside(ns, lambda: add_pod(1, "cnt-a"))
    assert [argv[:3] for argv in seen] == [["nft", "-e", "-a"], ["nft", "-e", "-a"]]
    assert_recorded_as_listed(ns, "cnt-a")
    inside(ns, lambda: del_pod("cnt-a"))


def test_rules_deleted_after_the_commit_are_not_reported(ns: Netns) -> None:
    """One by one or with their table (whose deletion notifies each rule's): then the ADD's count of its rules
    differs, and its record stays pending."""
    inside(ns, lambda: add_pod(1, "cnt-a"))
    watch = inside(ns, runner.nft_watch)
    assert watch is not None
    add = 'add rule inet cni_plugins_masquerade masq_checks ip saddr {} masquerade comment "cnt-x"\n'
    with watch:
        ns.run(["nft", "-f", "-"], input=add.format("10.96.7.7") + add.format("10.96.7.8"))
        seen = runner.nft_rules_added(watch, ("masq_checks",), "cnt-x")
        assert seen is not None and sorted(seen) == listed(ns, "cnt-x", ("masq_checks",)) and len(seen) == 2
        ns.run(["nft", "-f", "-"], input=add.format("10.96.7.9"))
        ns.run(["nft", "delete", "rule", "inet", "cni_plugins_masquerade", "masq_checks", "handle",
                str(seen[0][3])])
        assert runner.nft_rules_added(watch, ("masq_checks",), "cnt-x") == [
            (*seen[0][:3], seen[1][3] + 1)]
        ns.run(["nft", "-f", "-"], input=add.format("10.96.7.10"))
        ns.run(["nft", "delete", "table", "inet", "cni_plugins_masquerade"])
        assert runner.nft_rules_added(watch, ("masq_checks",), "cnt-x") == []
    inside(ns, lambda: del_pod("cnt-a"))
