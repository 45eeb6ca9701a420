"""portmap config validation (upstream messages) and rule rendering, without a kernel."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from cni_common import netfilter as nf
from cni_common.errors import CNIError
from cni_common.netfilter import names
from cni_common.netfilter import portmap as pmrules
from cni_common.netfilter.xtables import parse_save
from cni_common.skel import CmdArgs
from cni_common.types import Result
from plugins import portmap

PREV = {"cniVersion": "1.0.0",
        "interfaces": [{"name": "cni0"}, {"name": "veth1"}, {"name": "eth0", "sandbox": "/var/run/netns/x"},
                       {"name": "eth1", "sandbox": "/var/run/netns/x"}],
        "ips": [{"interface": 3, "address": "10.1.0.9/24"}, {"interface": 2, "address": "10.99.0.2/24"},
                {"interface": 2, "address": "10.99.0.3/24"}, {"address": "fd99::2/64"}]}
IP4 = ipaddress.ip_interface("10.99.0.2/24")
IP6 = ipaddress.ip_interface("fd99::2/64")


def args(**conf: Any) -> CmdArgs:
    base = {"cniVersion": "1.0.0", "name": "testnet", "type": "portmap", "backend": "iptables", "prevResult": PREV,
            "runtimeConfig": {"portMappings": [{"HostPort": 8080, "ContainerPort": 80, "Protocol": "TCP"}]}}
    base.update(conf)
    base = {k: v for k, v in base.items() if v is not None}
    return CmdArgs(command="ADD", container_id="ctr1", netns="/x", ifname="eth0", args="", path=[],
                   stdin_data=b"", conf=base, cni_version="1.0.0")


def test_parse_defaults_and_case_insensitive_keys() -> None:
    pm = portmap.parse_conf(args())
    assert pm.spec.mappings == [nf.PortMapping(8080, 80, "tcp", "")]
    assert pm.spec.snat and not pm.spec.masq_all and pm.spec.mark_bit == 13
    assert pm.ips == [IP4, IP6]  # eth0's first v4 (not eth1's, not the second), and the index-less v6


@pytest.mark.parametrize("conf,message", [
    ({"markMasqBit": 5, "externalSetMarkChain": "KUBE-MARK-MASQ"},
     "Cannot specify externalSetMarkChain and markMasqBit"),
    ({"markMasqBit": 32}, "MasqMarkBit must be between 0 and 31 (markMasqBit: 32)"),
    ({"markMasqBit": -1}, "MasqMarkBit must be between 0 and 31 (markMasqBit: -1)"),
    ({"runtimeConfig": {"portMappings": [{"hostPort": 80, "containerPort": 0}]}},
     "Invalid container port number: 0 (runtimeConfig.portMappings[0].containerPort)"),
    ({"runtimeConfig": {"portMappings": [{"hostPort": -1, "containerPort": 80}]}},
     "Invalid host port number: -1 (runtimeConfig.portMappings[0].hostPort)"),
    ({"backend": "ebpf"}, 'unrecognized backend "ebpf"'),
    ({"backend": "nftables", "externalSetMarkChain": "X"},
     "nftables backend was requested but configuration contains iptables-specific options [externalSetMarkChain]"),
    ({"backend": "iptables", "conditionsV4": ["ip", "saddr", "1.2.3.4"], "conditionsV6": ["ip6", "saddr", "::1"]},
     "iptables backend was requested but configuration contains nftables-specific options "
     "[conditionsV4 conditionsV6]"),
])
def test_validation_errors(conf: dict[str, Any], message: str) -> None:
    with pytest.raises(CNIError) as err:
        portmap.parse_conf(args(**conf))
    assert err.value.msg == message and err.value.code == 7


def test_nft_conditions_select_nftables() -> None:
    assert portmap.parse_conf(args(backend=None, conditionsV4=["ip", "saddr", "1.2.3.4"])).backend == "nftables"
    assert portmap.conditions_backend(["!", "-s", "1.2.3.4"]) == "iptables"
    assert portmap.conditions_backend([]) == ""


def test_container_ips_skip_host_interfaces() -> None:
    prev = Result.from_dict({"cniVersion": "1.0.0", "interfaces": [{"name": "eth0"}],
                             "ips": [{"interface": 0, "address": "10.0.0.2/24"}]}, "1.0.0")
    assert portmap.container_ips(prev, "eth0") == []


def spec(**kw: Any) -> nf.PortMapSpec:
    base: dict[str, Any] = {"network": "testnet", "container_id": "ctr1",
                            "mappings": [nf.PortMapping(8080, 80, "tcp"), nf.PortMapping(5353, 53, "udp", "10.0.0.9")]}
    base.update(kw)
    return nf.PortMapSpec(**base)


def test_ipt_dnat_rules_match_upstream() -> None:
    rules = pmrules.dnat_rules(spec(), IP4)
    assert rules == [
        ["-p", "tcp", "--dport", "8080", "-s", "10.99.0.0/24", "-j", "CNI-HOSTPORT-SETMARK"],
        ["-p", "tcp", "--dport", "8080", "-s", "127.0.0.1", "-j", "CNI-HOSTPORT-SETMARK"],
        ["-p", "tcp", "--dport", "8080", "-j", "DNAT", "--to-destination", "10.99.0.2:80"],
        ["-p", "udp", "--dport", "5353", "-d", "10.0.0.9", "-s", "10.99.0.0/24", "-j", "CNI-HOSTPORT-SETMARK"],
        ["-p", "udp", "--dport", "5353", "-d", "10.0.0.9", "-s", "127.0.0.1", "-j", "CNI-HOSTPORT-SETMARK"],
        ["-p", "udp", "--dport", "5353", "-d", "10.0.0.9", "-j", "DNAT", "--to-destination", "10.99.0.2:53"]]
    v6 = pmrules.dnat_rules(spec(masq_all=True, external_set_mark_chain="KUBE-MARK-MASQ"), IP6)
    assert v6 == [["-p", "tcp", "--dport", "8080", "-s", "::/0", "-j", "KUBE-MARK-MASQ"],
                  ["-p", "tcp", "--dport", "8080", "-j", "DNAT", "--to-destination", "[fd99::2]:80"]]
    assert pmrules.dnat_rules(spec(snat=False, mappings=[nf.PortMapping(1, 2, "tcp", "0.0.0.0")]), IP4) == [
        ["-p", "tcp", "--dport", "1", "-j", "DNAT", "--to-destination", "10.99.0.2:2"]]


def test_entry_rules_group_by_protocol_15_ports_each() -> None:
    many = [nf.PortMapping(1000 + i, 80, "tcp") for i in range(16)] + [nf.PortMapping(53, 53, "udp")]
    rules = pmrules.entry_rules(spec(mappings=many, conditions_v4=["-s", "1.2.3.4"]), 4)
    assert [r[r.index("--destination-ports") + 1].count(",") + 1 for r in rules] == [15, 1, 1]
    assert rules[0][:8] == ["-m", "comment", "--comment", 'dnat name: "testnet" id: "ctr1"', "-m", "multiport",
                            "-p", "tcp"]
    assert rules[0][-4:] == ["-s", "1.2.3.4", "-j", names.dnat_chain("testnet", "ctr1")]


def test_ipt_forward_batch_fresh_and_replace() -> None:
    text = pmrules.ipt_forward_batch(parse_save(""), spec(), IP4).render() or ""
    chain = names.dnat_chain("testnet", "ctr1")
    assert f":{chain} - [0:0]" in text and "-N CNI-HOSTPORT-DNAT" in text
    assert '-I POSTROUTING 1 -m comment --comment "CNI portfwd requiring masquerade" -j CNI-HOSTPORT-MASQ' in text
    assert "-A CNI-HOSTPORT-SETMARK -m comment --comment \"CNI portfwd masquerade mark\" -j MARK --set-xmark " \
           "0x2000/0x2000" in text
    saved = parse_save(f"*nat\n:CNI-HOSTPORT-DNAT - [0:0]\n:{chain} - [0:0]\n"
                       f"-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment x -m multiport --dports 1 -j {chain}\n")
    text = pmrules.ipt_forward_batch(saved, spec(), IP4).render() or ""
    assert f"-D CNI-HOSTPORT-DNAT -p tcp -m comment --comment x -m multiport --dports 1 -j {chain}" in text
    assert "-N CNI-HOSTPORT-DNAT" not in text


def test_ipt_unforward_and_gc() -> None:
    chain = names.dnat_chain("testnet", "ctr1")
    saved = parse_save(f"*nat\n:CNI-HOSTPORT-DNAT - [0:0]\n:{chain} - [0:0]\n"
                       f'-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \\"testnet\\" id: \\"ctr1\\"" '
                       f"-m multiport --dports 8080 -j {chain}\n-A {chain} -p tcp -j DNAT --to-destination 1.1.1.1:1\n")
    text = pmrules.ipt_unforward_batch(saved, "testnet", "ctr1").render() or ""
    assert text.endswith(f"-F {chain}\n-X {chain}\nCOMMIT\n") and "-D CNI-HOSTPORT-DNAT" in text
    assert pmrules.ipt_gc_batch(saved, "testnet", {"ctr1"}).render() is None
    assert pmrules.ipt_gc_batch(saved, "othernet", set()).render() is None
    assert pmrules.ipt_gc_batch(saved, "testnet", set()).render() == text


def test_nft_forward_lines() -> None:
    lines = pmrules.nft_forward_lines(spec(conditions_v4=["ip", "saddr", "!=", "1.2.3.4"]), IP4, [("hostports", 4)])
    assert "add rule ip cni_hostport prerouting ip saddr != 1.2.3.4 fib daddr type local jump hostports_all" in lines
    assert "delete rule ip cni_hostport hostports handle 4" in lines
    assert 'add rule ip cni_hostport hostports tcp dport 8080 dnat to 10.99.0.2:80 comment "ctr1"' in lines
    assert ('add rule ip cni_hostport hostports ip daddr 10.0.0.9 udp dport 5353 dnat to 10.99.0.2:53 '
            'comment "ctr1"') in lines
    assert 'add rule ip cni_hostport masquerading ip saddr 10.99.0.0/24 ip daddr 10.99.0.2 masquerade comment "ctr1"' \
        in lines
    assert 'add rule ip cni_hostport masquerading ip saddr 127.0.0.1 ip daddr 10.99.0.2 masquerade comment "ctr1"' \
        in lines
    v6 = pmrules.nft_forward_lines(spec(snat=False), IP6, [])
    assert 'add rule ip6 cni_hostport hostports tcp dport 8080 dnat to [fd99::2]:80 comment "ctr1"' in v6
    assert not any("masquerad" in ln or "5353" in ln for ln in v6)


def test_nft_owned_handles() -> None:
    listing = [{"rule": {"chain": "hostports", "handle": 3, "comment": "ctr1"}},
               {"rule": {"chain": "prerouting", "handle": 4, "comment": "ctr1"}},
               {"rule": {"chain": "masquerading", "handle": 5, "comment": "ctr2"}}]
    assert pmrules.nft_owned_handles(listing, "ctr1") == [("hostports", 3)]
