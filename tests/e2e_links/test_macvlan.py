"""macvlan through libcni, ours beside Go's v1.1.1: the same link and result after ADD, traffic between two
children of one master, CHECK, nothing left after DEL, a second DEL fine, and where ours does better."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e_links import links
from tests.helpers import net


def _macvlan(**keys) -> dict:
    return {"type": "macvlan", **keys}


def test_add_matches_go_then_check_and_del_leave_nothing(cnitool, go_cnitool, host_ns, make_container_ns,
                                                           tmp_path: Path):
    links.make_master(host_ns)
    facts, shapes = {}, {}
    for label, tool in (("ours", cnitool), ("go", go_cnitool)):
        name = f"cntmv-{label}"
        tool.write_conflist(links.conflist(name, _macvlan(master=links.MASTER, mode="bridge", mtu=1400),
                                           tmp_path / label))
        ctr = make_container_ns(lo_up=True)
        add = tool.add(name, ctr)
        assert add.rc == 0, (label, add)
        facts[label], shapes[label] = links.link_facts(ctr), links.result_shape(add.out)
        assert add.out["interfaces"][0]["sandbox"] == ctr.path
        assert add.out["interfaces"][0]["mac"] == net.link(ctr, "eth0")["address"]
        assert tool.check(name, ctr).rc == 0, label
        assert tool.delete(name, ctr).rc == 0, label
        assert links.only_lo(ctr) and links.leases(tmp_path / label, name) == []
        assert tool.delete(name, ctr).rc == 0, f"{label}: a second DEL succeeds"
    assert facts["ours"] == facts["go"]
    assert facts["ours"]["kind"] == "macvlan" and facts["ours"]["data"]["mode"] == "bridge"
    assert facts["ours"]["mtu"] == 1400 and facts["ours"]["up"]
    assert shapes["ours"] == shapes["go"]


def test_two_children_of_one_master_reach_each_other(cnitool, host_ns, make_container_ns, tmp_path: Path):
    links.make_master(host_ns)
    cnitool.write_conflist(links.conflist("cntmv", _macvlan(master=links.MASTER), tmp_path))
    a, b = make_container_ns(lo_up=True), make_container_ns(lo_up=True)
    assert cnitool.add("cntmv", a).rc == 0
    add_b = cnitool.add("cntmv", b)
    assert add_b.rc == 0
    assert net.ping(a, add_b.out["ips"][0]["address"].split("/")[0])
    for ctr in (a, b):
        assert cnitool.delete("cntmv", ctr).rc == 0
    assert links.leases(tmp_path, "cntmv") == []


@pytest.mark.parametrize("mode", ["private", "vepa", "passthru", "source"])
def test_modes(cnitool, host_ns, make_container_ns, tmp_path: Path, mode: str):
    links.make_master(host_ns)
    cnitool.write_conflist(links.conflist("cntmv", _macvlan(mode=mode), tmp_path))  # master: the default route's
    ctr = make_container_ns()
    add = cnitool.add("cntmv", ctr)
    assert add.rc == 0, add
    assert links.link_facts(ctr)["data"]["mode"] == mode
    if mode == "passthru":
        assert add.out["interfaces"][0]["mac"] == net.link(host_ns, links.MASTER)["address"]
    assert cnitool.check("cntmv", ctr).rc == 0
    assert cnitool.delete("cntmv", ctr).rc == 0 and links.only_lo(ctr)


def test_bcqueuelen_sets_the_broadcast_queue(cnitool, host_ns, make_container_ns, tmp_path: Path):
    """``bcqueuelen`` (upstream v1.6+) reaches the kernel; 0 keeps its default (1000); out of uint32 is code 7
    naming the key, and nothing is made."""
    links.make_master(host_ns)
    for value, expected in ((2000, 2000), (0, 1000)):
        cnitool.write_conflist(links.conflist("cntmv", _macvlan(master=links.MASTER, bcqueuelen=value), tmp_path))
        ctr = make_container_ns()
        assert cnitool.add("cntmv", ctr).rc == 0
        lk = net.link(ctr, "eth0")
        assert lk is not None and lk["linkinfo"]["info_data"]["bcqueuelen"] == expected, lk
        assert cnitool.delete("cntmv", ctr).rc == 0 and links.only_lo(ctr)
    cnitool.write_conflist(links.conflist("cntmv", _macvlan(master=links.MASTER, bcqueuelen=-1), tmp_path))
    ctr = make_container_ns()
    add = cnitool.add("cntmv", ctr)
    assert add.rc == 1 and add.out["code"] == 7 and "bcqueuelen" in add.out["msg"], add
    assert links.only_lo(ctr) and links.leases(tmp_path, "cntmv") == []


def test_mac_from_runtime_config_and_l2_only(cnitool, host_ns, make_container_ns):
    links.make_master(host_ns)
    conf = links.conflist("cntmv", _macvlan(master=links.MASTER, mac="02:00:00:00:00:01",
                                            capabilities={"mac": True}), None)
    cnitool.write_conflist(conf)
    ctr = make_container_ns()
    add = cnitool.add("cntmv", ctr, cap_args={"mac": "02:00:00:00:00:02"})
    assert add.rc == 0, add
    assert add.out["interfaces"][0]["mac"] == "02:00:00:00:00:02" == net.link(ctr, "eth0")["address"]
    assert "ips" not in add.out and links.link_facts(ctr)["up"]
    assert cnitool.delete("cntmv", ctr, cap_args={"mac": "02:00:00:00:00:02"}).rc == 0


def test_link_in_container_uses_the_containers_master(cnitool, make_container_ns, tmp_path: Path):
    ctr = make_container_ns(lo_up=True)
    links.make_master(ctr, "cntinner", default_route=False)
    cnitool.write_conflist(links.conflist("cntmv", _macvlan(master="cntinner", linkInContainer=True), tmp_path))
    add = cnitool.add("cntmv", ctr)
    assert add.rc == 0, add
    assert net.link(ctr, "eth0")["link"] == "cntinner"
    assert cnitool.delete("cntmv", ctr).rc == 0
    assert net.link(ctr, "eth0") is None and net.link(ctr, "cntinner") is not None


@pytest.mark.parametrize(("keys", "text"), [
    ({"master": links.MASTER, "mtu": 9000}, "invalid MTU 9000, must be [0, master MTU(1500)]"),
    ({"master": "cntnothere"}, 'failed to lookup master "cntnothere"'),
    ({"master": links.MASTER, "mode": "foo"}, 'unknown macvlan mode: "foo"'),
])
def test_refused_add_leaves_nothing(cnitool, go_cnitool, host_ns, make_container_ns, tmp_path: Path, keys, text):
    links.make_master(host_ns)
    for label, tool in (("ours", cnitool), ("go", go_cnitool)):
        tool.write_conflist(links.conflist("cntmv", _macvlan(**keys), tmp_path / label))
        ctr = make_container_ns()
        add = tool.add("cntmv", ctr)
        assert add.rc == 1, (label, add)
        if label == "ours":
            assert add.out["code"] == 7 and text in add.out["msg"], add
        assert links.only_lo(ctr) and links.leases(tmp_path / label, "cntmv") == []


def test_failed_ipam_removes_the_link(cnitool, host_ns, make_container_ns, tmp_path: Path):
    links.make_master(host_ns)
    conf = links.conflist("cntmv", _macvlan(master=links.MASTER), tmp_path)
    conf["plugins"][0]["ipam"]["ranges"] = [[{"subnet": "10.61.0.0/30"}]]  # one address: the second ADD fails
    cnitool.write_conflist(conf)
    first, second = make_container_ns(), make_container_ns()
    assert cnitool.add("cntmv", first).rc == 0
    add = cnitool.add("cntmv", second)
    assert add.rc == 1 and links.only_lo(second), add
    assert cnitool.delete("cntmv", first).rc == 0


def test_del_after_the_master_is_gone(cnitool, go_cnitool, host_ns, make_container_ns, tmp_path: Path):
    """Ours tears down a pod whose master went first; Go v1.1.1's DEL fails on the lookup (#953)."""
    links.make_master(host_ns)
    outcomes = {}
    for label, tool in (("ours", cnitool), ("go", go_cnitool)):
        tool.write_conflist(links.conflist("cntmv", _macvlan(master=links.MASTER), tmp_path / label))
        ctr = make_container_ns()
        assert tool.add("cntmv", ctr).rc == 0
        host_ns.ip("link", "del", links.MASTER)  # its children go with it
        outcomes[label] = tool.delete("cntmv", ctr).rc
        assert links.leases(tmp_path / label, "cntmv") == [] or label == "go"
        links.make_master(host_ns, default_route=False)
    assert outcomes == {"ours": 0, "go": 1}


