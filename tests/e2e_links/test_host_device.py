"""host-device through libcni, ours beside Go's v1.1.1, with a veth end standing in for the node's device: the
same facts after ADD, traffic through the lent device, CHECK, the device back in the node after DEL with its
name (ours: with its addresses and up state too), and where Go's fails (second DEL, DEL after the netns went,
the IPAM lease of a vanished netns)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e_links import links
from tests.helpers import net
from tests.helpers.netns import Netns

DEV = "cnthd0"


def _make_device(host: Netns, name: str = DEV, address: str = "10.98.0.2/24") -> str:
    """A veth end in the host namespace with an address, up; its peer stays behind as the far side."""
    host.ip("link", "add", name, "type", "veth", "peer", "name", f"{name}p")
    host.ip("addr", "add", address, "dev", name)
    host.ip("addr", "add", "10.98.0.1/24", "dev", f"{name}p")
    host.ip("link", "set", f"{name}p", "up")
    host.ip("link", "set", name, "up")
    return net.link(host, name)["address"]


def _conf(name: str, data_dir: Path | None, state_dir: Path | None = None, **keys: Any) -> dict[str, Any]:
    plugin: dict[str, Any] = {"type": "host-device", **keys}
    if state_dir is not None:
        plugin["dataDir"] = str(state_dir)
    return links.conflist(name, plugin, data_dir, subnet="10.62.0.0/24")


def _no_state(state_dir: Path) -> bool:
    """No host-device state file is left (each network keeps its own directory)."""
    return not any(p.is_file() for p in state_dir.rglob("*"))


def _host_facts(host: Netns, name: str = DEV) -> dict[str, Any]:
    lk = net.link(host, name)
    assert lk is not None, f"{name} is not back in the node"
    return {"up": "UP" in lk["flags"], "addresses": net.ip_addresses(host, name), "alias": lk.get("ifalias", "")}


def test_add_matches_go_and_the_device_comes_back(cnitool, go_cnitool, host_ns, make_container_ns, tmp_path: Path):
    facts, shapes, back = {}, {}, {}
    for label, tool in (("ours", cnitool), ("go", go_cnitool)):
        mac = _make_device(host_ns)
        name = f"cnthd-{label}"
        tool.write_conflist(_conf(name, tmp_path / label, tmp_path / f"{label}-state", device=DEV))
        ctr = make_container_ns(lo_up=True)
        add = tool.add(name, ctr, ifname="net1")
        assert add.rc == 0, (label, add)
        assert net.link(host_ns, DEV) is None
        lk = net.link(ctr, "net1")
        assert lk["address"] == mac and lk.get("ifalias") == DEV, label
        facts[label] = {"up": "UP" in lk["flags"], "addresses": net.ip_addresses(ctr, "net1")}
        shapes[label] = links.result_shape(add.out)
        assert add.out["interfaces"] == [{"name": "net1", "mac": mac, "sandbox": ctr.path}]
        assert tool.check(name, ctr, ifname="net1").rc == 0, label
        assert tool.delete(name, ctr, ifname="net1").rc == 0, label
        assert links.only_lo(ctr) and links.leases(tmp_path / label, name) == []
        back[label] = _host_facts(host_ns)
        assert net.link(host_ns, DEV)["address"] == mac
        host_ns.ip("link", "del", DEV)
    assert facts["ours"] == facts["go"] == {"up": True, "addresses": ["10.62.0.2/24"]}
    assert shapes["ours"] == shapes["go"]
    # Go leaves the device down and bare (#754) with the alias still set; ours gives back what the node had.
    assert back["go"] == {"up": False, "addresses": [], "alias": DEV}
    assert back["ours"] == {"up": True, "addresses": ["10.98.0.2/24"], "alias": ""}


def test_traffic_through_the_lent_device(cnitool, host_ns, make_container_ns, tmp_path: Path):
    _make_device(host_ns)
    conf = _conf("cnthd", None, tmp_path / "state", device=DEV)
    conf["plugins"][0]["ipam"] = {"type": "host-local", "dataDir": str(tmp_path / "ipam"),
                                  "ranges": [[{"subnet": "10.98.0.0/24", "rangeStart": "10.98.0.5"}]]}
    cnitool.write_conflist(conf)
    ctr = make_container_ns(lo_up=True)
    assert cnitool.add("cnthd", ctr).rc == 0
    assert net.ping(ctr, "10.98.0.1"), "the peer left in the node answers through the lent device"
    assert cnitool.delete("cnthd", ctr).rc == 0


def test_second_del_and_check_after_del(cnitool, go_cnitool, host_ns, make_container_ns, tmp_path: Path):
    """Go v1.1.1's second DEL fails with `failed to find "net1": Link not found` (#995: pods stuck)."""
    outcomes = {}
    for label, tool in (("ours", cnitool), ("go", go_cnitool)):
        _make_device(host_ns)
        tool.write_conflist(_conf("cnthd", tmp_path / label, tmp_path / f"{label}-state", device=DEV))
        ctr = make_container_ns()
        assert tool.add("cnthd", ctr, ifname="net1").rc == 0
        assert tool.delete("cnthd", ctr, ifname="net1").rc == 0
        second = tool.delete("cnthd", ctr, ifname="net1")
        outcomes[label] = second.rc
        if label == "go":
            assert "Link not found" in json.dumps(second.out)
        assert net.link(host_ns, DEV) is not None
        host_ns.ip("link", "del", DEV)
    assert outcomes == {"ours": 0, "go": 1}


