"""The agent's pure rules under faults: the watch back-off, the grace after an outage (:class:`Contact`),
plans without deletions, the store's answer budget, transient etcd errors, and the plugin path staying free of
the agent's metrics library."""

from __future__ import annotations

import ipaddress
import socket
import subprocess
import sys
import time
from typing import Iterator, Optional

import pytest

from cni_common.overlay import etcd as etcd_mod
from cni_common.overlay.agent import Backoff, Contact
from cni_common.overlay.etcd import EtcdClient, StoreUnreachable
from cni_common.overlay.metrics import parse_listen
from cni_common.overlay.peers import KernelState, Peer, plan
from tests.helpers import paths

N = ipaddress.ip_network
A = ipaddress.ip_address


def test_backoff_is_capped_at_a_second_and_resets() -> None:
    b = Backoff()
    waits = [b.next() for _ in range(8)]
    assert waits[0] == 0.1 and max(waits) == 1.0 and waits[-1] == 1.0
    b.reset()
    assert b.next() == 0.1


class FakeClient:
    """What :class:`Contact` reads from an :class:`EtcdClient`."""

    def __init__(self) -> None:
        self.last_answer: Optional[float] = None
        self.last_failure: Optional[float] = None


def _contact(grace: float = 5.0, gap: float = 2.0) -> tuple[Contact, FakeClient]:
    client = FakeClient()
    contact = Contact(client, grace, gap)  # type: ignore[arg-type]
    contact.hold_until = 0.0  # as if the agent had run for longer than the grace
    return contact, client


def test_no_hold_while_etcd_answers_steadily() -> None:
    contact, client = _contact()
    now = time.monotonic()
    for t in (now - 3, now - 1.5, now):
        client.last_answer = t
        assert contact.update() is False
    assert not contact.holding()


def test_a_failed_attempt_starts_the_grace_when_etcd_answers_again() -> None:
    contact, client = _contact()
    client.last_answer = time.monotonic() - 10
    contact.update()
    client.last_failure = time.monotonic() - 5
    assert contact.failing() and contact.holding()  # etcd not answering: never withdraw
    client.last_answer = time.monotonic()
    assert contact.update() is True  # back: the grace starts now
    assert not contact.failing() and contact.holding()
    assert contact.hold_until == pytest.approx(client.last_answer + 5.0)


def test_a_long_silence_is_an_outage_even_without_a_failure() -> None:
    """A call that hung on a frozen etcd and was answered when it resumed failed nothing."""
    contact, client = _contact(gap=2.0)
    client.last_answer = time.monotonic() - 9
    contact.update()
    client.last_answer = time.monotonic()
    assert contact.update() is True and contact.holding()


def test_a_new_agent_holds_for_the_grace() -> None:
    contact = Contact(FakeClient(), 5.0, 2.0)  # type: ignore[arg-type]
    assert contact.holding()


def test_additions_only_keeps_stale_peers() -> None:
    peer = Peer(A("192.0.2.2"), N("10.244.2.0/24"), "02:00:00:00:00:02")
    state = KernelState(routes={N("10.244.3.0/24"): A("10.244.3.0")}, neighbours={A("10.244.3.0"): "02:00:00:00:00:03"},
                        fdb={"02:00:00:00:00:03": A("192.0.2.3")})
    full = plan([peer], state, N("10.244.0.0/16"))
    assert full.del_routes == [N("10.244.3.0/24")]
    held = full.additions_only()
    assert held.add == [peer] and not (held.del_routes or held.del_neighbours or held.del_fdb)
    assert held.kept == [N("10.244.3.0/24")]


@pytest.fixture
def frozen_endpoints() -> Iterator[list[str]]:
    """Three endpoints that accept connections and never answer (a frozen etcd, as SIGSTOP leaves it)."""
    socks = []
    for _ in range(3):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        socks.append(s)
    yield [f"http://127.0.0.1:{s.getsockname()[1]}" for s in socks]
    for s in socks:
        s.close()


def test_answer_budget_is_shared_by_every_endpoint(frozen_endpoints: list[str]) -> None:
    """Before: 3 endpoints x 5 s = 15 s. Now the budget (1 s) is split over them. The bound below is generous on
    purpose (a loaded machine); what it shows is that the per-endpoint timeout no longer adds up."""
    client = EtcdClient(frozen_endpoints, answer_within=1.0)
    start = time.monotonic()
    with pytest.raises(StoreUnreachable) as err:
        client.get("/x")
    assert time.monotonic() - start < 5.0
    assert err.value.code == 11 and all(e in err.value.msg for e in frozen_endpoints)
    assert client.last_failure is not None and client.last_answer is None


def test_transient_etcd_answers_are_unavailability() -> None:
    assert etcd_mod._transient('{"error":"etcdserver: leader changed","code":14}')
    assert etcd_mod._transient('{"error":"etcdserver: request timed out","code":4}')
    assert not etcd_mod._transient('{"error":"etcdserver: permission denied","code":7}')
    assert not etcd_mod._transient("not json")


def test_parse_listen() -> None:
    assert parse_listen("127.0.0.1:9651") == ("127.0.0.1", 9651)
    assert parse_listen("[::1]:9000") == ("::1", 9000)
    assert parse_listen(":9000") == ("0.0.0.0", 9000)
    assert parse_listen("off") is None
    for bad in ("9651", "host:", "h:70000"):
        with pytest.raises(ValueError):
            parse_listen(bad)


def test_the_plugin_path_never_imports_prometheus_client() -> None:
    code = ("import sys; import plugins.vxlan as v; "
            "from cni_common.overlay import node, etcd, liveness, subnets, presence, datapath, config; "
            "assert 'prometheus_client' not in sys.modules and 'cni_common.overlay.agent' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=paths.REPO)


def test_an_answer_cut_short_is_unreachable_not_a_crash() -> None:
    """Found by the scale bench: etcd killed while it sent a keep-alive's answer (a chunked body cut short)
    raised http.client.IncompleteRead out of the agent's loop, and the agent exited."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)

    def serve() -> None:
        conn, _ = srv.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n40\r\n{\"result\":")
        conn.close()

    import threading

    t = threading.Thread(target=serve)
    t.start()
    client = EtcdClient([f"http://127.0.0.1:{srv.getsockname()[1]}"], timeout=5)
    with pytest.raises(StoreUnreachable) as err:
        client.keepalive(1)
    t.join()
    srv.close()
    assert err.value.code == 11 and "cut short" in err.value.details
