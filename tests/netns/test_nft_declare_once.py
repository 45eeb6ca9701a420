"""An nft ADD re-declares its layout's shared part (table, chains, entry rules) only when it is not known to be
intact (cni_common/netfilter/handles.py, ``add``): the usual ADD's transaction only adds rules, so the ``nft``
that commits it does not wait for the kernel's deferred release. Every way the shared part can change makes
the next ADD declare it again, and the ruleset ends up as upstream's full script leaves it.

In throwaway namespaces (``cnt-d<run>``).
"""

from __future__ import annotations

import ipaddress
from typing import Any, Iterator

import pytest

from cni_common.netfilter import masquerade, portmap, runner
from tests.helpers.netfilter_ns import bare_netns, inside
from tests.helpers.netns import Netns

NET = "cnt-net"


@pytest.fixture
def ns() -> Iterator[Netns]:
    yield from bare_netns("cnt-d")


def scripts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The stdin of every ``nft -f -`` the code runs from now on (each still runs)."""
    seen: list[str] = []
    real = runner.run

    def recording(argv: list[str], stdin: str = "") -> Any:
        if argv[:2] == ["nft", "-f"]:
            seen.append(stdin)
        return real(argv, stdin)

    monkeypatch.setattr(runner, "run", recording)
    return seen


def ip4(i: int) -> ipaddress.IPv4Interface:
    return ipaddress.IPv4Interface(f"10.95.0.{i + 2}/24")


def add_pod(i: int, **spec_args: Any) -> None:
    cid = f"cnt-pod{i}"
    masquerade.nft_setup(NET, cid, "eth0", [ip4(i)])
    portmap.nft_forward(portmap.PortMapSpec(NET, cid, [portmap.PortMapping(8080 + i, 80, "tcp")], **spec_args),
                        [ip4(i)])


def declares(script: str) -> bool:
    return any(line.startswith(("add table", "add chain", "flush chain")) for line in script.splitlines())


def ruleset(ns: Netns) -> str:
    return ns.run(["nft", "list", "ruleset"]).stdout


def test_only_the_first_add_declares(ns: Netns, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = scripts(monkeypatch)
    for i in range(3):
        inside(ns, lambda i=i: add_pod(i))
    assert [declares(s) for s in seen] == [True, True, False, False, False, False]
    assert seen[2].splitlines() == [line for line in seen[2].splitlines() if "cnt-pod1" in line]
    text = ruleset(ns)
    assert text.count("goto masq_checks") == 1 and text.count("jump hostports_all") == 2
    for i in range(3):
        inside(ns, lambda i=i: (masquerade.nft_teardown(NET, f"cnt-pod{i}", "eth0"),
                                portmap.nft_unforward(f"cnt-pod{i}")))
    assert "cnt-pod" not in ruleset(ns)


def test_an_entry_rule_removed_is_made_again(ns: Netns, monkeypatch: pytest.MonkeyPatch) -> None:
    inside(ns, lambda: add_pod(0))
    ns.run(["nft", "flush", "chain", "inet", masquerade.NFT_TABLE, "postrouting"])
    ns.run(["nft", "flush", "chain", "ip", portmap.NFT_TABLE, "prerouting"])
    seen = scripts(monkeypatch)
    inside(ns, lambda: add_pod(1))
    assert [declares(s) for s in seen] == [True, True]
    text = ruleset(ns)
    assert "goto masq_checks" in text and text.count("jump hostports_all") == 2


def test_a_chain_deleted_meanwhile_is_declared_on_retry(ns: Netns, monkeypatch: pytest.MonkeyPatch) -> None:
    inside(ns, lambda: add_pod(0))
    ns.run(["nft", "flush", "chain", "ip", portmap.NFT_TABLE, portmap.NFT_MASQ_CHAIN])
    ns.run(["nft", "delete", "chain", "ip", portmap.NFT_TABLE, portmap.NFT_MASQ_CHAIN])
    seen = scripts(monkeypatch)
    inside(ns, lambda: add_pod(1))
    assert [declares(s) for s in seen] == [False, False, True]  # masquerade short; portmap refused, then full
    assert "cnt-pod1" in ns.run(["nft", "list", "chain", "ip", portmap.NFT_TABLE, portmap.NFT_MASQ_CHAIN]).stdout


def test_a_table_made_again_is_declared(ns: Netns, monkeypatch: pytest.MonkeyPatch) -> None:
    inside(ns, lambda: add_pod(0))
    ns.run(["nft", "delete", "table", "ip", portmap.NFT_TABLE])
    ns.run(["nft", "add", "table", "ip", portmap.NFT_TABLE])
    seen = scripts(monkeypatch)
    inside(ns, lambda: add_pod(1))
    assert [declares(s) for s in seen] == [False, True]
    assert ruleset(ns).count("jump hostports_all") == 2


def test_other_conditions_are_declared(ns: Netns, monkeypatch: pytest.MonkeyPatch) -> None:
    """A config whose shared part differs (portmap's conditionsV4) has no record of its own yet: it declares,
    and its entry rules replace the old ones, as upstream's flush does."""
    inside(ns, lambda: add_pod(0))
    seen = scripts(monkeypatch)
    inside(ns, lambda: add_pod(1, conditions_v4=["ip", "saddr", "!=", "10.94.0.1"]))
    assert [declares(s) for s in seen] == [False, True]
    prerouting = ns.run(["nft", "list", "chain", "ip", portmap.NFT_TABLE, "prerouting"]).stdout
    assert "ip saddr != 10.94.0.1 fib daddr type local jump hostports_all" in prerouting
    seen.clear()
    inside(ns, lambda: add_pod(2))  # back to the first config: its record's entry rules are gone, so it declares
    assert [declares(s) for s in seen] == [False, True]
    assert "saddr" not in ns.run(["nft", "list", "chain", "ip", portmap.NFT_TABLE, "prerouting"]).stdout
