"""tuning beside the Go plugin v1.1.1 (/usr/lib/cni/tuning): the same facts after ADD, the same originals back
after DEL, each suite's DEL restoring the other's ADD (one state file format), and what ours does better.

The container is a namespace holding a veth pair (``eth0`` and a peer); tuning acts on ``eth0``. The state
files go to the test's own folder (``dataDir``), never /run/cni/tuning.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import paths
from tests.helpers.kernel_state import snapshot
from tests.helpers.netns import Netns
from tests.helpers.plugin import run_plugin
from tests.helpers.skip import require_dist

GO = paths.GO_PLUGIN_DIR / "tuning"
ARP_FILTER = "net/ipv4/conf/eth0/arp_filter"
SYSCTLS = {"net.ipv4.conf.IFNAME.arp_filter": "1", "net.ipv4.conf.IFNAME.arp_ignore": "2",
           "net.ipv4.tcp_keepalive_time": "600"}
TUNED = {"mac": "0a:58:0a:f4:00:99", "mtu": 1400, "promisc": True, "allmulti": True}


@pytest.fixture(scope="module")
def ours() -> Path:
    return require_dist() / "tuning"


@pytest.fixture
def ctr(make_container_ns) -> Netns:
    ns = make_container_ns(lo_up=True)
    ns.ip("link", "add", "eth0", "address", "0a:58:0a:f4:00:01", "mtu", "1500", "type", "veth", "peer", "name",
          "cntpeer0")
    ns.ip("link", "set", "eth0", "up")
    return ns


def _conf(data_dir: Path, **keys: Any) -> dict[str, Any]:
    prev = {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "mac": "0a:58:0a:f4:00:01", "sandbox": "x"}],
            "ips": [{"address": "10.99.0.2/24", "interface": 0}]}
    return {"cniVersion": "1.0.0", "name": "cntt", "type": "tuning", "dataDir": str(data_dir), "prevResult": prev,
            **keys}


def _facts(ns: Netns) -> dict[str, Any]:
    link = json.loads(ns.run(["ip", "-j", "-d", "link", "show", "eth0"]).stdout)[0]
    sysctls = {key: ns.run(["cat", "/proc/sys/" + key.replace(".", "/").replace("IFNAME", "eth0")]).stdout.strip()
               for key in SYSCTLS}
    return {"mac": link["address"], "mtu": link["mtu"], "promisc": link["promiscuity"] > 0,
            "allmulti": "ALLMULTI" in link["flags"], "txqlen": link.get("txqlen"), **sysctls}


def _call(binary: Path, verb: str, conf: dict[str, Any], ctr: Netns, host_ns: Netns, **kw: Any):
    return run_plugin(binary, verb, conf, netns=ctr, container_id="cnt-tuning", in_netns=host_ns, **kw)


@pytest.mark.parametrize("suite", ["go", "ours"])
def test_add_sets_and_del_restores_the_same_as_go(suite, ours, ctr, host_ns, tmp_path):
    binary = GO if suite == "go" else ours
    before, host_before = _facts(ctr), snapshot(host_ns)
    conf = _conf(tmp_path, sysctl=SYSCTLS, **TUNED)
    added = _call(binary, "ADD", conf, ctr, host_ns)
    assert added.rc == 0, added.out
    assert added.out["interfaces"][0]["mac"] == TUNED["mac"]
    after = _facts(ctr)
    assert {k: after[k] for k in TUNED} == TUNED
    assert {k: after[k] for k in SYSCTLS} == SYSCTLS
    saved = (tmp_path / "cnt-tuning_eth0.json").read_text()
    assert json.loads(saved) == {"mac": before["mac"], "promisc": False, "mtu": 1500, "allmulti": False}
    assert saved == json.dumps(json.loads(saved), indent=1)  # upstream's layout, byte for byte
    assert _call(binary, "DEL", conf, ctr, host_ns).rc == 0
    restored = _facts(ctr)
    assert {k: restored[k] for k in TUNED} == {k: before[k] for k in TUNED}
    assert not (tmp_path / "cnt-tuning_eth0.json").exists()
    assert _call(binary, "DEL", conf, ctr, host_ns).rc == 0  # a second DEL
    assert snapshot(host_ns) == host_before


@pytest.mark.parametrize("adder", ["go", "ours"])
def test_each_suite_restores_the_others_add(adder, ours, ctr, host_ns, tmp_path):
    add_with, del_with = (GO, ours) if adder == "go" else (ours, GO)
    before = _facts(ctr)
    conf = _conf(tmp_path, **TUNED)
    assert _call(add_with, "ADD", conf, ctr, host_ns).rc == 0
    assert _call(del_with, "DEL", conf, ctr, host_ns).rc == 0
    assert {k: _facts(ctr)[k] for k in TUNED} == {k: before[k] for k in TUNED}
    assert not any(tmp_path.iterdir())


def test_a_second_add_keeps_the_originals(ours, ctr, host_ns, tmp_path):
    """Upstream overwrites the saved originals with its own values on a second ADD; ours keeps them."""
    before = _facts(ctr)
    conf = _conf(tmp_path, mac=TUNED["mac"], mtu=1400, txQLen=50)
    assert _call(ours, "ADD", conf, ctr, host_ns).rc == 0
    assert _call(ours, "ADD", dict(conf, mtu=1300, promisc=True), ctr, host_ns).rc == 0
    assert json.loads((tmp_path / "cnt-tuning_eth0.json").read_text()) == {
        "mac": before["mac"], "promisc": False, "mtu": 1500, "txQLen": before["txqlen"]}
    assert _facts(ctr)["txqlen"] == 50
    assert _call(ours, "DEL", conf, ctr, host_ns).rc == 0
    assert {k: _facts(ctr)[k] for k in ("mac", "mtu", "promisc", "txqlen")} == {
        k: before[k] for k in ("mac", "mtu", "promisc", "txqlen")}


def test_args_cni_sysctl_alone_works_where_go_panics(ours, ctr, host_ns, tmp_path):
    conf = _conf(tmp_path, args={"cni": {"sysctl": {"net.ipv4.conf.IFNAME.arp_filter": "1"}}})
    go = _call(GO, "ADD", conf, ctr, host_ns)
    assert go.rc != 0 and "assignment to entry in nil map" in go.stderr
    got = _call(ours, "ADD", conf, ctr, host_ns)
    assert got.rc == 0, got.out
    assert ctr.run(["cat", "/proc/sys/" + ARP_FILTER]).stdout.strip() == "1"


@pytest.mark.parametrize("key", ["kernel.hostname", "/proc/sys/kernel/hostname", "net/../kernel/hostname",
                                 "net.ipv4.conf.IFNAME.arp_filter/../../../../../kernel/hostname", "net", "..",
                                 "/etc/hostname", "net/ipv4/./ip_forward"])
def test_keys_that_leave_the_container_namespace_are_refused(key, ours, ctr, host_ns, tmp_path):
    before, host_before = _facts(ctr), snapshot(host_ns)
    got = _call(ours, "ADD", _conf(tmp_path, sysctl={key: "x"}, mtu=1400), ctr, host_ns)
    assert got.rc == 1 and got.out["code"] == 7 and "sysctl" in got.out["msg"], got.out
    assert _facts(ctr) == before and snapshot(host_ns) == host_before and not any(tmp_path.iterdir())


def test_a_failed_add_puts_everything_back(ours, ctr, host_ns, tmp_path):
    """The bad value sorts last: the sysctls written before it and nothing else may stay."""
    before = _facts(ctr)
    conf = _conf(tmp_path, sysctl={"net.ipv4.conf.IFNAME.arp_filter": "1", "net.ipv4.conf.IFNAME.arp_ignore": "x"},
                 **TUNED)
    got = _call(ours, "ADD", conf, ctr, host_ns)
    assert got.rc == 1 and "Traceback" not in got.stderr, got.out
    assert _facts(ctr) == before and not any(tmp_path.iterdir())


def test_check_passes_after_add_and_names_what_changed(ours, ctr, host_ns, tmp_path):
    conf = _conf(tmp_path, sysctl={"net.ipv4.ip_local_port_range": "20000 30000"}, **TUNED)
    assert _call(ours, "ADD", conf, ctr, host_ns).rc == 0
    assert _call(ours, "CHECK", conf, ctr, host_ns).rc == 0  # Go's fails on the tab the kernel prints
    ctr.ip("link", "set", "eth0", "mtu", "1450")
    got = _call(ours, "CHECK", conf, ctr, host_ns)
    assert got.rc == 1 and "MTU is 1450" in got.out["msg"], got.out


def test_del_with_the_netns_gone_removes_the_saved_file(ours, ctr, host_ns, tmp_path):
    conf = _conf(tmp_path, **TUNED)
    assert _call(ours, "ADD", conf, ctr, host_ns).rc == 0
    got = run_plugin(ours, "DEL", conf, netns="/nonexistent/cnt-gone", container_id="cnt-tuning", in_netns=host_ns)
    assert got.rc == 0 and not any(tmp_path.iterdir()), got.out


def test_through_libcni_beside_go(make_cnitool, plugin_dir, go_plugin_dir, make_container_ns, netns_pool, tmp_path):
    """[bridge, tuning] through libcni, each suite in its own host: the same container facts; DEL leaves no
    veth, no state file and no cache entry; a second DEL succeeds."""
    facts = {}
    for suite, bin_dir in (("go", go_plugin_dir), ("ours", plugin_dir)):
        host = netns_pool.create("host", lo_up=True)
        try:
            tool = make_cnitool(bin_dir, host=host)
            data = tmp_path / suite
            tool.write_conflist({"cniVersion": "1.0.0", "name": "cntt", "plugins": [
                {"type": "bridge", "bridge": "cnttbr0", "isGateway": True,
                 "ipam": {"type": "host-local", "dataDir": str(data / "ipam"),
                          "ranges": [[{"subnet": "10.99.7.0/24"}]]}},
                {"type": "tuning", "dataDir": str(data / "tuning"), "sysctl": SYSCTLS, **TUNED}]})
            ctr = make_container_ns(lo_up=True)
            added = tool.add("cntt", ctr)
            assert added.rc == 0, added.out
            gateway = added.out["ips"][0]["gateway"]  # traffic over the tuned link (new MAC, MTU 1400)
            assert ctr.run(["ping", "-c", "1", "-W", "2", "-s", "1372", "-M", "do", gateway],
                           check=False).returncode == 0, suite
            # txqlen aside: Go's bridge makes its veths with txqueuelen 0, ours with the kernel's 1000
            facts[suite] = ({k: v for k, v in _facts(ctr).items() if k != "txqlen"}, added.out["interfaces"])
            assert tool.check("cntt", ctr).rc == 0 or suite == "go"  # Go v1.1.1's CHECK misses IFNAME
            assert tool.delete("cntt", ctr).rc == 0
            assert tool.delete("cntt", ctr).rc == 0
            links = json.loads(host.run(["ip", "-j", "link"]).stdout)
            assert sorted(link["ifname"] for link in links) == ["cnttbr0", "lo"]  # the bridge stays, as upstream
            assert not any((data / "tuning").iterdir()) and not tool.cache_files()
        finally:
            netns_pool.remove(host)
    assert facts["go"][0] == facts["ours"][0]
    assert [i["mac"] for i in facts["go"][1] if i.get("sandbox")] == [TUNED["mac"]]
    assert [i["mac"] for i in facts["ours"][1] if i.get("sandbox")] == [TUNED["mac"]]
