"""The vxlan plugin's store handling through libcni and by direct exec: races, errors, DEL without the
store, CHECK, STATUS, and a node whose device vanished coming back with the same subnet and MAC."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import net
from tests.helpers.etcd import EtcdServer, free_port, store_conf
from tests.helpers.netns import NetnsPool
from tests.helpers.plugin import run_plugin
from tests.helpers.recorder import recorded_calls, recording_bin_dir
from tests.helpers.vxlan_lab import NET_NAME, NETWORK, Cluster, Lab, eventually, source_bin_dir


def _subnet_of(result: dict[str, Any]) -> str:
    return result["ips"][0]["address"].rsplit(".", 1)[0] + ".0/24"


@pytest.mark.parametrize("round_", range(5))
def test_two_nodes_adding_at_once_get_different_subnets(lab: Lab, etcd: EtcdServer, cluster: Cluster,
                                                        netns_pool: NetnsPool, round_: int) -> None:
    nodes = [lab.add_node(1), lab.add_node(2)]
    store = store_conf(etcd, prefix=f"/cnt-x/race{round_}")
    ctrs = []
    procs = []
    for node in nodes:
        tool = cluster.configure(node, store=store)
        ctr = netns_pool.create(f"xc{node.name[-1]}-", lo_up=True)
        node.containers.append(ctr)
        ctrs.append(ctr)
        env_argv = ["add", NET_NAME, ctr.path]
        procs.append(node.ns.popen([str(tool.binary), *env_argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "NETCONFPATH": str(tool.conf_dir),
                                        "CNI_PATH": tool.cni_path, "CNI_CACHE_DIR": str(tool.cache_dir)}))
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    subnets = [_subnet_of(json.loads(o[0])) for o in outs]
    assert subnets[0] != subnets[1]


def test_unreachable_store_names_the_endpoint(lab: Lab, cluster: Cluster, make_container_ns) -> None:
    node = lab.add_node(1)
    dead = f"http://{lab.address(250)}:{free_port()}"
    tool = cluster.configure(node, store={"etcd": {"endpoints": [dead]}})
    res = tool.add(NET_NAME, make_container_ns())
    assert res.rc != 0
    assert res.out["code"] == 11 and dead in res.out["msg"], res.out


@pytest.mark.parametrize("bad, key", [
    ({"store": {"etcd": {"endpoints": ["etcd:2379"]}}}, "etcd:2379"),
    ({"store": {"etcd": {"endpoints": []}}}, "store.etcd.endpoints"),
    ({"network": "10.244.0.1/16"}, "network"),
    ({"vni": 0}, "vni"),
    ({"subnetLen": 8}, "subnetLen"),
    ({"peers": [{"underlayIP": "10.123.0.2"}]}, "peers[0]"),
])
def test_bad_config_is_code_7_naming_the_key(lab: Lab, cluster: Cluster, make_container_ns, bad: dict[str, Any],
                                             key: str) -> None:
    node = lab.add_node(1)
    tool = cluster.configure(node, **bad)
    res = tool.add(NET_NAME, make_container_ns())
    assert res.rc != 0 and res.out["code"] == 7 and key in res.out["msg"], res.out


def test_del_and_check_without_the_store(lab: Lab, etcd: EtcdServer, cluster: Cluster) -> None:
    n1, n2 = lab.add_node(1), lab.add_node(2)
    for node in (n1, n2):
        cluster.configure(node, store=store_conf(etcd))
    cluster.add_container(n2)
    c1 = cluster.add_container(n1)
    tool = cluster.tools[n1.name]
    assert tool.check(NET_NAME, c1).rc == 0
    etcd.stop()
    res = tool.delete(NET_NAME, c1)
    assert res.rc == 0, (res.out, res.stderr)
    assert net.link(c1, "eth0") is None
    assert not [p for p in (cluster.tmp / "ipam" / n1.name / NET_NAME).iterdir() if p.name.startswith("10.")]


def test_restart_gets_the_same_subnet_and_mac(lab: Lab, etcd: EtcdServer, cluster: Cluster) -> None:
    node = lab.add_node(1)
    cluster.configure(node, store=store_conf(etcd))
    first = cluster.add_container(node)
    mac = net.link(node.ns, "cnivx.1")["address"]
    node.ns.ip("link", "del", "cnivx.1")  # e.g. a reboot: the device is gone, the reservation is not
    second = cluster.add_container(node)
    assert _subnet_of(cluster.results[first.name]) == _subnet_of(cluster.results[second.name])
    assert net.link(node.ns, "cnivx.1")["address"] == mac


def _status(bin_dir: Path, ns, conf: dict[str, Any]):
    return run_plugin(bin_dir / "vxlan", "STATUS", conf, in_netns=ns, cni_path=bin_dir)


def _recording_ipam(bin_dir: Path, log_dir: Path) -> Path:
    """``bin_dir/host-local`` becomes a wrapper that records each call, then runs the real one; returns
    ``log_dir`` for :func:`recorded_calls`."""
    (bin_dir / "real").mkdir()
    real = (bin_dir / "host-local").rename(bin_dir / "real" / "host-local")  # the program runs as its file name
    recording_bin_dir(bin_dir, {"host-local": real}, log_dir)
    return log_dir


def test_status_is_50_without_store_and_peers(lab: Lab, tmp_path: Path) -> None:
    node = lab.add_node(1)
    bin_dir = source_bin_dir(tmp_path / "bin")
    calls = _recording_ipam(bin_dir, tmp_path / "calls")
    conf = {"cniVersion": "1.1.0", "name": NET_NAME, "type": "vxlan", "network": NETWORK,
            "store": {"etcd": {"endpoints": [f"http://{lab.address(250)}:{free_port()}"]}}}
    res = _status(bin_dir, node.ns, conf)
    assert res.rc == 1 and res.out["code"] == 50, res
    assert "vxlan store not available" in res.out["msg"]
    assert recorded_calls(calls) == []  # not ready: IPAM is not asked


def test_status_passes_to_ipam_when_static_peers_remain(lab: Lab, tmp_path: Path) -> None:
    """The store is unreachable but static peers still work: STATUS is IPAM's, with the request vxlan gives it
    (its ``ipam`` section filled with the pod network as range and route, no store needed)."""
    node = lab.add_node(1)
    bin_dir = source_bin_dir(tmp_path / "bin")
    calls = _recording_ipam(bin_dir, tmp_path / "calls")
    conf = {"cniVersion": "1.1.0", "name": NET_NAME, "type": "vxlan", "network": NETWORK,
            "ipam": {"type": "host-local", "dataDir": str(tmp_path / "ipam")},
            "peers": [{"underlayIP": node.underlay_ip, "subnet": "10.244.1.0/24"}],
            "store": {"etcd": {"endpoints": [f"http://{lab.address(250)}:{free_port()}"]}}}
    res = _status(bin_dir, node.ns, conf)
    assert res.rc == 0 and not res.out, res
    (call,) = recorded_calls(calls)
    assert call.command == "STATUS" and call.conf["name"] == NET_NAME
    assert call.conf["ipam"] == {"type": "host-local", "dataDir": str(tmp_path / "ipam"),
                                 "ranges": [[{"subnet": NETWORK}]], "routes": [{"dst": NETWORK}]}


def test_status_returns_the_ipams_error(lab: Lab, tmp_path: Path) -> None:
    """An IPAM that is not ready makes vxlan not ready, with IPAM's own code and message."""
    node = lab.add_node(1)
    bin_dir = source_bin_dir(tmp_path / "bin")
    data_dir = tmp_path / "not-a-dir"
    data_dir.write_text("a file where host-local wants its folder")
    conf = {"cniVersion": "1.1.0", "name": NET_NAME, "type": "vxlan", "network": NETWORK,
            "ipam": {"type": "host-local", "dataDir": str(data_dir)},
            "peers": [{"underlayIP": node.underlay_ip, "subnet": "10.244.1.0/24"}]}
    res = _status(bin_dir, node.ns, conf)
    assert res.rc == 1, res
    assert res.out["code"] != 999 and str(data_dir) in res.out["msg"] + res.out.get("details", ""), res