def test_del_after_the_netns_is_gone_releases_the_address(cnitool, go_cnitool, host_ns, netns_pool, tmp_path: Path):
    """Go's DEL fails on the missing netns path and never reaches IPAM DEL: the address leaks (#1196)."""
    outcomes = {}
    for label, tool in (("ours", cnitool), ("go", go_cnitool)):
        _make_device(host_ns)
        tool.write_conflist(_conf("cnthd", tmp_path / label, tmp_path / f"{label}-state", device=DEV))
        ctr = netns_pool.create("ctr")
        path = ctr.path
        assert tool.add("cnthd", ctr).rc == 0
        assert links.leases(tmp_path / label, "cnthd") != []
        netns_pool.remove(ctr)  # a veth dies with its netns; a physical device would come back to the node
        outcomes[label] = tool.delete("cnthd", path).rc
        outcomes[f"{label} leases"] = links.leases(tmp_path / label, "cnthd")
        assert tool.delete("cnthd", path).rc == 0 or label == "go"
        host_ns.ip("link", "del", f"{DEV}p", check=False)
    assert outcomes["ours"] == 0 and outcomes["ours leases"] == []
    assert outcomes["go"] == 1 and outcomes["go leases"] != []
    assert _no_state(tmp_path / "ours-state")


def test_selected_by_hwaddr(cnitool, host_ns, make_container_ns, tmp_path: Path):
    mac = _make_device(host_ns)
    cnitool.write_conflist(_conf("cnthd", None, tmp_path / "state", hwaddr=mac.upper()))
    ctr = make_container_ns()
    add = cnitool.add("cnthd", ctr)
    assert add.rc == 0, add
    assert "ips" not in add.out and net.link(ctr, "eth0")["address"] == mac
    assert "UP" in net.link(ctr, "eth0")["flags"], "L2 only: up, no address"
    assert cnitool.check("cnthd", ctr).rc == 0
    assert cnitool.delete("cnthd", ctr).rc == 0
    assert _host_facts(host_ns) == {"up": True, "addresses": ["10.98.0.2/24"], "alias": ""}


