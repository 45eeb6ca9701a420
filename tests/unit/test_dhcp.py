"""The dhcp plugin and daemon without a kernel: option and flag parsing, the lease store's safety, the socket
protocol's bounds and its answers to a daemon of the other kind, the plugin's verdicts, ``-broadcast``."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cni_common.dhcp import options, wire
from cni_common.dhcp.daemon import parse_duration
from cni_common.dhcp.store import LeaseStore
from cni_common.errors import CNIError
from tests.helpers.inprocess import call
from tests.helpers.properties import check_refusal

pytestmark = [pytest.mark.unit]


@pytest.mark.parametrize(("text", "seconds"), [("10s", 10), ("1m30s", 90), ("500ms", 0.5), ("0", 0), ("2h", 7200),
                                               ("1.5s", 1.5)])
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "10", "s", "10x", "-1s", "1s2"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(Exception, match="invalid duration"):
        parse_duration(text)


def test_request_defaults_and_skip_default() -> None:
    got = options.settings({"request": [{"option": "dns-servers"}]}, "c1", "net", "eth0", "")
    assert got.requested == [3, 1, 6] and got.wants_dns
    assert got.client_id == b"c1/net/eth0"
    skipped = options.settings({"request": [{"option": "15", "skipDefault": True}]}, "c1", "net", "eth0", "")
    assert skipped.requested == [15]


def test_provide_from_args_and_limits() -> None:
    got = options.settings({"provide": [{"option": "host-name", "fromArg": "K8S_POD_NAME"},
                                        {"option": "60", "value": "vendor"},
                                        {"option": "dhcp-client-identifier", "value": "mine"}]},
                           "c1", "net", "eth0", "IgnoreUnknown=1;K8S_POD_NAME=web-0")
    assert (got.host_name, got.vendor_id, got.client_id) == ("web-0", "vendor", b"mine")
    with pytest.raises(CNIError, match="value too long for option 12") as too_long:
        options.settings({"provide": [{"option": "host-name", "value": "x" * 256}]}, "c", "n", "e", "")
    assert too_long.value.code == 7
    with pytest.raises(CNIError, match="Can not parse option 'nope'"):
        options.settings({"request": [{"option": "nope"}]}, "c", "n", "e", "")


def test_client_id_is_cut_to_254_bytes() -> None:
    assert len(options.client_id("c" * 300, "net", "eth0")) == 254


# --- the lease store -----------------------------------------------------------------------------------------
def test_store_round_trip_and_removal(tmp_path: Path) -> None:
    store = LeaseStore(str(tmp_path / "leases"))
    store.save("c1/net/eth0", {"request": {"netns": "/run/netns/x"}, "lease": {"ack": {"yiaddr": "10.0.0.5"}}})
    records = store.load_all()
    assert [r["key"] for r in records] == ["c1/net/eth0"] and records[0]["lease"]["ack"]["yiaddr"] == "10.0.0.5"
    assert oct((tmp_path / "leases").stat().st_mode & 0o777) == "0o700"
    store.remove("c1/net/eth0")
    store.remove("c1/net/eth0")  # twice is fine
    assert store.load_all() == []


def test_store_survives_torn_and_planted_files(tmp_path: Path) -> None:
    store = LeaseStore(str(tmp_path))
    store.save("good", {"request": {}})
    good = next(tmp_path.iterdir())
    torn = tmp_path / ("0" * 64 + ".lease.json")
    torn.write_bytes(good.read_bytes()[:20])
    victim = tmp_path.parent / f"{tmp_path.name}-victim"
    victim.write_text(json.dumps({"version": 1, "key": "x", "request": {}}))
    (tmp_path / ("1" * 64 + ".lease.json")).symlink_to(victim)
    (tmp_path / ".tmp-abc.lease.json").write_text("{")
    assert [r["key"] for r in store.load_all()] == ["good"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [good.name]
    assert victim.exists()  # the link was removed, never followed


# --- the socket protocol -------------------------------------------------------------------------------------
def _serve_once(path: str, answer: bytes | None, hold: float = 0.0) -> threading.Thread:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)

    def run() -> None:
        conn, _ = server.accept()
        conn.recv(65536)
        if answer is not None:
            conn.sendall(answer)
        time.sleep(hold)
        conn.close()
        server.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_go_daemon_on_the_socket_is_named_not_waited_on(tmp_path: Path) -> None:
    path = str(tmp_path / "s")
    _serve_once(path, b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n\r\n400 Bad Request")
    with pytest.raises(CNIError, match="not cni-suite's dhcp daemon") as exc:
        wire.call(path, "allocate", {}, timeout=5)
    assert exc.value.code == 4


def test_a_silent_daemon_is_bounded(tmp_path: Path) -> None:
    path = str(tmp_path / "s")
    _serve_once(path, None, hold=3)
    started = time.monotonic()
    with pytest.raises(CNIError, match="did not answer release within 0.5s") as exc:
        wire.call(path, "release", {}, timeout=0.5)
    assert exc.value.code == 11 and time.monotonic() - started < 2


def test_no_daemon_is_unreachable(tmp_path: Path) -> None:
    with pytest.raises(wire.DaemonUnreachable, match="no such file"):
        wire.call(str(tmp_path / "none"), "status", {}, timeout=1)


def test_requests_of_the_other_kind() -> None:
    assert wire.is_go_rpc(b"CONNECT /_goRPC_ HTTP/1.0\n\n")
    with pytest.raises(ValueError):
        wire.parse_request(b'{"method": "allocate", "args": {}}')
    assert wire.parse_request(b'{"cniSuiteDhcp": 1, "method": "allocate", "args": {}}') == ("allocate", {})


# --- the plugin ----------------------------------------------------------------------------------------------
@pytest.fixture
def no_daemon(tmp_path: Path) -> Iterator[dict[str, Any]]:
    yield {"cniVersion": "1.1.0", "name": "dh", "ipam": {"type": "dhcp",
                                                         "daemonSocketPath": str(tmp_path / "none.sock")}}


def test_plugin_without_a_daemon(no_daemon: dict[str, Any]) -> None:
    add = call("dhcp", "ADD", no_daemon)
    assert add.rc == 1 and add.out["code"] == 11 and "error dialing DHCP daemon" in add.out["msg"]
    delete = call("dhcp", "DEL", no_daemon)
    assert delete.rc == 0 and "lease not released" in delete.stderr
    status = call("dhcp", "STATUS", no_daemon)
    assert status.rc == 1 and status.out["code"] == 50


@pytest.mark.parametrize(("ipam", "key"), [({"daemonSocketPath": 5}, "daemonSocketPath"),
                                           ({"request": [{"option": "bogus"}]}, "request"),
                                           ({"provide": "x"}, "provide"), ({"priority": "high"}, "priority")])
def test_plugin_refuses_bad_keys(no_daemon: dict[str, Any], ipam: dict[str, Any], key: str) -> None:
    out = call("dhcp", "ADD", {**no_daemon, "ipam": {**no_daemon["ipam"], **ipam}})
    assert out.rc == 1 and out.out["code"] == 7 and key in out.out["msg"], out.out


_values = st.one_of(st.none(), st.booleans(), st.integers(-5, 300), st.text(max_size=8),
                    st.lists(st.dictionaries(st.sampled_from(["option", "value", "fromArg", "skipDefault"]),
                                             st.one_of(st.text(max_size=5), st.integers(-1, 300), st.booleans()),
                                             max_size=3), max_size=3))


@settings(max_examples=60, deadline=None)
@given(key=st.sampled_from(["request", "provide", "priority", "daemonSocketPath"]), value=_values,
       verb=st.sampled_from(["ADD", "DEL", "CHECK"]))
def test_any_ipam_value_gets_one_clean_verdict(tmp_path_factory: pytest.TempPathFactory, key: str, value: Any,
                                               verb: str) -> None:
    path = str(tmp_path_factory.getbasetemp() / "absent.sock")
    ipam: dict[str, Any] = {"type": "dhcp", "daemonSocketPath": path, key: value}
    if key == "daemonSocketPath" and isinstance(value, str) and value:
        ipam[key] = path + value.replace("\0", "")
    out = call("dhcp", verb, {"cniVersion": "1.0.0", "name": "dh", "ipam": ipam})
    err = check_refusal(out.rc, out.stdout, out.stderr, [f"ipam.{key}"])
    assert err is None or err["code"] in (4, 6, 7, 11), err


# --- -broadcast ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("broadcast", [False, True])
def test_broadcast_flag_follows_the_daemon_flag(monkeypatch: pytest.MonkeyPatch, broadcast: bool) -> None:
    from pyroute2.dhcp import messages
    from pyroute2.dhcp.client import AsyncDHCPClient, ClientConfig

    from cni_common.dhcp.lease import _Client

    sent: list[int] = []

    async def record(self: Any, msg: Any) -> None:
        sent.append(int(msg.dhcp["flags"]))

    monkeypatch.setattr(AsyncDHCPClient, "_send_message", record)
    async def send() -> None:
        client = _Client(ClientConfig(interface="cnt0", handle_signals=False), broadcast)
        await client._send_message(messages.discover([1, 3]))

    asyncio.run(send())
    assert sent == [0x8000 if broadcast else 0]


def test_daemon_mode_is_registered() -> None:
    from plugins.multicall import MODES, PLUGINS

    assert PLUGINS["dhcp"] == "ipam.dhcp" and ("dhcp", "daemon") in MODES
    assert os.path.exists(Path(__file__).resolve().parents[2] / "ipam" / "dhcp.py")


def test_daemon_flags_in_go_syntax() -> None:
    from cni_common.dhcp.daemon import parse_flags

    cfg = parse_flags(["-socketpath=/run/x.sock", "--broadcast", "-timeout", "5s", "-resendmax=1m",
                       "-hostprefix", "/host/", "-pidfile", "/run/dhcp.pid"])
    assert (cfg.listen_path, cfg.broadcast, cfg.timeout, cfg.resend_max, cfg.pidfile) == (
        "/host/run/x.sock", True, 5.0, 60.0, "/run/dhcp.pid")
    with pytest.raises(SystemExit):
        parse_flags(["-pidfile", "relative.pid"])
