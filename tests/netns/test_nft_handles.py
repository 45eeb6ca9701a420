"""nft rules deleted by the handles their ADD recorded (cni_common/netfilter/handles.py): a DEL costs one exec
whatever the number of pods, and every way a record can be wrong falls back to the listing, leaking nothing.

In throwaway namespaces (``cnt-n<run>``); the records go to /run/cni-suite/nft/<the namespace's cookie>/, and
each test checks they are gone at the end.
"""

from __future__ import annotations

import ipaddress
import json
import os
from typing import Any, Iterator

import pytest

from cni_common.netfilter import handles, masquerade, portmap
from tests.helpers.netfilter_ns import bare_netns, inside
from tests.helpers.netns import Netns
from tests.helpers.nft_calls import count_nft

NET = "cnt-net"
IP4 = ipaddress.ip_interface("10.97.0.2/24")
IP4B = ipaddress.ip_interface("10.97.0.3/24")


@pytest.fixture
def ns() -> Iterator[Netns]:
    yield from bare_netns("cnt-n")


def rules(ns: Netns, family: str, table: str) -> list[dict[str, Any]]:
    proc = ns.run(["nft", "-j", "list", "table", family, table], check=False)
    if proc.returncode != 0:
        return []
    return [o["rule"] for o in json.loads(proc.stdout)["nftables"] if "rule" in o]


def comments(ns: Netns, family: str, table: str) -> list[str]:
    return sorted(str(r.get("comment", "")) for r in rules(ns, family, table) if r.get("comment"))


def masq_rules(ns: Netns) -> list[dict[str, Any]]:
    """The per-attachment rules (the postrouting chain's jump and returns are shared and stay)."""
    return [r for r in rules(ns, "inet", "cni_plugins_masquerade") if r["chain"] == "masq_checks"]


def spec(cid: str, port: int) -> portmap.PortMapSpec:
    return portmap.PortMapSpec(NET, cid, [portmap.PortMapping(port, 80, "tcp")])


def masq_key(cid: str) -> tuple[str, ...]:
    return ("masq", NET, "eth0", cid)


def shared_key_masq() -> tuple[str, str]:
    return handles._shared_key(lambda stale, declare: masquerade.nft_setup_script([IP4], "c", [], declare))


def shared_key_portmap() -> tuple[str, str]:
    return handles._shared_key(lambda stale, declare: "\n".join(
        portmap.nft_forward_lines(spec("cnt-x", 1), IP4, [], declare)) + "\n")


def test_del_by_recorded_handles_runs_one_nft_and_lists_nothing(ns: Netns, monkeypatch: pytest.MonkeyPatch) -> None:
    inside(ns, lambda: portmap.nft_forward(spec("cnt-a", 8080), [IP4]))
    inside(ns, lambda: portmap.nft_forward(spec("cnt-b", 8081), [IP4B]))
    inside(ns, lambda: masquerade.nft_setup(NET, "cnt-a", "eth0", [IP4]))
    record = inside(ns, lambda: handles.load(("portmap", "cnt-a")))
    assert record is not None and not record.pending and len(record.rules) == 3  # dnat, 2 masquerade
    seen = count_nft(monkeypatch)
    inside(ns, lambda: portmap.nft_unforward("cnt-a"))
    inside(ns, lambda: masquerade.nft_teardown(NET, "cnt-a", "eth0"))
    assert [argv[:2] for argv in seen] == [["nft", "-f"], ["nft", "-f"]]  # no listing
    assert comments(ns, "ip", "cni_hostport") == ["cnt-b", "cnt-b", "cnt-b"]
    assert masq_rules(ns) == []
    assert inside(ns, lambda: handles.load(("portmap", "cnt-a"))) is None
    inside(ns, lambda: portmap.nft_unforward("cnt-b"))
    assert comments(ns, "ip", "cni_hostport") == []
    # What stays is what stays in the kernel: each layout's shared part (table, chains, entry rules), recorded so
    # that the next ADD need not declare it again (handles.add); no attachment's record.
    folder = inside(ns, handles._netns_folder)
    assert folder and len(os.listdir(folder)) == 2
    entry = ("postrouting", *portmap.NFT_ENTRY_CHAINS)
    shared = inside(ns, lambda: [handles.load(k) for k in (shared_key_masq(), shared_key_portmap())])
    assert all(r is not None and r.rules and all(c in entry for _, _, c, _ in r.rules) for r in shared)