def _alive(lab: Lab, etcd: EtcdServer, node: str) -> bool:
    out = lab.underlay.run(["etcdctl", "--endpoints", etcd.url, "get", "--keys-only", f"/cnt-x/vx/alive/{node}"])
    return bool(out.stdout.strip())


def test_add_alone_removes_an_expired_node(lab: Lab, etcd: EtcdServer, cluster: Cluster) -> None:
    """No agent anywhere: node2's lease runs out, and node1's next ADD drops its FDB, neighbour and route."""
    n1, n2 = lab.add_node(1), lab.add_node(2)
    for node in (n1, n2):
        cluster.configure(node, store=store_conf(etcd, leaseTTL=5))
    c2 = cluster.add_container(n2)
    cluster.add_container(n1)
    subnet2 = _subnet_of(cluster.results[c2.name])
    assert subnet2 in {r["dst"] for r in net.routes(n1.ns)}
    assert eventually(lambda: not _alive(lab, etcd, n2.name))
    cluster.add_container(n1)
    assert subnet2 not in {r["dst"] for r in net.routes(n1.ns)}
    assert n2.underlay_ip not in n1.ns.run(["bridge", "fdb", "show", "dev", "cnivx.1"]).stdout
    assert subnet2.split("/")[0] + " " not in n1.ns.ip("neigh", "show", "dev", "cnivx.1").stdout


