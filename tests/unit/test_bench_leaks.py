"""bench.leaks: what counts as left-over state of a pod, and reading ADD results."""

from __future__ import annotations

from pathlib import Path

from bench import confs
from bench.leaks import Leftovers, count_matching_lines, pod_pattern, reservation_files, result_addresses


def test_pattern_matches_whole_addresses_and_ids_only() -> None:
    pattern = pod_pattern(["10.99.0.1", "fd99::2", "cntb-burst-1"])
    assert pattern.search("-A POSTROUTING -s 10.99.0.1/32 -j CNI-x")
    assert pattern.search("dnat to 10.99.0.1:80")
    assert pattern.search("--to-destination [fd99::2]:80")
    assert pattern.search('comment "name: \\"n\\" id: \\"cntb-burst-1\\""')
    assert not pattern.search("-s 10.99.0.10/32")
    assert not pattern.search("-s 110.99.0.1/32")
    assert not pattern.search('id: "cntb-burst-12"')
    assert not pattern.search("ip6 saddr fd99::20")


def test_pattern_matches_per_pod_chains_not_shared_ones() -> None:
    pattern = pod_pattern([])
    assert pattern.search("-N CNI-3a2f654f9ba8eb5c47ee9b0f")
    assert pattern.search("-N CNI-DN-0123456789abcdef01234")
    assert not pattern.search("-N CNI-HOSTPORT-DNAT")


def test_count_matching_lines() -> None:
    text = "a 10.1.1.1\nb\nc 10.1.1.1 10.1.1.1\n"
    assert count_matching_lines(text, pod_pattern(["10.1.1.1"])) == 2


def test_reservation_files(tmp_path: Path) -> None:
    for name in ("10.99.0.2", "fd99::2", "lock", "last_reserved_ip.0", ".cni-index.json"):
        (tmp_path / name).write_text("x")
    assert sorted(p.name for p in reservation_files(tmp_path)) == ["10.99.0.2", "fd99::2"]
    assert reservation_files(tmp_path / "missing") == []


def test_leftovers_describe() -> None:
    assert Leftovers(0, 0, 0, 0).describe() == "nothing left"
    assert Leftovers(1, 0, 2, 0).total == 3
    assert "1 IP files" in Leftovers(1, 0, 2, 0).describe()


def test_result_addresses() -> None:
    result = {"ips": [{"address": "10.99.0.2/16"}, {"address": "fd99::2/64"}]}
    assert result_addresses(result) == ["10.99.0.2", "fd99::2"]
    assert result_addresses('{"ips": []}') == []
    assert result_addresses("error text") == []


def test_confs_are_the_same_for_both_sides_but_the_data_dir(tmp_path: Path) -> None:
    ours, go = confs.chain_conflist(tmp_path / "a"), confs.chain_conflist(tmp_path / "b")
    assert ours["plugins"][0]["ipam"].pop("dataDir") != go["plugins"][0]["ipam"].pop("dataDir")
    assert ours == go
    assert [p["type"] for p in ours["plugins"]] == ["bridge", "portmap"]
    assert ours["plugins"][0]["ipMasq"] is True
    assert len(ours["plugins"][0]["ipam"]["ranges"]) == 2  # dual-stack
    assert confs.burst_port(3)["hostPort"] != confs.burst_port(4)["hostPort"]