def test_a_repeated_add_replaces_its_rules(ns: Netns) -> None:
    inside(ns, lambda: portmap.nft_forward(spec("cnt-a", 8080), [IP4]))
    inside(ns, lambda: portmap.nft_forward(spec("cnt-a", 8082), [IP4]))
    dports = [r["expr"][0]["match"]["right"] for r in rules(ns, "ip", "cni_hostport") if r["chain"] == "hostports"]
    assert dports == [8082]
    inside(ns, lambda: portmap.nft_unforward("cnt-a"))
    assert comments(ns, "ip", "cni_hostport") == []


def test_a_pending_record_falls_back_to_the_listing(ns: Netns) -> None:
    """An ADD that died after applying and before recording: its rules are found by comment."""
    inside(ns, lambda: masquerade.nft_setup(NET, "cnt-a", "eth0", [IP4]))
    inside(ns, lambda: handles.save(masq_key("cnt-a"), handles.Record({}, [], pending=True)))
    inside(ns, lambda: masquerade.nft_teardown(NET, "cnt-a", "eth0"))
    assert masq_rules(ns) == []


def test_rules_without_a_record_are_found_by_the_listing(ns: Netns) -> None:
    """As the Go plugin leaves them (same layout and comments, no record)."""
    inside(ns, lambda: portmap.nft_forward(spec("cnt-a", 8080), [IP4]))
    inside(ns, lambda: handles.remove(("portmap", "cnt-a")))
    inside(ns, lambda: portmap.nft_unforward("cnt-a"))
    assert comments(ns, "ip", "cni_hostport") == []


def test_a_rule_deleted_meanwhile_falls_back(ns: Netns) -> None:
    """GC or an operator removed one recorded rule: the DEL still removes the rest, a re-ADD still works."""
    inside(ns, lambda: portmap.nft_forward(spec("cnt-a", 8080), [IP4]))
    dnat = [r for r in rules(ns, "ip", "cni_hostport") if r["chain"] == "hostports"][0]
    ns.run(["nft", "delete", "rule", "ip", "cni_hostport", "hostports", "handle", str(dnat["handle"])])
    inside(ns, lambda: portmap.nft_forward(spec("cnt-a", 8080), [IP4]))
    assert comments(ns, "ip", "cni_hostport") == ["cnt-a", "cnt-a", "cnt-a"]
    masq = [r for r in rules(ns, "ip", "cni_hostport") if r["chain"] == "masquerading"][0]
    ns.run(["nft", "delete", "rule", "ip", "cni_hostport", "masquerading", "handle", str(masq["handle"])])
    inside(ns, lambda: portmap.nft_unforward("cnt-a"))
    assert comments(ns, "ip", "cni_hostport") == []


def test_a_table_made_again_invalidates_the_record(ns: Netns) -> None:
    """Handles restart in a new table: a record of the old one must never delete another pod's rule."""
    inside(ns, lambda: masquerade.nft_setup(NET, "cnt-a", "eth0", [IP4]))
    ns.run(["nft", "delete", "table", "inet", "cni_plugins_masquerade"])
    inside(ns, lambda: masquerade.nft_setup(NET, "cnt-b", "eth0", [IP4B]))
    inside(ns, lambda: masquerade.nft_teardown(NET, "cnt-a", "eth0"))
    assert masq_rules(ns)  # cnt-b's, though the new table's handles are those cnt-a recorded
    inside(ns, lambda: masquerade.nft_teardown(NET, "cnt-b", "eth0"))
    assert masq_rules(ns) == []


def test_forget_namespace_drops_its_records(ns: Netns) -> None:
    inside(ns, lambda: portmap.nft_forward(spec("cnt-a", 8080), [IP4]))
    folder = inside(ns, handles._netns_folder)
    assert os.listdir(folder)
    inside(ns, handles.forget_namespace)
    assert not os.path.exists(folder)


def test_records_of_gone_namespaces_are_swept(ns: Netns, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """Namespaces deleted without DELs leave records; a new namespace's first record sweeps them."""
    monkeypatch.setattr(handles, "RECORD_DIR", str(tmp_path / "records"))
    monkeypatch.setattr(handles, "SWEEP_ABOVE", 0)
    gone = tmp_path / "records" / "12345-999999999"
    gone.mkdir(parents=True)
    (gone / "record").write_text("{}")
    inside(ns, lambda: portmap.nft_forward(spec("cnt-a", 8080), [IP4]))
    assert not gone.exists()
    live = inside(ns, handles._netns_folder)
    assert os.path.isdir(live) and os.listdir(live)
    inside(ns, lambda: portmap.nft_unforward("cnt-a"))
