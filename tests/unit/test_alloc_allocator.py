"""The round-robin allocator against the in-memory store (upstream's allocator_test.go cases, and more)."""

from __future__ import annotations

import ipaddress

import pytest

from cni_common.alloc import allocator, config
from cni_common.alloc.store import Owner
from cni_common.errors import CNIError, ErrorCode, PluginCode
from tests.helpers.memory_store import MemoryStore

ip = ipaddress.ip_address


def rset(*ranges: dict) -> config.RangeSet:
    return config.parse_range_set(list(ranges), 0)


def walk(rs: config.RangeSet, store: MemoryStore) -> list[str]:
    return [str(a) for a, _ in allocator.Allocator(rs, store, 0).walk()]


def test_walk_from_start_skips_gateway():
    assert walk(rset({"subnet": "10.0.0.0/29"}), MemoryStore()) == [f"10.0.0.{i}" for i in range(2, 7)]


def test_walk_resumes_after_last_reserved_and_wraps():
    store = MemoryStore(last_reserved={0: ip("10.0.0.4")})
    assert walk(rset({"subnet": "10.0.0.0/29"}), store) == ["10.0.0.5", "10.0.0.6", "10.0.0.2", "10.0.0.3",
                                                           "10.0.0.4"]


def test_walk_crosses_ranges_of_a_set():
    rs = rset({"subnet": "10.0.0.0/30"}, {"subnet": "10.0.1.0/30"})
    store = MemoryStore(last_reserved={0: ip("10.0.0.2")})
    assert walk(rs, store) == ["10.0.1.2", "10.0.0.2"]


def test_walk_last_reserved_outside_set_starts_over():
    store = MemoryStore(last_reserved={0: ip("192.168.0.9")})
    assert walk(rset({"subnet": "10.0.0.0/30"}), store) == ["10.0.0.2"]


def test_non_default_gateway_lets_dot_one_out():
    rs = rset({"subnet": "10.0.0.0/29", "gateway": "10.0.0.6"})
    assert walk(rs, MemoryStore())[:2] == ["10.0.0.1", "10.0.0.2"]
    assert "10.0.0.6" not in walk(rs, MemoryStore())


def test_round_robin_then_exhausted():
    store = MemoryStore()
    alloc = allocator.Allocator(rset({"subnet": "10.0.0.0/29"}), store, 0)
    got = [str(alloc.get(f"c{i}", "eth0").address) for i in range(5)]
    assert got == [f"10.0.0.{i}/29" for i in range(2, 7)]
    assert store.last_reserved_ip(0) == ip("10.0.0.6")
    with pytest.raises(CNIError) as exc:
        alloc.get("c9", "eth0")
    assert exc.value.code == PluginCode.IPAM_EXHAUSTED
    assert "no IP addresses available in range set 0: 10.0.0.1-10.0.0.6" in exc.value.msg


def test_released_ip_is_reused_only_after_a_full_turn():
    store = MemoryStore()
    alloc = allocator.Allocator(rset({"subnet": "10.0.0.0/29"}), store, 0)
    alloc.get("a", "eth0")
    store.release_by_id("a", "eth0")
    assert str(alloc.get("b", "eth0").address.ip) == "10.0.0.3"


def test_gateway_returned_with_address():
    cfg = allocator.Allocator(rset({"subnet": "fd00::/120"}), MemoryStore(), 0).get("a", "eth0")
    assert (str(cfg.address), str(cfg.gateway), cfg.interface) == ("fd00::2/120", "fd00::1", None)


def test_duplicate_allocation_refused():
    store = MemoryStore({ip("10.0.0.3"): Owner("a", "eth0")})
    with pytest.raises(CNIError) as exc:
        allocator.Allocator(rset({"subnet": "10.0.0.0/29"}), store, 0).get("a", "eth0")
    assert "10.0.0.3 has been allocated to a, duplicate allocation is not allowed" in exc.value.msg
    # another ifname of the same container is a different attachment
    allocator.Allocator(rset({"subnet": "10.0.0.0/29"}), store, 0).get("a", "eth1")


def test_requested_ip_taken_gateway_outside():
    store = MemoryStore({ip("10.0.0.3"): Owner("x", "eth0")})
    alloc = allocator.Allocator(rset({"subnet": "10.0.0.0/29"}), store, 0)
    assert str(alloc.get("a", "eth0", ip("10.0.0.5")).address) == "10.0.0.5/29"
    for want, code, needle in [("10.0.0.3", PluginCode.ADDRESS_UNAVAILABLE, "10.0.0.3 is not available"),
                               ("10.0.0.1", PluginCode.ADDRESS_UNAVAILABLE, "10.0.0.1 is the gateway"),
                               ("10.0.0.9", ErrorCode.INVALID_CONFIG, "10.0.0.9 is not in range set")]:
        with pytest.raises(CNIError) as exc:
            alloc.get("b", "eth0", ip(want))
        assert exc.value.code == code and needle in exc.value.msg


def test_allocate_one_per_set_with_requested():
    sets = [rset({"subnet": "10.0.0.0/29"}), config.parse_range_set([{"subnet": "fd00::/120"}], 1)]
    store = MemoryStore()
    got = allocator.allocate(sets, store, "a", "eth0", [ip("fd00::9")])
    assert [str(c.address) for c in got] == ["10.0.0.2/29", "fd00::9/120"]
    assert store.last == {0: ip("10.0.0.2"), 1: ip("fd00::9")}


def test_allocate_rolls_back_only_this_call():
    sets = [rset({"subnet": "10.0.0.0/29"}), config.parse_range_set([{"subnet": "10.1.0.0/30"}], 1)]
    store = MemoryStore({ip("10.1.0.2"): Owner("other", "eth0"), ip("10.9.9.9"): Owner("a", "eth0")})
    with pytest.raises(CNIError) as exc:
        allocator.allocate(sets, store, "a", "eth0")
    assert exc.value.code == PluginCode.IPAM_EXHAUSTED and exc.value.msg.startswith("failed to allocate for range 1")
    # the IP from set 0 is rolled back; what "a" held before the call is kept (upstream would drop it)
    assert store.reserved == {ip("10.1.0.2"): Owner("other", "eth0"), ip("10.9.9.9"): Owner("a", "eth0")}


@pytest.mark.parametrize("requested,needle", [
    (["10.7.0.1"], "failed to allocate all requested IPs: 10.7.0.1"),
    (["10.0.0.3", "10.0.0.4"], "failed to allocate all requested IPs: 10.0.0.4"),
])
def test_unusable_requested_ips_refused_before_reserving(requested, needle):
    store = MemoryStore()
    with pytest.raises(CNIError) as exc:
        allocator.allocate([rset({"subnet": "10.0.0.0/29"})], store, "a", "eth0", [ip(r) for r in requested])
    assert exc.value.code == ErrorCode.INVALID_CONFIG and needle in exc.value.msg
    assert store.reserved == {}


def test_legacy_owner_matches_any_ifname():
    assert Owner("a", None).matches("a", "eth7") and not Owner("a", "eth0").matches("a", "eth1")
    assert not Owner("a", None).matches("b", "eth0")