def test_status_and_gc(plugin_dir, host_ns, make_container_ns, tmp_path: Path):
    """STATUS is 50 while the named master is missing (upstream does not look); GC reaches IPAM, which frees the
    lease of an attachment the runtime no longer lists (upstream's macvlan drops GC, and the lease leaks)."""
    from tests.helpers.plugin import run_plugin

    conf = {"cniVersion": "1.1.0", "name": "cntmv", "type": "macvlan", "master": links.MASTER,
            "ipam": {"type": "host-local", "dataDir": str(tmp_path), "ranges": [[{"subnet": "10.61.0.0/24"}]]}}
    status = run_plugin(plugin_dir / "macvlan", "STATUS", conf, in_netns=host_ns)
    assert status.rc == 1 and status.out["code"] == 50 and links.MASTER in status.out["msg"], status
    links.make_master(host_ns)
    assert run_plugin(plugin_dir / "macvlan", "STATUS", conf, in_netns=host_ns).rc == 0
    ctr = make_container_ns()
    add = run_plugin(plugin_dir / "macvlan", "ADD", conf, netns=ctr, container_id="cnt-gone", in_netns=host_ns)
    assert add.rc == 0, add
    assert links.leases(tmp_path, "cntmv") == ["10.61.0.2"]
    gc = run_plugin(plugin_dir / "macvlan", "GC", dict(conf, **{"cni.dev/valid-attachments": []}), in_netns=host_ns)
    assert gc.rc == 0, gc
    assert links.leases(tmp_path, "cntmv") == []
