"""The firewall plugin's firewalld backend against a real firewalld (Debian's package), beside Go v1.1.1's.

firewalld runs inside the test's host namespace on a D-Bus system bus of its own (a dbus-daemon whose socket
and configuration live in the test's temp dir); the plugins find that bus through ``DBUS_SYSTEM_BUS_ADDRESS``,
as godbus and our client both read it. firewalld's configuration is a copy under the temp dir too, so neither
the machine's bus nor its /etc/firewalld is used. Facts: the container's address is a source of the
``trusted`` zone after ADD (querySource, and firewalld's nft table), traffic to the remote passes only then,
DEL takes it out, a second DEL succeeds; auto-detection picks firewalld when it owns its bus name.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.helpers.netns import Netns
from tests.helpers.skip import skip_or_fail
from tests.netns.test_firewall_plugin import conflist, host_factory, reaches_remote

BUS_CONF = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
  </policy>
</busconfig>
"""
FIREWALLD_NAME = "org.fedoraproject.FirewallD1"


class Firewalld:
    """dbus-daemon + firewalld in ``ns``; ``address`` is the bus for DBUS_SYSTEM_BUS_ADDRESS."""

    def __init__(self, ns: Netns, workdir: Path) -> None:
        self.ns, self.workdir = ns, workdir
        self.address = f"unix:path={workdir / 'bus.sock'}"
        self.procs: list[subprocess.Popen] = []

    def start(self) -> Firewalld:
        (self.workdir / "bus.conf").write_text(BUS_CONF.format(socket=self.workdir / "bus.sock"))
        shutil.copytree("/etc/firewalld", self.workdir / "etc")
        self.procs.append(self.ns.popen(["dbus-daemon", "--nofork", f"--config-file={self.workdir / 'bus.conf'}"]))
        env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.address)
        with open(self.workdir / "firewalld.log", "w") as log:
            self.procs.append(self.ns.popen(["firewalld", "--nofork", "--nopid", "--system-config",
                                             str(self.workdir / "etc"), "--log-target", "console"],
                                            env=env, stdout=log, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 60
        while not (self.running() and self.ruleset_loaded()):
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.procs):
                self.stop()
                raise RuntimeError(f"firewalld did not come up: {(self.workdir / 'firewalld.log').read_text()}")
            time.sleep(0.3)
        return self

    def _bus(self):
        from cni_common.dbus import SystemBus

        return SystemBus(str(self.workdir / "bus.sock"))

    def running(self) -> bool:
        from cni_common.dbus import DBusError

        try:
            with self._bus() as bus:
                bus.call("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "GetNameOwner",
                         FIREWALLD_NAME)
                return True
        except DBusError:
            return False

    def ruleset_loaded(self) -> bool:
        """firewalld takes its bus name before its ruleset is in: wait for its forward chain too."""
        listing = self.ns.run(["nft", "list", "chain", "inet", "firewalld", "filter_FORWARD"], check=False)
        return listing.returncode == 0 and "reject with icmpx admin-prohibited" in listing.stdout  # its last rule

    def has_source(self, source: str, zone: str = "trusted") -> bool:
        with self._bus() as bus:
            return bus.call(FIREWALLD_NAME, "/org/fedoraproject/FirewallD1", "org.fedoraproject.FirewallD1.zone",
                            "querySource", zone, source) is True

    def stop(self) -> None:
        for proc in reversed(self.procs):  # firewalld first: it removes its table on exit
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


@pytest.fixture
def make_host(netns_pool):
    yield from host_factory(netns_pool)


@pytest.fixture
def host_with_firewalld(make_host, tmp_path) -> Iterator[tuple[Netns, Firewalld]]:
    if not shutil.which("firewalld") or not shutil.which("dbus-daemon"):
        skip_or_fail("firewalld and dbus-daemon are needed (.ci/setup installs them)")
    host = make_host()
    host.run(["iptables", "-P", "FORWARD", "ACCEPT"])  # firewalld's own forward chain decides
    (tmp_path / "fwd").mkdir()
    daemon = Firewalld(host, tmp_path / "fwd").start()
    yield host, daemon
    daemon.stop()


@pytest.mark.parametrize("suite", ["go", "ours"])
@pytest.mark.parametrize("backend", ["firewalld", "auto"])
def test_firewalld_zone_sources_like_go(suite, backend, host_with_firewalld, make_cnitool, plugin_dir,
                                        go_plugin_dir, make_container_ns, tmp_path):
    host, daemon = host_with_firewalld
    tool = make_cnitool(go_plugin_dir if suite == "go" else plugin_dir, host=host)
    tool.extra_env["DBUS_SYSTEM_BUS_ADDRESS"] = daemon.address
    tool.write_conflist(conflist("cntf", tmp_path / "net", **({"backend": "firewalld"} if backend == "firewalld"
                                                              else {})))
    ctr = make_container_ns(lo_up=True)
    added = tool.add("cntf", ctr, container_id="cnt-fwd-1")
    assert added.rc == 0, added.out
    ip = added.out["ips"][0]["address"].split("/")[0]
    assert daemon.has_source(f"{ip}/32")
    assert f"ip saddr {ip}" in host.run(["nft", "list", "table", "inet", "firewalld"]).stdout
    assert reaches_remote(ctr)
    assert tool.check("cntf", ctr, container_id="cnt-fwd-1").rc == 0
    assert "CNI-FORWARD" not in host.run(["iptables-save", "-t", "filter"]).stdout  # not the iptables backend
    assert tool.delete("cntf", ctr, container_id="cnt-fwd-1").rc == 0
    assert not daemon.has_source(f"{ip}/32")
    assert tool.delete("cntf", ctr, container_id="cnt-fwd-1").rc == 0  # a second DEL


def test_traffic_needs_the_zone_source(host_with_firewalld, make_cnitool, plugin_dir, make_container_ns, tmp_path):
    """Without the plugin, firewalld's public zone does not forward the container's traffic."""
    host, daemon = host_with_firewalld
    tool = make_cnitool(plugin_dir, host=host)
    tool.write_conflist(conflist("cntf", tmp_path / "bare", with_firewall=False))
    ctr = make_container_ns(lo_up=True)
    assert tool.add("cntf", ctr, container_id="cnt-fwd-2").rc == 0
    assert not reaches_remote(ctr)
    assert tool.delete("cntf", ctr, container_id="cnt-fwd-2").rc == 0


def test_check_fails_when_the_source_was_removed(host_with_firewalld, make_cnitool, plugin_dir, make_container_ns,
                                                 tmp_path):
    """Go's CHECK passes on querySource's ``false``; ours reports it."""
    host, daemon = host_with_firewalld
    tool = make_cnitool(plugin_dir, host=host)
    tool.extra_env["DBUS_SYSTEM_BUS_ADDRESS"] = daemon.address
    tool.write_conflist(conflist("cntf", tmp_path / "net", backend="firewalld"))
    ctr = make_container_ns(lo_up=True)
    added = tool.add("cntf", ctr, container_id="cnt-fwd-3")
    ip = added.out["ips"][0]["address"].split("/")[0]
    with daemon._bus() as bus:
        bus.call(FIREWALLD_NAME, "/org/fedoraproject/FirewallD1", "org.fedoraproject.FirewallD1.zone",
                 "removeSource", "trusted", f"{ip}/32")
    got = tool.check("cntf", ctr, container_id="cnt-fwd-3")
    assert got.rc == 1 and "failed to find the address" in got.out["msg"], got.out
    assert tool.delete("cntf", ctr, container_id="cnt-fwd-3").rc == 0