def test_container_name_taken_in_the_node_and_in_the_container(cnitool, host_ns, make_container_ns, tmp_path: Path):
    """The rename happens in a scratch netns: a node link already named like CNI_IFNAME does not matter; a
    container that already has CNI_IFNAME refuses the ADD and the device stays in the node untouched."""
    _make_device(host_ns)
    host_ns.ip("link", "add", "eth0", "type", "dummy", check=False)  # this kernel may lack dummy: a bridge then
    if net.link(host_ns, "eth0") is None:
        host_ns.ip("link", "add", "eth0", "type", "bridge")
    cnitool.write_conflist(_conf("cnthd", tmp_path / "ipam", tmp_path / "state", device=DEV))
    ctr = make_container_ns()
    assert cnitool.add("cnthd", ctr).rc == 0
    assert cnitool.delete("cnthd", ctr).rc == 0
    busy = make_container_ns()
    busy.ip("link", "add", "eth0", "type", "bridge")
    add = cnitool.add("cnthd", busy)
    assert add.rc == 1 and "eth0" in add.out["msg"], add
    assert _host_facts(host_ns) == {"up": True, "addresses": ["10.98.0.2/24"], "alias": ""}
    assert links.leases(tmp_path / "ipam", "cnthd") == [] and _no_state(tmp_path / "state")


def test_failed_ipam_gives_the_device_back(cnitool, host_ns, make_container_ns, tmp_path: Path):
    _make_device(host_ns)
    conf = _conf("cnthd", tmp_path / "ipam", tmp_path / "state", device=DEV)
    conf["plugins"][0]["ipam"]["ranges"] = [[{"subnet": "10.62.0.0/24", "rangeStart": "10.62.0.9",
                                              "rangeEnd": "10.62.0.8"}]]
    cnitool.write_conflist(conf)
    ctr = make_container_ns()
    add = cnitool.add("cnthd", ctr)
    assert add.rc == 1, add
    assert links.only_lo(ctr)
    assert _host_facts(host_ns) == {"up": True, "addresses": ["10.98.0.2/24"], "alias": ""}
    assert _no_state(tmp_path / "state")


@pytest.mark.parametrize(("keys", "text"), [
    ({}, 'specify either "device", "hwaddr", "kernelpath" or "pciBusID"'),
    ({"device": "cntnothere"}, '"cntnothere"'),
    ({"kernelpath": "devices/x"}, "must be absolute and begin with /sys/devices/"),
    ({"hwaddr": "02:00:00:00:99:99"}, "failed to find host device"),
])
def test_refused_add_leaves_nothing(cnitool, go_cnitool, host_ns, make_container_ns, tmp_path: Path, keys, text):
    _make_device(host_ns)
    for label, tool in (("ours", cnitool), ("go", go_cnitool)):
        tool.write_conflist(_conf("cnthd", tmp_path / label, tmp_path / f"{label}-state", **keys))
        ctr = make_container_ns()
        add = tool.add("cnthd", ctr)
        assert add.rc == 1, (label, add)
        if label == "ours":
            assert add.out["code"] == 7 and text in add.out["msg"], add
        assert links.only_lo(ctr) and links.leases(tmp_path / label, "cnthd") == []
    assert _host_facts(host_ns) == {"up": True, "addresses": ["10.98.0.2/24"], "alias": ""}


