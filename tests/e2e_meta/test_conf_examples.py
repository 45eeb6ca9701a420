"""The host-device, sbr and vrf configs in conf-examples/ (70-72): each parses and reaches the kernel for every
verb; host-device and macvlan+sbr run for real through libcni (the vrf one runs in the kernel lane:
tests/kernel_lane/test_vrf.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e_links import links
from tests.helpers import inprocess, net
from tests.helpers.paths import REPO

EXAMPLES = [REPO / "conf-examples" / name for name in
            ("70-host-device.conflist", "71-macvlan-sbr.conflist", "72-macvlan-vrf.conflist")]
PREV = {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "sandbox": "/nonexistent/cnt-netns"}],
        "ips": [{"address": "10.41.0.100/24", "gateway": "10.41.0.1", "interface": 0}]}


def load(path: Path, data_dir: Path) -> dict[str, Any]:
    """The example, with host-local's leases and host-device's state under the test's `data_dir`."""
    conf = json.loads(path.read_text())
    conf["plugins"][0]["ipam"]["dataDir"] = str(data_dir / "ipam")
    if conf["plugins"][0]["type"] == "host-device":
        conf["plugins"][0]["dataDir"] = str(data_dir / "state")
    return conf


def test_the_examples_are_these_three():
    assert [[p["type"] for p in json.loads(path.read_text())["plugins"]] for path in EXAMPLES] == \
        [["host-device"], ["macvlan", "sbr"], ["macvlan", "vrf"]]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_is_valid(path: Path, monkeypatch, tmp_path: Path):
    inprocess.install_guard(monkeypatch)
    conf = load(path, tmp_path)
    for plugin in conf["plugins"]:
        call = {"cniVersion": conf["cniVersion"], "name": conf["name"], **plugin}
        if plugin["type"] in ("sbr", "vrf"):
            call["prevResult"] = PREV
        for verb in ("ADD", "DEL"):
            result = inprocess.call(plugin["type"], verb, call, {"CNI_PATH": "/usr/lib/cni"})
            # accepted: it reached the kernel, or found the (test's missing) netns gone: nothing to do for a DEL
            assert result.reached_kernel or result.rc == 0 or "netns" in result.out["msg"], (verb, result.out)


def test_host_device_example(cnitool, host_ns, make_container_ns, tmp_path: Path):
    host_ns.ip("link", "add", "eth1", "type", "veth", "peer", "name", "cntethp")
    host_ns.ip("addr", "add", "192.0.2.10/24", "dev", "eth1")
    host_ns.ip("link", "set", "eth1", "up")
    conf = load(REPO / "conf-examples" / "70-host-device.conflist", tmp_path)
    cnitool.write_conflist(conf)
    ctr = make_container_ns()
    add = cnitool.add(conf["name"], ctr, ifname="net1")
    assert add.rc == 0, add
    assert net.ip_addresses(ctr, "net1") == ["10.40.0.100/24"] and net.link(host_ns, "eth1") is None
    assert cnitool.check(conf["name"], ctr, ifname="net1").rc == 0
    assert cnitool.delete(conf["name"], ctr, ifname="net1").rc == 0
    assert net.ip_addresses(host_ns, "eth1") == ["192.0.2.10/24"] and links.only_lo(ctr)


def test_macvlan_sbr_example(cnitool, host_ns, make_container_ns, tmp_path: Path):
    links.make_master(host_ns)  # the default route's link: the macvlan's master
    conf = load(REPO / "conf-examples" / "71-macvlan-sbr.conflist", tmp_path)
    cnitool.write_conflist(conf)
    ctr = make_container_ns(lo_up=True)
    add = cnitool.add(conf["name"], ctr, ifname="net1")
    assert add.rc == 0, add
    rules = json.loads(ctr.run(["ip", "-j", "rule", "show"]).stdout)
    assert {"priority": 32765, "src": "10.41.0.100", "table": "100"} in rules
    assert ("default", "10.41.0.1") in [(r["dst"], r.get("gateway")) for r in net.routes(ctr, table="100")]
    assert cnitool.check(conf["name"], ctr, ifname="net1").rc == 0
    assert cnitool.delete(conf["name"], ctr, ifname="net1").rc == 0
    assert [r["table"] for r in json.loads(ctr.run(["ip", "-j", "rule", "show"]).stdout)] == \
        ["local", "main", "default"]
