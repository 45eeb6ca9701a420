"""The dhcp plugin and ``dhcp daemon`` against Debian's dnsmasq, all inside test namespaces (tests/helpers/dhcp_lab).

Leases come from dnsmasq, are renewed, and are released (dnsmasq's lease file shows each); a daemon restarted
(even killed) keeps the containers' addresses; a stale socket does not stop its start; a dead daemon does not
block DEL; a daemon or plugin of upstream's kind on the socket gets a clear error, not a hang.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.helpers.dhcp_lab import NETWORK, SUBNET, DhcpLab
from tests.helpers.netns import NetnsPool

pytestmark = [pytest.mark.netns]
GO_DHCP = Path("/usr/lib/cni/dhcp")


@pytest.fixture
def lab(pool: NetnsPool, tmp_path: Path) -> Iterator[DhcpLab]:
    if shutil.which("dnsmasq") is None:
        pytest.fail("dnsmasq is missing: .ci/setup installs dnsmasq-base")
    lab = DhcpLab(pool, tmp_path).up(t1=4)
    yield lab
    lab.down()


def _ok(proc) -> dict:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout) if proc.stdout.strip() else {}


def _eventually(cond, patience: float = 15.0) -> bool:
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return bool(cond())


def test_lease_comes_from_dnsmasq_is_renewed_and_released(lab: DhcpLab) -> None:
    lab.start_daemon()
    ctr = lab.container()
    result = _ok(lab.call("ADD", ctr, lab.conf(request=[{"option": "dns-servers"}])))
    ip = result["ips"][0]["address"].split("/")[0]
    assert ip.startswith(SUBNET + ".") and result["ips"][0]["address"].endswith("/24")
    assert result["routes"] == [{"dst": "0.0.0.0/0", "gw": f"{SUBNET}.1"}]
    assert result["dns"] == {"nameservers": [f"{SUBNET}.1"]}
    # upstream's client-ID: 00 + "<containerID>/<network>/<ifname>", as dnsmasq records it
    expected_id = ":".join(f"{b:02x}" for b in b"\0" + f"{ctr.name}/{NETWORK}/eth0".encode())
    assert lab.leased() == {ip: expected_id}
    assert len(list(lab.lease_dir.iterdir())) == 1
    # renewed: T1 is 4 s here; the daemon's REQUEST is ACKed again for the same address
    acks = lab.dnsmasq_log().count(f"DHCPACK(eth0) {ip}")
    assert _eventually(lambda: lab.dnsmasq_log().count(f"DHCPACK(eth0) {ip}") > acks), lab.daemon_log()
    _ok(lab.call("CHECK", ctr, {**lab.conf(), "cniVersion": "1.0.0",
                                "prevResult": {"cniVersion": "1.0.0", "ips": result["ips"]}}))
    _ok(lab.call("DEL", ctr))
    assert _eventually(lambda: lab.leased() == {}), lab.dnsmasq_log()[-2000:]
    assert f"DHCPRELEASE(eth0) {ip}" in lab.dnsmasq_log()
    assert list(lab.lease_dir.iterdir()) == []
    _ok(lab.call("DEL", ctr))  # a second DEL succeeds


def test_restarted_daemon_keeps_the_addresses(lab: DhcpLab) -> None:
    lab.start_daemon()
    one, two = lab.container(), lab.container()
    ips = {ctr.name: _ok(lab.call("ADD", ctr))["ips"][0]["address"] for ctr in (one, two)}
    lab.stop_daemon(signal.SIGKILL)  # a crash: the socket file stays behind
    assert Path(lab.socket_path).exists()
    two_id = two.name
    lab.pool.remove(two)  # this container went away while the daemon was down
    lab.start_daemon()  # the stale socket does not stop it
    assert _eventually(lambda: "keeping the lease" in lab.daemon_log())
    again = _ok(lab.call("ADD", one))  # the runtime repeats ADD, or just CHECK: the same address
    assert again["ips"][0]["address"] == ips[one.name]
    assert f"{two_id}/" not in "".join(p.read_text() for p in lab.lease_dir.iterdir())
    requests = lab.dnsmasq_log().count("DHCPREQUEST(eth0) " + ips[one.name].split("/")[0])
    assert requests >= 2  # re-acquired from the server after the restart, not only remembered
    _ok(lab.call("DEL", one))
    assert _eventually(lambda: ips[one.name].split("/")[0] not in lab.leased())


def test_dead_daemon_does_not_block_teardown(lab: DhcpLab) -> None:
    lab.start_daemon()
    ctr = lab.container()
    _ok(lab.call("ADD", ctr))
    lab.stop_daemon(signal.SIGKILL)
    started = time.monotonic()
    proc = lab.call("DEL", ctr)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert time.monotonic() - started < 10
    assert "lease not released" in proc.stderr
    status = lab.call("STATUS", ctr, {**lab.conf(), "cniVersion": "1.1.0"})
    assert status.returncode == 1 and json.loads(status.stdout)["code"] == 50


def test_add_without_a_server_fails_bounded_and_leaves_nothing(lab: DhcpLab) -> None:
    assert lab.dnsmasq is not None
    lab.dnsmasq.terminate()
    lab.dnsmasq.wait(10)
    lab.start_daemon("-resendtimeout", "3s")
    ctr = lab.container()
    proc = lab.call("ADD", ctr, timeout=30)
    assert proc.returncode == 1
    error = json.loads(proc.stdout)
    assert error["code"] == 11 and "no DHCP lease" in error["msg"]
    assert not lab.lease_dir.exists() or list(lab.lease_dir.iterdir()) == []


def test_live_daemon_on_the_socket_stops_a_second_one(lab: DhcpLab) -> None:
    import subprocess
    import sys

    from tests.helpers.dhcp_lab import REPO

    first = lab.start_daemon()
    second = subprocess.run([sys.executable, "-m", "plugins", "dhcp", "daemon", "-socketpath", lab.socket_path],
                            cwd=REPO, capture_output=True, text=True, timeout=30)
    assert second.returncode == 1 and "another daemon is serving" in second.stderr
    assert first.poll() is None and Path(lab.socket_path).exists()


@pytest.mark.skipif(not GO_DHCP.exists(), reason="the upstream Go plugins are not installed")
def test_go_plugin_on_our_daemon_gets_a_clear_error(lab: DhcpLab) -> None:
    lab.start_daemon()
    ctr = lab.container()
    proc = lab.call("ADD", ctr, plugin=[str(GO_DHCP)], timeout=30)
    assert proc.returncode == 1
    assert "does not speak Go net/rpc" in json.loads(proc.stdout)["msg"]


@pytest.mark.skipif(not GO_DHCP.exists(), reason="the upstream Go plugins are not installed")
def test_our_plugin_on_the_go_daemon_gets_a_clear_error(lab: DhcpLab) -> None:
    import subprocess

    go = subprocess.Popen([str(GO_DHCP), "daemon", "-socketpath", lab.socket_path], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    try:
        assert _eventually(lambda: Path(lab.socket_path).exists(), 10)
        ctr = lab.container()
        started = time.monotonic()
        proc = lab.call("ADD", ctr, timeout=30)
        assert time.monotonic() - started < 10
        error = json.loads(proc.stdout)
        assert proc.returncode == 1 and error["code"] == 4
        assert "not cni-suite's dhcp daemon" in error["msg"]
    finally:
        go.terminate()
        go.wait(10)


def test_stale_socket_file_is_replaced(lab: DhcpLab) -> None:
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(lab.socket_path)
    stale.close()  # bound, never listened: what a killed daemon leaves
    lab.start_daemon()
    ctr = lab.container()
    _ok(lab.call("ADD", ctr))
    _ok(lab.call("DEL", ctr))


def _wrappers(dest: Path, *types: str) -> Path:
    """CNI_PATH entries running our plugins from the source tree under this interpreter."""
    import sys

    from tests.helpers.dhcp_lab import REPO

    dest.mkdir(parents=True, exist_ok=True)
    for plugin_type in types:
        wrapper = dest / plugin_type
        wrapper.write_text(f"#!/bin/sh\nPYTHONPATH={REPO} exec {sys.executable} -c 'import sys; "
                           f"sys.argv[0] = \"{plugin_type}\"; from plugins.multicall import main; "
                           "sys.exit(main())' \"$@\"\n")
        wrapper.chmod(0o755)
    return dest


@pytest.mark.skipif(not GO_DHCP.exists(), reason="the upstream Go plugins are not installed")
def test_through_libcni_beside_go(lab: DhcpLab, cnitool_bin: Path, tmp_path: Path) -> None:
    """bridge + dhcp through libcni (cnitool), ours and Go v1.1.1's on the same dnsmasq: the same facts after
    ADD (an address of the server's subnet, its router as default route, traffic to the server), and ours
    releases on DEL."""
    import subprocess

    from tests.helpers.cnitool import Cnitool

    assert lab.host is not None
    lab.start_daemon()
    go_socket = str(tmp_path / "go-dhcp.sock")
    go_daemon = subprocess.Popen([str(GO_DHCP), "daemon", "-socketpath", go_socket], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
    try:
        assert _eventually(lambda: Path(go_socket).exists(), 10)
        facts = {}
        for side, cni_path, socket_path in (("ours", _wrappers(tmp_path / "bin", "bridge", "dhcp"), lab.socket_path),
                                            ("go", Path("/usr/lib/cni"), go_socket)):
            tool = Cnitool(cnitool_bin, lab.host, tmp_path / side, cni_path)
            conf = {"cniVersion": "1.0.0", "name": f"dh{side}", "plugins": [
                {"type": "bridge", "bridge": "cntbr0", "ipam": {"type": "dhcp", "daemonSocketPath": socket_path}}]}
            tool.write_conflist(conf)
            ctr = lab.pool.create("dhlib", lo_up=True)
            add = tool.add(conf["name"], ctr, timeout=90)
            assert add.rc == 0, add
            address = add.out["ips"][0]["address"]
            routes = ctr.ip("-4", "route", "show", "default").stdout
            ping = ctr.run(["ping", "-c1", "-W2", f"{SUBNET}.1"], check=False)
            facts[side] = (address.startswith(f"{SUBNET}.") and address.endswith("/24"),
                           f"default via {SUBNET}.1" in routes, ping.returncode == 0)
            if side == "ours":
                assert address.split("/")[0] in lab.leased()
                assert tool.check(conf["name"], ctr).rc == 0
                assert tool.delete(conf["name"], ctr).rc == 0
                assert _eventually(lambda addr=address: addr.split("/")[0] not in lab.leased())
            else:
                tool.delete(conf["name"], ctr)  # v1.1.1's bridge deletes the link before IPAM DEL (#791)
        assert facts["ours"] == facts["go"] == (True, True, True), facts
    finally:
        go_daemon.terminate()
        go_daemon.wait(10)


def test_pidfile_and_a_clean_stop(lab: DhcpLab, tmp_path: Path) -> None:
    pidfile = tmp_path / "dhcp.pid"
    daemon = lab.start_daemon("-pidfile", str(pidfile))
    assert pidfile.read_text().strip() == str(daemon.pid)
    lab.stop_daemon(signal.SIGTERM)
    assert not pidfile.exists() and not Path(lab.socket_path).exists()


def test_gc_releases_what_the_runtime_no_longer_has(lab: DhcpLab) -> None:
    lab.start_daemon()
    keep, drop = lab.container(), lab.container()
    kept = _ok(lab.call("ADD", keep))["ips"][0]["address"].split("/")[0]
    dropped = _ok(lab.call("ADD", drop))["ips"][0]["address"].split("/")[0]
    gc = {**lab.conf(), "cniVersion": "1.1.0",
          "cni.dev/valid-attachments": [{"containerID": keep.name, "ifname": "eth0"}]}
    _ok(lab.call("GC", keep, gc))
    assert _eventually(lambda: dropped not in lab.leased()), lab.dnsmasq_log()[-1500:]
    assert kept in lab.leased()
    _ok(lab.call("DEL", keep))


def test_concurrent_adds_of_one_attachment_make_one_lease(lab: DhcpLab) -> None:
    """One lock per key: the second ADD waits for the first and gets its lease (upstream can make two)."""
    from concurrent.futures import ThreadPoolExecutor

    lab.start_daemon()
    ctr = lab.container()
    with ThreadPoolExecutor(3) as pool:
        results = [_ok(proc) for proc in pool.map(lambda _: lab.call("ADD", ctr), range(3))]
    assert len({r["ips"][0]["address"] for r in results}) == 1
    assert len(lab.leased()) == 1 and len(list(lab.lease_dir.iterdir())) == 1
    _ok(lab.call("DEL", ctr))