def test_inspect_draws_the_lent_device(cnitool, host_ns, make_container_ns, tmp_path: Path):
    """`cni-suite inspect` shows the device in its container under its node name (the alias), in JSON, text
    and SVG; with sbr chained, the container's source rule too."""
    import subprocess
    import sys

    from tests.helpers.paths import REPO

    _make_device(host_ns)
    conf = _conf("cnthdi", tmp_path / "ipam", tmp_path / "state", device=DEV)
    conf["plugins"][0]["ipam"]["routes"] = [{"dst": "0.0.0.0/0"}]
    conf["plugins"][0]["ipam"]["ranges"][0][0]["gateway"] = "10.62.0.1"
    conf["plugins"].append({"type": "sbr"})
    cnitool.write_conflist(conf)
    ctr = make_container_ns()
    add = cnitool.add("cnthdi", ctr, ifname="net1")
    assert add.rc == 0, add

    def inspect(*extra: str) -> str:
        argv = [sys.executable, "-m", "cni_common.inspect", "--netns", host_ns.name, "--data-dir",
                str(tmp_path / "ipam"), "--cache-dir", str(cnitool.cache_dir), *extra]
        return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120, check=True).stdout

    node = json.loads(inspect("--format", "json"))
    [ctr_model] = [c for c in node["containers"] if c["netns"] == ctr.name]
    [iface] = ctr_model["interfaces"]
    assert (iface["name"], iface["host_device"], iface["addresses"], iface["network"]) == \
        ("net1", DEV, ["10.62.0.2/24"], "cnthdi")
    assert ctr_model["rules"] == ["from 10.62.0.2 lookup 100"]
    text = inspect()
    assert f"  devices lent to containers (host-device)\n    {DEV} lent as net1 in {ctr.name}" in text
    assert "rules: from 10.62.0.2 lookup 100" in text
    assert f"host-device {DEV} as net1" in inspect("--format", "svg")
    assert cnitool.delete("cnthdi", ctr, ifname="net1").rc == 0


def test_a_device_back_in_the_node_under_its_container_name_gets_its_name_back(cnitool, host_ns, netns_pool,
                                                                              tmp_path: Path):
    """A physical device whose netns died without a DEL returns to the node as `net1` (multus-cni#1134); a veth
    would die with the netns, so the return is played by hand: the lent device moved back as the kernel would."""
    _make_device(host_ns)
    cnitool.write_conflist(_conf("cnthd", tmp_path / "ipam", tmp_path / "state", device=DEV))
    ctr = netns_pool.create("ctr")
    path = ctr.path
    assert cnitool.add("cnthd", ctr, ifname="net1").rc == 0
    ctr.ip("link", "set", "net1", "netns", host_ns.name)
    netns_pool.remove(ctr)
    assert net.link(host_ns, "net1") is not None and net.link(host_ns, DEV) is None
    assert cnitool.delete("cnthd", path, ifname="net1").rc == 0
    assert net.link(host_ns, "net1") is None
    assert _host_facts(host_ns) == {"up": True, "addresses": ["10.98.0.2/24"], "alias": ""}
    assert links.leases(tmp_path / "ipam", "cnthd") == [] and _no_state(tmp_path / "state")


def test_gc_forgets_the_state_of_attachments_that_are_gone(cnitool, host_ns, make_container_ns, tmp_path: Path):
    """GC (1.1.0, with the valid attachments, run as libcni 1.2 would) keeps the state of live attachments and
    drops the others'."""
    _make_device(host_ns)
    conf = _conf("cnthd", tmp_path / "ipam", tmp_path / "state", device=DEV)  # libcni 1.1.2 speaks 1.0.0
    cnitool.write_conflist(conf)
    ctr = make_container_ns()
    assert cnitool.add("cnthd", ctr, container_id="cnt-live").rc == 0
    stale = tmp_path / "state" / "cnthd" / "cnt-gone-eth0"
    stale.write_text('{"name": "cntx", "up": true, "addresses": []}')
    from tests.helpers.plugin import run_plugin

    gc_conf = dict(conf["plugins"][0], cniVersion="1.1.0", name="cnthd",
                   **{"cni.dev/valid-attachments": [{"containerID": "cnt-live", "ifname": "eth0"}]})
    done = run_plugin(Path(cnitool.cni_path) / "host-device", "GC", gc_conf, in_netns=host_ns)
    assert done.rc == 0, done
    assert sorted(p.name for p in (tmp_path / "state" / "cnthd").iterdir()) == ["cnt-live-eth0"]
    assert cnitool.delete("cnthd", ctr, container_id="cnt-live").rc == 0
    assert _host_facts(host_ns) == {"up": True, "addresses": ["10.98.0.2/24"], "alias": ""}
