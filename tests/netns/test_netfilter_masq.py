"""Masquerade and macspoofchk applied to a real kernel, inside throwaway namespaces (prefix ``cnt-f``).

Topology for traffic tests: container --veth-- host --veth-- remote. The remote namespace has no route back
to the container subnet, so a reply arrives only when the host masquerades.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import subprocess
from pathlib import Path
from typing import Callable, Iterator

import pytest

import cni_common.netfilter as nf
from cni_common.netfilter import names
from cni_common.netns import NetNS
from tests.helpers.net import ping, serve, tcp_connect
from tests.helpers.netns import Netns

NET = "testnet"
IP4 = ipaddress.ip_interface("10.99.0.2/24")
IP6 = ipaddress.ip_interface("fd99::2/64")
GO_BRIDGE = Path("/usr/lib/cni/bridge")


@pytest.fixture
def make_ns() -> Iterator[Callable[[str], Netns]]:
    """Factory for namespaces named ``cnt-f<run>-<role>``; all are deleted afterwards."""
    run = secrets.token_hex(2)
    made: list[Netns] = []

    def make(role: str) -> Netns:
        if os.geteuid() != 0:
            pytest.skip("needs root for network namespaces")
        ns = Netns(f"cnt-f{run}-{role}")
        subprocess.run(["ip", "netns", "add", ns.name], check=True)
        made.append(ns)
        ns.ip("link", "set", "lo", "up")
        return ns

    yield make
    for ns in made:
        for pid in ns.pids():
            subprocess.run(["kill", "-9", str(pid)], check=False)
        subprocess.run(["ip", "netns", "del", ns.name], check=False)


def inside(ns: Netns, fn: Callable[[], object]) -> object:
    """Run ``fn`` with this thread in ``ns`` (netfilter acts on the caller's namespace)."""
    with NetNS(ns.path) as handle, handle.entered():
        return fn()


def save(ns: Netns, family: int = 4) -> str:
    return ns.run(["iptables-save" if family == 4 else "ip6tables-save", "-t", "nat"]).stdout


def nft_masq_rules(ns: Netns) -> list[str]:
    out = ns.run(["nft", "-j", "list", "chain", "inet", "cni_plugins_masquerade", "masq_checks"], check=False)
    if out.returncode != 0:
        return []
    return [o["rule"]["comment"] for o in json.loads(out.stdout)["nftables"] if "rule" in o]


def veth(a: Netns, a_if: str, a_addr: list[str], b: Netns, b_if: str, b_addr: list[str]) -> None:
    a.ip("link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", b.name)
    for ns, ifname, addrs in ((a, a_if, a_addr), (b, b_if, b_addr)):
        for addr in addrs:
            ns.ip("addr", "add", addr, "dev", ifname, "nodad")
        ns.ip("link", "set", ifname, "up")


@pytest.mark.parametrize("backend", ["iptables", "nftables"])
def test_setup_is_idempotent_and_teardown_without_ips_cleans(make_ns: Callable[[str], Netns],
                                                             backend: str) -> None:
    host = make_ns("host")
    b = nf.select_backend(backend)
    for _ in range(2):
        inside(host, lambda: nf.setup_masquerade(b, NET, "ctr1", "eth0", [IP4, IP6]))
    chain = names.masq_chain(NET, "ctr1")
    if backend == "iptables":
        v4 = save(host, 4)
        assert v4.count(f"-A POSTROUTING -s 10.99.0.2/32 -m comment --comment "
                        f'"name: \\"testnet\\" id: \\"ctr1\\"" -j {chain}') == 1
        assert v4.count(f"-A {chain} ") == 2 and save(host, 6).count(f"-A {chain} ") == 2
    else:
        assert nft_masq_rules(host) == [names.nft_masq_comment(NET, "eth0", "ctr1")] * 2
    inside(host, lambda: nf.teardown_masquerade(NET, "ctr1", "eth0"))
    assert chain not in save(host, 4) + save(host, 6)
    assert nft_masq_rules(host) == []
    inside(host, lambda: nf.teardown_masquerade(NET, "ctr1", "eth0"))  # idempotent


def test_gc_both_backends(make_ns: Callable[[str], Netns]) -> None:
    host = make_ns("host")
    other = ipaddress.ip_interface("10.99.0.3/24")

    def setup() -> None:
        for backend in ("iptables", "nftables"):
            b = nf.select_backend(backend)
            nf.setup_masquerade(b, NET, "keep", "eth0", [IP4])
            nf.setup_masquerade(b, NET, "stale", "eth0", [other])
            nf.setup_masquerade(b, "othernet", "stale", "eth0", [other])
        nf.gc_masquerade(NET, {("keep", "eth0")})

    inside(host, setup)
    text = save(host, 4)
    assert names.masq_chain(NET, "keep") in text
    assert names.masq_chain(NET, "stale") not in text
    assert names.masq_chain("othernet", "stale") in text
    assert sorted(nft_masq_rules(host)) == sorted([names.nft_masq_comment(NET, "eth0", "keep"),
                                                   names.nft_masq_comment("othernet", "eth0", "stale")])


@pytest.mark.parametrize("backend", ["iptables", "nftables"])
def test_traffic_is_masqueraded(make_ns: Callable[[str], Netns], backend: str) -> None:
    host, ctr, remote = make_ns("host"), make_ns("ctr"), make_ns("remote")
    veth(host, "cntfh0", ["10.99.0.1/24"], ctr, "eth0", [str(IP4)])
    veth(host, "cntfh1", ["192.0.2.1/24"], remote, "eth0", ["192.0.2.2/24"])
    ctr.ip("route", "add", "default", "via", "10.99.0.1")
    host.run(["sysctl", "-qw", "net.ipv4.ip_forward=1"])
    with serve(remote, "tcp", 8000, accepts=2):
        assert tcp_connect(ctr, "192.0.2.2", 8000, timeout=1) is None  # no route back yet
        inside(host, lambda: nf.setup_masquerade(nf.select_backend(backend), NET, "ctr1", "eth0", [IP4]))
        assert tcp_connect(ctr, "192.0.2.2", 8000) == "192.0.2.1"


def _go_bridge(host: Netns, ctr: Netns, verb: str, tmp_path: Path) -> dict:
    conf = {"cniVersion": "1.0.0", "name": NET, "type": "bridge", "bridge": "cntfbr0", "isGateway": True,
            "ipMasq": True, "ipam": {"type": "host-local", "dataDir": str(tmp_path / "ipam"),
                                     "ranges": [[{"subnet": "10.99.0.0/24"}], [{"subnet": "fd99::/64"}]]}}
    env = {"PATH": os.environ["PATH"], "CNI_COMMAND": verb, "CNI_CONTAINERID": "ctr1", "CNI_NETNS": ctr.path,
           "CNI_IFNAME": "eth0", "CNI_PATH": str(GO_BRIDGE.parent)}
    proc = host.run([str(GO_BRIDGE)], env=env, input=json.dumps(conf), check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout) if proc.stdout.strip() else {}


@pytest.mark.skipif(not GO_BRIDGE.exists(), reason="Go bridge plugin not installed")
def _rules(saved: str) -> list[str]:
    """iptables-save output without its comment lines (they carry timestamps)."""
    return [line for line in saved.splitlines() if not line.startswith("#")]


def test_interop_with_go_bridge(make_ns: Callable[[str], Netns], tmp_path: Path) -> None:
    host, ctr = make_ns("host"), make_ns("ctr")
    chain = names.masq_chain(NET, "ctr1")
    result = _go_bridge(host, ctr, "ADD", tmp_path)
    ips = [ipaddress.ip_interface(ip["address"]) for ip in result["ips"]]
    go_v4, go_v6 = save(host, 4), save(host, 6)
    assert chain in go_v4 and chain in go_v6
    # Go's rules are removed by us, even when we do not know the IPs (DEL with an empty netns).
    inside(host, lambda: nf.teardown_masquerade(NET, "ctr1", "eth0"))
    assert chain not in save(host, 4) + save(host, 6)
    # Ours are what Go writes, and Go's DEL removes them.
    inside(host, lambda: nf.setup_masquerade(nf.select_backend("iptables"), NET, "ctr1", "eth0", ips))
    assert _rules(save(host, 4)) == _rules(go_v4)
    _go_bridge(host, ctr, "DEL", tmp_path)
    assert chain not in save(host, 4) + save(host, 6)


def test_macspoofchk_drops_spoofed_source(make_ns: Callable[[str], Netns]) -> None:
    host, ctr = make_ns("host"), make_ns("ctr")
    host.ip("link", "add", "cntfbr0", "type", "bridge")
    host.ip("addr", "add", "10.99.0.1/24", "dev", "cntfbr0")
    host.ip("link", "set", "cntfbr0", "up")
    veth(host, "cntfv0", [], ctr, "eth0", [str(IP4)])
    host.ip("link", "set", "cntfv0", "master", "cntfbr0")
    mac = json.loads(ctr.ip("-j", "link", "show", "eth0").stdout)[0]["address"]
    for _ in range(2):
        inside(host, lambda: nf.setup_macspoofchk("cntfv0", mac, "ctr1", "eth0"))
    listing = host.run(["nft", "list", "table", "bridge", "nat"]).stdout
    assert listing.count('jump cni-br-iface-ctr1-eth0 comment "macspoofchk-ctr1-eth0"') == 1
    assert _pings_soon(ctr, "10.99.0.1")
    ctr.ip("link", "set", "eth0", "address", "0a:58:0a:63:00:99")
    ctr.ip("neigh", "flush", "all")
    assert not ping(ctr, "10.99.0.1")
    for _ in range(2):
        inside(host, lambda: nf.teardown_macspoofchk("ctr1", "eth0"))
    assert "cni-br-iface" not in host.run(["nft", "list", "table", "bridge", "nat"]).stdout
    # The dropped ARP requests left a FAILED entry in the container and the host still knows the old MAC: a
    # single one-second ping can lose that race against ARP's own one-second retries (seen under load in CI).
    ctr.ip("neigh", "flush", "all")
    host.ip("neigh", "flush", "dev", "cntfbr0")
    assert _pings_soon(ctr, "10.99.0.1")


def _pings_soon(ns: Netns, address: str, tries: int = 3) -> bool:
    """A working path answers one of a few one-second pings (the first may wait for ARP)."""
    return any(ping(ns, address) for _ in range(tries))


@pytest.fixture
def ip6tables_unusable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ip6tables commands that fail as on a node booted with IPv6 disabled (first on PATH)."""
    fake = tmp_path / "ipv6-disabled"
    fake.mkdir()
    for tool in ("ip6tables", "ip6tables-save", "ip6tables-restore"):
        (fake / tool).write_text("#!/bin/sh\necho \"ip6tables v1.8.9 (nf_tables): can't initialize ip6tables table "
                                 "'nat': Address family not supported by protocol\" >&2\nexit 3\n")
        (fake / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")


def test_del_and_gc_skip_an_unusable_ipv6_iptables(make_ns: Callable[[str], Netns], ip6tables_unusable: None) -> None:
    """Upstream skips an iptables it cannot use; a DEL or GC that knows no IPv6 address must not fail there."""
    host = make_ns("host")
    chain = names.masq_chain(NET, "ctr1")
    inside(host, lambda: nf.setup_masquerade(nf.select_backend("iptables"), NET, "ctr1", "eth0", [IP4]))
    assert chain in save(host, 4)
    inside(host, lambda: nf.teardown_masquerade(NET, "ctr1", "eth0"))  # DEL with an empty netns: no addresses
    assert chain not in save(host, 4)
    inside(host, lambda: nf.gc_masquerade(NET, set()))
    inside(host, lambda: nf.unforward_ports(NET, "ctr1"))
    inside(host, lambda: nf.gc_ports(NET, set()))
    # No IPv6 nat table in the kernel at all: nothing can be there, so nothing is read (runner.ipt_nat_absent).
    inside(host, lambda: nf.teardown_masquerade(NET, "ctr1", "eth0", [IP6]))
    host.run(["nft", "add", "table", "ip6", "nat"])  # what ip6tables-nft makes on first use
    with pytest.raises(nf.NetfilterError, match="ip6tables-save"):  # then an IPv6 address known: a failure
        inside(host, lambda: nf.teardown_masquerade(NET, "ctr1", "eth0", [IP6]))
