"""The overlay's etcd store against a real etcd (Debian's etcd-server) on 127.0.0.1, random port, temp dir.

No namespace is needed: etcd only listens on loopback, nothing in the machine's network config changes.
"""

from __future__ import annotations

import ipaddress
import threading
import uuid
from typing import Iterator

import pytest

from cni_common.errors import CNIError, ErrorCode
from cni_common.overlay.etcd import EtcdClient, StoreUnreachable
from cni_common.overlay.liveness import Liveness, encode
from cni_common.overlay.peers import Peer
from cni_common.overlay.subnets import SubnetStore
from tests.helpers.etcd import ETCD, EtcdServer, free_port

NET = ipaddress.ip_network("10.244.0.0/16")


@pytest.fixture(scope="module")
def etcd() -> Iterator[EtcdServer]:
    import os
    import shutil

    if not shutil.which(ETCD) and not os.access(ETCD, os.X_OK):
        pytest.skip("etcd (Debian etcd-server) is not installed")
    server = EtcdServer().start()
    yield server
    server.stop()


@pytest.fixture
def client(etcd: EtcdServer) -> EtcdClient:
    return EtcdClient([etcd.url])


@pytest.fixture
def prefix() -> str:
    return f"/cnt-x/{uuid.uuid4().hex}"


def test_reserve_is_stable_per_node_and_distinct_between_nodes(client: EtcdClient, prefix: str) -> None:
    store = SubnetStore(client, prefix)
    a = store.reserve("a", NET, 24)
    b = store.reserve("b", NET, 24)
    assert a != b
    assert store.reserve("a", NET, 24) == a  # a restart finds the same subnet
    assert store.owners() == {a: "a", b: "b"}


def test_pinned_node_subnet_and_conflict(client: EtcdClient, prefix: str) -> None:
    store = SubnetStore(client, prefix)
    pinned = ipaddress.ip_network("10.244.7.0/24")
    assert store.reserve("a", NET, 24, wanted=pinned) == pinned
    with pytest.raises(CNIError) as err:
        store.reserve("b", NET, 24, wanted=pinned)
    assert err.value.code == ErrorCode.INVALID_CONFIG and "nodeSubnet" in err.value.msg and "'a'" in err.value.msg
    # moving a node to another pinned subnet frees the old one
    moved = ipaddress.ip_network("10.244.9.0/24")
    assert store.reserve("a", NET, 24, wanted=moved) == moved
    assert store.owners() == {moved: "a"}


def test_reservation_follows_a_changed_network(client: EtcdClient, prefix: str) -> None:
    store = SubnetStore(client, prefix)
    store.reserve("a", NET, 24)
    other = ipaddress.ip_network("10.250.0.0/16")
    got = store.reserve("a", other, 24)
    assert got.subnet_of(other)
    assert store.owners() == {got: "a"}


def test_release(client: EtcdClient, prefix: str) -> None:
    store = SubnetStore(client, prefix)
    a = store.reserve("a", NET, 24)
    assert store.release("a") == a
    assert store.owners() == {}


def test_full_network_is_a_clear_error(client: EtcdClient, prefix: str) -> None:
    store = SubnetStore(client, prefix)
    small = ipaddress.ip_network("10.9.0.0/23")
    store.reserve("a", small, 24)
    store.reserve("b", small, 24)
    with pytest.raises(CNIError) as err:
        store.reserve("c", small, 24)
    assert err.value.code == ErrorCode.TRY_AGAIN_LATER and "no free /24" in err.value.msg


