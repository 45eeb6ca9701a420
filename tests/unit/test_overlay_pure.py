"""Pure pieces of the overlay: subnet search, peer selection and diff, VTEP MACs, etcd key ranges."""

from __future__ import annotations

import ipaddress

import pytest

from cni_common.errors import CNIError, ErrorCode
from cni_common.overlay.etcd import prefix_end, validate_endpoint
from cni_common.overlay.peers import KernelState, Peer, plan, select
from cni_common.overlay.subnets import candidates, first_free, fits, subnet_key_part
from cni_common.overlay.vtep import normalize_mac, vtep_mac

N = ipaddress.ip_network
A = ipaddress.ip_address
NET = N("10.244.0.0/16")


def test_candidates_are_lazy_and_ordered() -> None:
    big = candidates(N("10.0.0.0/8"), 24)
    assert [next(big) for _ in range(2)] == [N("10.0.0.0/24"), N("10.0.1.0/24")]
    assert list(candidates(N("fd00::/62"), 64))[-1] == N("fd00:0:0:3::/64")


def test_first_free_skips_taken_and_reports_full() -> None:
    assert first_free(NET, 24, {N("10.244.0.0/24"): "a", N("10.244.2.0/24"): "b"}) == N("10.244.1.0/24")
    assert first_free(N("10.0.0.0/23"), 24, {N("10.0.0.0/24"): "a", N("10.0.1.0/24"): "b"}) is None


def test_fits_and_key_part() -> None:
    assert fits(N("10.244.3.0/24"), NET, 24)
    assert not fits(N("10.245.3.0/24"), NET, 24) and not fits(N("10.244.3.0/25"), NET, 24)
    assert not fits(N("fd00::/64"), NET, 24)
    assert subnet_key_part(N("10.244.3.0/24")) == "10.244.3.0-24"


def test_vtep_mac_is_stable_unicast_and_local() -> None:
    mac = vtep_mac(1, "192.0.2.1")
    assert mac == vtep_mac(1, A("192.0.2.1"))
    assert mac != vtep_mac(2, "192.0.2.1") and mac != vtep_mac(1, "192.0.2.2")
    first = int(mac.split(":")[0], 16)
    assert first & 0x01 == 0 and first & 0x02 == 2
    assert normalize_mac("AA-BB-CC-DD-EE-FF".replace("AA", "02")) == "02:bb:cc:dd:ee:ff"
    with pytest.raises(ValueError):
        normalize_mac("01:00:5e:00:00:01")  # multicast


def _peer(n: int, mac: str = "") -> Peer:
    return Peer(A(f"192.0.2.{n}"), N(f"10.244.{n}.0/24"), mac or f"02:00:00:00:00:0{n}", f"node{n}")


def test_select_drops_self_foreign_and_duplicate_subnets() -> None:
    me = _peer(1)
    dup = Peer(A("192.0.2.9"), N("10.244.2.0/24"), "02:00:00:00:00:09")
    outside = Peer(A("192.0.2.8"), N("10.9.0.0/24"), "02:00:00:00:00:08")
    chosen = select([_peer(3), me, _peer(2), dup, outside], own_subnet=me.subnet, own_ips=[me.underlay_ip],
                    network=NET)
    assert chosen == [_peer(2), _peer(3)] and chosen[0].underlay_ip == A("192.0.2.2")


def test_plan_adds_missing_and_changed_and_removes_stale() -> None:
    p2, p3 = _peer(2), _peer(3)
    state = KernelState(
        routes={p2.subnet: p2.gateway, N("10.244.7.0/24"): A("10.244.7.0"), N("192.168.0.0/24"): A("192.168.0.1")},
        neighbours={p2.gateway: "02:00:00:00:00:99", A("10.244.7.0"): "02:00:00:00:00:07"},
        fdb={"02:00:00:00:00:99": p2.underlay_ip, "02:00:00:00:00:07": A("192.0.2.7")})
    changes = plan([p2, p3], state, NET)
    assert changes.add == [p2, p3]  # p2's MAC changed: replaced, not skipped
    assert changes.del_routes == [N("10.244.7.0/24")]  # 192.168/24 is not ours
    assert changes.del_neighbours == [A("10.244.7.0")]
    assert sorted(changes.del_fdb) == ["02:00:00:00:00:07", "02:00:00:00:00:99"]


def test_plan_is_empty_when_converged() -> None:
    p2 = _peer(2)
    state = KernelState(routes={p2.subnet: p2.gateway}, neighbours={p2.gateway: p2.vtep_mac},
                        fdb={p2.vtep_mac: p2.underlay_ip})
    assert plan([p2], state, NET).empty()


def test_prefix_end_and_endpoint_validation() -> None:
    assert prefix_end("/a/") == b"/a0"
    assert validate_endpoint("https://etcd.example:2379/") == "https://etcd.example:2379"
    for bad in ("etcd:2379", "http://etcd", "ftp://x:1", "http://x:1/v3"):
        with pytest.raises(CNIError) as err:
            validate_endpoint(bad)
        assert err.value.code == ErrorCode.INVALID_CONFIG and bad in err.value.msg
