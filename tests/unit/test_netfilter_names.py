"""Chain names, hashes and comments must equal the Go plugins' byte for byte (values seen from v1.1.1)."""

from __future__ import annotations

import pytest

from cni_common.netfilter import names


def test_masq_chain_matches_go_bridge() -> None:
    # /usr/lib/cni/bridge v1.1.1, network "testnet", container "ctr1"
    assert names.masq_chain("testnet", "ctr1") == "CNI-cd7ce15e03fb592b7aed2b94"


def test_dnat_chain_matches_go_portmap() -> None:
    assert names.dnat_chain("testnet", "ctr1") == "CNI-DN-cd7ce15e03fb592b7aed2"


def test_chain_names_are_28_chars() -> None:
    for make in (names.masq_chain, names.dnat_chain, names.old_snat_chain):
        assert len(make("a-network", "f" * 64)) == 28


def test_format_hash_rejects_bad_lengths() -> None:
    with pytest.raises(ValueError):
        names.format_hash(4, "CNI-", "x")
    with pytest.raises(ValueError):
        names.format_hash(129, "", "x")


@pytest.mark.parametrize("raw,quoted", [
    ("testnet", '"testnet"'),
    ('a"b', '"a\\"b"'),
    ("a\\b", '"a\\\\b"'),
    ("tab\there", '"tab\\there"'),
    ("\x01", '"\\x01"'),
    ("ünï", '"ünï"'),
])
def test_go_quote(raw: str, quoted: str) -> None:
    assert names.go_quote(raw) == quoted


def test_ipt_comment() -> None:
    assert names.ipt_comment("testnet", "ctr1") == 'name: "testnet" id: "ctr1"'


def test_dnat_comment_is_trimmed_like_go() -> None:
    assert names.dnat_comment("n", "c") == 'dnat name: "n" id: "c"'
    long = names.dnat_comment("n" * 300, "c")
    assert len(long) == 256 and long.endswith("...")


def test_nft_masq_comment_layout() -> None:
    comment = names.nft_masq_comment('te"stnet', "eth0", "ctr1")
    prefix = names.nft_instance_hash('te"stnet', "eth0", "ctr1")
    assert comment == f"{prefix}, net: testnet, if: eth0, id: ctr1"
    assert prefix.startswith(names.nft_network_hash('te"stnet') + "-")
    assert len(prefix) == 33


def test_nft_masq_comment_is_cut_to_128() -> None:
    assert len(names.nft_masq_comment("n", "eth0", "c" * 200)) == 128


def test_macspoof_names() -> None:
    assert names.macspoof_iface_chain("ctr1", "eth0") == "cni-br-iface-ctr1-eth0"
    assert names.macspoof_mac_chain("ctr1", "eth0") == "cni-br-iface-ctr1-eth0-mac"
    assert names.macspoof_comment("ctr1", "eth0") == "macspoofchk-ctr1-eth0"