def _static_peer_node(lab: Lab, tmp_path: Path, **extra: Any) -> tuple[Any, Path, dict[str, Any]]:
    """Node 1 of the lab, the plugin files, and a vxlan config with one static peer and host-local in tmp_path."""
    node = lab.add_node(1)
    conf = {"cniVersion": "1.1.0", "name": NET_NAME, "type": "vxlan", "network": NETWORK, **extra,
            "ipam": {"type": "host-local", "dataDir": str(tmp_path / "ipam")},
            "peers": [{"underlayIP": node.underlay_ip, "subnet": "10.244.1.0/24"}]}
    return node, source_bin_dir(tmp_path / "bin"), conf


def test_gc_releases_the_leases_of_unknown_attachments(lab: Lab, tmp_path: Path, make_container_ns) -> None:
    node, bin_dir, conf = _static_peer_node(lab, tmp_path)
    kept, dropped = make_container_ns(), make_container_ns()
    for cid, ctr in (("keep", kept), ("drop", dropped)):
        res = run_plugin(bin_dir / "vxlan", "ADD", conf, netns=ctr, container_id=cid, in_netns=node.ns,
                         cni_path=bin_dir)
        assert res.rc == 0, res
    gc_conf = {**conf, "cni.dev/valid-attachments": [{"containerID": "keep", "ifname": "eth0"}]}
    res = run_plugin(bin_dir / "vxlan", "GC", gc_conf, in_netns=node.ns, cni_path=bin_dir)
    assert res.rc == 0, res
    owners = {p.read_text().split()[0] for p in (tmp_path / "ipam" / NET_NAME).iterdir()
              if p.name.startswith("10.244.")}
    assert owners == {"keep"}


def test_del_after_the_address_was_replaced_leaks_no_masquerade_rule(lab: Lab, tmp_path: Path,
                                                                     make_container_ns) -> None:
    """Issue 12, defect 7: the rules were found through the interface's addresses only."""
    node, bin_dir, conf = _static_peer_node(lab, tmp_path, ipMasq=True)
    ctr = make_container_ns()
    add = run_plugin(bin_dir / "vxlan", "ADD", conf, netns=ctr, container_id="cid1", in_netns=node.ns,
                     cni_path=bin_dir)
    assert add.rc == 0, add
    address = add.out["ips"][0]["address"]
    ctr.ip("addr", "del", address, "dev", "eth0")
    ctr.ip("addr", "add", "10.244.1.250/24", "dev", "eth0")

    def masq() -> list[str]:
        return [ln for ln in node.ns.run(["iptables", "-t", "nat", "-S"]).stdout.splitlines() if "cid1" in ln]

    assert masq()
    res = run_plugin(bin_dir / "vxlan", "DEL", conf, netns=ctr, container_id="cid1", in_netns=node.ns,
                     cni_path=bin_dir)
    assert res.rc == 0 and masq() == [], (res, masq())


def test_check_without_the_vxlan_device_is_a_check_failure(lab: Lab, tmp_path: Path, make_container_ns) -> None:
    """The node's device gone is the node's state differing from the ADD's, not the config's fault (code 7)."""
    node, bin_dir, conf = _static_peer_node(lab, tmp_path)
    ctr = make_container_ns()
    add = run_plugin(bin_dir / "vxlan", "ADD", conf, netns=ctr, container_id="cid1", in_netns=node.ns,
                     cni_path=bin_dir)
    assert add.rc == 0, add
    check_conf = {**conf, "prevResult": add.out}

    def check() -> Any:
        return run_plugin(bin_dir / "vxlan", "CHECK", check_conf, netns=ctr, container_id="cid1", in_netns=node.ns,
                          cni_path=bin_dir)

    assert check().rc == 0
    node.ns.ip("link", "del", "cnivx.1")
    res = check()
    assert res.rc == 1 and res.out["code"] == 106 and "cnivx.1" in res.out["msg"], res
