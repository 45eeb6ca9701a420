"""CHECK, failed ADD, racing first pods, DEL without a netns, GC: what is left in the kernel and on disk."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import pytest

from tests.e2e_bridge import lab
from tests.helpers import net
from tests.helpers.plugin import run_plugin

SUBNETS = ("10.80.0.0/24", "fd80::/64")


def _conf(tmp_path: Path, name: str = "cnte-life", **opts):
    return lab.bridge_conflist(name, "cnte5", tmp_path / "ipam", subnets=opts.pop("subnets", SUBNETS),
                               isDefaultGateway=True, ipMasq=True, **opts)


@pytest.mark.parametrize("damage, why", [
    ("container-address", "address 10.80.0.2/24 not found on 'eth0'"),
    ("host-veth-deleted", "container interface 'eth0' not found"),  # a veth pair goes as a whole
    ("host-veth-detached", "host veth of 'eth0' not found or not attached to 'cnte5'"),
])
def test_check_fails_after_damage_behind_its_back(damage, why, cnitool, host_ns, make_container_ns, tmp_path: Path):
    conf = _conf(tmp_path)
    cnitool.write_conflist(conf)
    ctr = make_container_ns()
    add = cnitool.add("cnte-life", ctr)
    assert add.rc == 0, add
    assert cnitool.check("cnte-life", ctr).rc == 0
    host_veth = add.out["interfaces"][1]["name"]
    if damage == "container-address":
        ctr.ip("addr", "del", add.out["ips"][0]["address"], "dev", "eth0")
    elif damage == "host-veth-deleted":
        host_ns.ip("link", "del", host_veth)
    else:
        host_ns.ip("link", "set", host_veth, "nomaster")
    check = cnitool.check("cnte-life", ctr)
    assert check.rc == 1 and why in check.out["msg"], check
    assert cnitool.delete("cnte-life", ctr).rc == 0
    assert lab.leases(tmp_path / "ipam", "cnte-life") == []


@pytest.mark.parametrize("cause", ["ipam-exhausted", "bridge-has-other-address"])
def test_failed_add_leaves_nothing(cause, cnitool, host_ns, make_container_ns, tmp_path: Path):
    """The veth already exists when IPAM fails (or, later, when the gateway cannot be set): all undone."""
    if cause == "ipam-exhausted":
        conf = _conf(tmp_path, subnets=("10.80.0.0/30",), macspoofchk=True)  # one usable address: .2
        cnitool.write_conflist(conf)
        first = make_container_ns()
        assert cnitool.add("cnte-life", first).rc == 0
    else:
        conf = _conf(tmp_path, macspoofchk=True)
        cnitool.write_conflist(conf)
        host_ns.ip("link", "add", "cnte5", "type", "bridge")
        host_ns.ip("addr", "add", "10.66.0.1/24", "dev", "cnte5")
    before = {"veths": lab.veths(host_ns), "leases": lab.leases(tmp_path / "ipam", "cnte-life"),
              "ipt": lab.ipt_masq_rules(host_ns, "cnte-life"), "nft": lab.nft_masq_rules(host_ns),
              "spoof": lab.macspoofchk_rules(host_ns)}
    ctr = make_container_ns()
    add = cnitool.add("cnte-life", ctr)
    assert add.rc == 1, add
    msg = add.out.get("msg") or add.out["error"]
    assert ("no IP addresses available" in msg) if cause == "ipam-exhausted" else ("already has an IP" in msg), msg
    assert [lk["ifname"] for lk in net.links(ctr)] == ["lo"]
    after = {"veths": lab.veths(host_ns), "leases": lab.leases(tmp_path / "ipam", "cnte-life"),
             "ipt": lab.ipt_masq_rules(host_ns, "cnte-life"), "nft": lab.nft_masq_rules(host_ns),
             "spoof": lab.macspoofchk_rules(host_ns)}
    assert after == before


@pytest.mark.parametrize("backend", ["iptables", "nftables"])
def test_first_pods_racing_to_create_the_bridge_all_succeed(backend, cnitool, host_ns, make_container_ns,
                                                            tmp_path: Path):
    conf = _conf(tmp_path, ipMasqBackend=backend)
    cnitool.write_conflist(conf)
    ctrs = [make_container_ns() for _ in range(10)]
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        adds = list(pool.map(lambda c: cnitool.add("cnte-life", c), ctrs))
    assert [a.rc for a in adds] == [0] * 10, [a for a in adds if a.rc]
    rules = lab.ipt_masq_rules(host_ns, "cnte-life") if backend == "iptables" else lab.nft_masq_rules(host_ns)
    assert len(rules) == (60 if backend == "iptables" else 20)  # 3 per IP in iptables, 1 in nftables
    assert sorted(net.ip_addresses(host_ns, "cnte5")) == ["10.80.0.1/24", "fd80::1/64"]
    assert len({ip for a in adds for ip in lab.result_ips(a.out)}) == 20
    assert len(lab.bridge_ports(host_ns, "cnte5")) == 10
    assert all(net.ping(c, "10.80.0.1") for c in ctrs)
    assert len({a.out["interfaces"][0]["mac"] for a in adds}) == 1  # the bridge MAC was pinned once
    assert [cnitool.check("cnte-life", c).rc for c in ctrs] == [0] * 10
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        dels = list(pool.map(lambda c: cnitool.delete("cnte-life", c), ctrs))
    assert [d.rc for d in dels] == [0] * 10
    assert lab.leases(tmp_path / "ipam", "cnte-life") == [] and lab.ipt_masq_rules(host_ns, "cnte-life") == []
    assert lab.nft_masq_rules(host_ns) == []


@pytest.mark.parametrize("backend", ["iptables", "nftables"])
@pytest.mark.parametrize("netns_state", ["empty", "gone"])
def test_del_without_netns_removes_rules_and_lease(netns_state, backend, plugin_dir, cnitool, netns_pool, host_ns,
                                                   make_container_ns, tmp_path: Path):
    conf = _conf(tmp_path, ipMasqBackend=backend)
    cnitool.write_conflist(conf)
    ctr = make_container_ns()
    assert cnitool.add("cnte-life", ctr, container_id="cnte-nons").rc == 0
    assert lab.ipt_masq_rules(host_ns, "cnte-life") or lab.nft_masq_rules(host_ns)
    netns_pool.remove(ctr)
    if netns_state == "gone":  # libcni with the stale path, as after a crash
        for _ in range(2):
            assert cnitool.delete("cnte-life", ctr, container_id="cnte-nons").rc == 0
    else:  # what ctr/nerdctl send after the task exited: CNI_NETNS=""
        for _ in range(2):
            dele = run_plugin(plugin_dir / "bridge", "DEL", lab.plugin_conf(conf), netns="", container_id="cnte-nons",
                              in_netns=host_ns)
            assert dele.rc == 0, dele
    assert lab.leases(tmp_path / "ipam", "cnte-life") == []
    assert lab.ipt_masq_rules(host_ns, "cnte-life") == [] and lab.nft_masq_rules(host_ns) == []
    assert lab.ipt_nat_chains(host_ns) == []


@pytest.mark.parametrize("backend", ["iptables", "nftables"])
def test_gc_removes_only_stale_masquerade_and_reservations(backend, plugin_dir, host_ns, make_container_ns,
                                                           tmp_path: Path):
    nets = {name: lab.plugin_conf(_conf(tmp_path, name, version="1.1.0", ipMasqBackend=backend,
                                        subnets=(subnet,)))
            for name, subnet in (("cnte-gc", "10.81.0.0/24"), ("cnte-other", "10.82.0.0/24"))}
    nets["cnte-other"]["bridge"] = "cnte6"
    for name, conf in nets.items():
        for cid in ("keep", "stale1", "stale2"):
            add = run_plugin(plugin_dir / "bridge", "ADD", conf, netns=make_container_ns(), container_id=cid,
                             in_netns=host_ns)
            assert add.rc == 0, add
    ports_before = lab.veths(host_ns)

    def state(name: str) -> tuple[list[str], list[str]]:
        rules = lab.ipt_masq_rules(host_ns, name) if backend == "iptables" else [
            r for r in lab.nft_masq_rules(host_ns) if f"net: {name}," in r]
        return rules, lab.leases(tmp_path / "ipam", name)

    other_before = state("cnte-other")
    gc = run_plugin(plugin_dir / "bridge", "GC",
                    {**nets["cnte-gc"], "cni.dev/valid-attachments": [{"containerID": "keep", "ifname": "eth0"}]},
                    in_netns=host_ns)
    assert gc.rc == 0, gc
    rules, leases = state("cnte-gc")
    assert rules and all("keep" in r for r in rules) and not any("stale" in r for r in rules), rules
    assert leases == ["10.81.0.2"]  # keep was added first
    assert state("cnte-other") == other_before  # another network's attachments are not touched
    assert lab.veths(host_ns) == ports_before  # GC removes rules and reservations, never links