@pytest.mark.parametrize("round_", range(25))
def test_simultaneous_starts_never_share_a_subnet(etcd: EtcdServer, round_: int) -> None:
    """Several nodes released by one barrier: every one gets a subnet, all different (25 rounds)."""
    prefix = f"/cnt-x/race-{uuid.uuid4().hex}"
    nodes = [f"n{i}" for i in range(5)]
    barrier = threading.Barrier(len(nodes))
    got: dict[str, object] = {}

    def start(node: str) -> None:
        store = SubnetStore(EtcdClient([etcd.url]), prefix)
        barrier.wait()
        try:
            got[node] = store.reserve(node, NET, 24)
        except Exception as exc:  # recorded, asserted below
            got[node] = exc

    threads = [threading.Thread(target=start, args=(n,)) for n in nodes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    subnets = list(got.values())
    assert all(isinstance(s, ipaddress.IPv4Network) for s in subnets), subnets
    assert len(set(subnets)) == len(nodes)
    assert SubnetStore(EtcdClient([etcd.url]), prefix).owners() == {s: n for n, s in got.items()}


def revoke(client: EtcdClient, lease: int) -> None:
    """End a lease now: what its expiry does, without waiting for it."""
    client.call("/v3/lease/revoke", {"ID": str(lease)})


def test_liveness_publish_renew_and_revoke(client: EtcdClient, prefix: str) -> None:
    live = Liveness(client, prefix, ttl=30)
    me = Peer(ipaddress.ip_address("192.0.2.1"), ipaddress.ip_network("10.244.1.0/24"), "02:00:00:00:00:01", "a")
    lease = live.publish(me)
    assert live.publish(me) == lease  # same record: the lease is renewed, not replaced
    peers, revision = live.live_peers()
    assert peers == [me] and peers[0].node == "a" and revision > 0
    moved = Peer(ipaddress.ip_address("192.0.2.9"), me.subnet, me.vtep_mac, "a")
    assert live.publish(moved) != lease  # changed record: new lease
    revoke(client, live.client.get(live.key("a")).lease)
    assert live.live_peers()[0] == []


def test_renew_notices_a_record_written_again_on_another_lease(client: EtcdClient, prefix: str) -> None:
    """An ADD and the agent of one node publishing at once: whichever writes last owns the record's lease."""
    live = Liveness(client, prefix, ttl=30)
    me = Peer(ipaddress.ip_address("192.0.2.1"), ipaddress.ip_network("10.244.1.0/24"), "02:00:00:00:00:01", "c")
    agents_lease = live.publish(me)
    assert live.renew(agents_lease, me)
    adds_lease = client.grant(30)
    client.put(live.key("c"), encode(me), adds_lease)  # the racing ADD wrote last
    assert not live.renew(agents_lease, me)  # the agent's lease is alive but holds nothing
    assert live.publish(me) == adds_lease and live.renew(adds_lease, me)  # so it adopts the record's lease
    revoke(client, adds_lease)
    assert not live.renew(adds_lease, me)


def test_watch_sees_joins_and_leaves(client: EtcdClient, prefix: str) -> None:
    live = Liveness(client, prefix, ttl=30)
    _, revision = live.live_peers()
    me = Peer(ipaddress.ip_address("192.0.2.1"), ipaddress.ip_network("10.244.1.0/24"), "02:00:00:00:00:01", "b")
    lease = live.publish(me)
    revoke(client, lease)
    kinds: list[str] = []
    for batch in client.watch_prefix(live.prefix, revision + 1, idle_timeout=10):
        kinds.extend(ev.kind for ev in batch)
        if len(kinds) >= 2:
            break
    assert kinds == ["PUT", "DELETE"]


def test_unreachable_store_names_every_endpoint() -> None:
    dead = [f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"]
    with pytest.raises(StoreUnreachable) as err:
        EtcdClient(dead, timeout=2).get("/x")
    assert err.value.code == ErrorCode.TRY_AGAIN_LATER
    assert all(e in err.value.msg for e in dead)


def test_fail_over_to_the_next_endpoint(etcd: EtcdServer, prefix: str) -> None:
    client = EtcdClient([f"http://127.0.0.1:{free_port()}", etcd.url], timeout=2)
    client.put(prefix + "/k", "v")
    assert client.get(prefix + "/k").value == b"v"


def test_a_lost_owner_key_is_taken_back(client: EtcdClient, prefix: str) -> None:
    store = SubnetStore(client, prefix)
    a = store.reserve("a", NET, 24)
    client.delete(store.subnet_key(a))
    assert store.reserve("a", NET, 24) == a and store.owner(a) == "a"
