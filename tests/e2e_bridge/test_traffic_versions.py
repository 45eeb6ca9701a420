"""Three dual-stack containers on one bridge reach each other and the gateway, at every spec version.

0.3.0 to 1.0.0 go through libcni (the driver), as a runtime would. libcni 1.1.2 knows no 1.1.0 results:
with a 1.1.0 config it runs the plugin's ADD and then fails parsing the result ("unsupported CNI result
version"), leaving the attachment behind. So 1.1.0 is driven with the binary directly (CHECK with
prevResult, DEL), and the libcni behaviour is pinned by its own test.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from tests.e2e_bridge import lab
from tests.helpers import net
from tests.helpers.plugin import run_plugin

GATEWAYS = ("10.77.0.1", "fd77::1")


def _assert_result_shape(res: dict[str, Any], version: str, ns_path: str) -> None:
    assert res["cniVersion"] == version
    names = [i["name"] for i in res["interfaces"]]
    assert names[0] == "cnte0" and names[1].startswith("veth") and names[2] == "eth0", res
    assert res["interfaces"][2]["sandbox"] == ns_path
    fams = [ip["address"].startswith("10.77.0.") for ip in res["ips"]]
    assert fams == [True, False], res
    for ip in res["ips"]:
        assert ip["interface"] == 2 and ip["gateway"] in GATEWAYS
        if version.startswith("0."):  # 0.3.x and 0.4.0 results carry it, 1.x do not
            assert ip["version"] == ("4" if "." in ip["address"] else "6")
        else:
            assert "version" not in ip


def _assert_all_reach_all(ctrs, ips: list[list[str]]) -> None:
    for ctr in ctrs:
        for gw in GATEWAYS:
            assert net.ping(ctr, gw), f"{ctr.name} -> gateway {gw}"
    for a, b in itertools.permutations(range(len(ctrs)), 2):
        for addr in ips[b]:
            assert net.ping(ctrs[a], addr), f"{ctrs[a].name} -> {addr}"


@pytest.mark.parametrize("version", lab.LIBCNI_VERSIONS)
def test_three_containers_dual_stack_through_libcni(version, cnitool, host_ns, make_container_ns, tmp_path: Path):
    conf = lab.bridge_conflist(f"cnte-v{version.replace('.', '')}", "cnte0", tmp_path / "ipam", version=version,
                               isDefaultGateway=True, ipMasq=True)
    cnitool.write_conflist(conf)
    ctrs = [make_container_ns(lo_up=True) for _ in range(3)]
    results = []
    for ctr in ctrs:
        add = cnitool.add(conf["name"], ctr)
        assert add.rc == 0, add
        _assert_result_shape(add.out, version, ctr.path)
        results.append(add.out)
    lab.wait_dad(host_ns, "cnte0")
    _assert_all_reach_all(ctrs, [lab.result_ips(r) for r in results])
    assert len(lab.leases(tmp_path / "ipam", conf["name"])) == 6
    if version not in ("0.3.0", "0.3.1"):  # CHECK exists from 0.4.0 on
        for ctr in ctrs:
            check = cnitool.check(conf["name"], ctr)
            assert check.rc == 0, check
    for ctr in ctrs:
        assert cnitool.delete(conf["name"], ctr).rc == 0
        assert cnitool.delete(conf["name"], ctr).rc == 0  # repeatable
    assert lab.leases(tmp_path / "ipam", conf["name"]) == []
    assert lab.ipt_masq_rules(host_ns, conf["name"]) == []
    assert lab.bridge_ports(host_ns, "cnte0") == []


def test_three_containers_dual_stack_at_1_1_0(plugin_dir, host_ns, make_container_ns, tmp_path: Path):
    conflist = lab.bridge_conflist("cnte-v110", "cnte0", tmp_path / "ipam", version="1.1.0",
                                   isDefaultGateway=True, ipMasq=True)
    conf = lab.plugin_conf(conflist)
    ctrs = [make_container_ns(lo_up=True) for _ in range(3)]
    results = []
    for n, ctr in enumerate(ctrs):
        add = run_plugin(plugin_dir / "bridge", "ADD", conf, netns=ctr, container_id=f"cnte-{n}", in_netns=host_ns)
        assert add.rc == 0, add
        _assert_result_shape(add.out, "1.1.0", ctr.path)
        results.append(add.out)
    lab.wait_dad(host_ns, "cnte0")
    _assert_all_reach_all(ctrs, [lab.result_ips(r) for r in results])
    for n, (ctr, res) in enumerate(zip(ctrs, results)):
        check = run_plugin(plugin_dir / "bridge", "CHECK", {**conf, "prevResult": res}, netns=ctr,
                           container_id=f"cnte-{n}", in_netns=host_ns)
        assert check.rc == 0, check
    status = run_plugin(plugin_dir / "bridge", "STATUS", conf, in_netns=host_ns)
    assert status.rc == 0, status
    for n, ctr in enumerate(ctrs):
        for _ in range(2):
            dele = run_plugin(plugin_dir / "bridge", "DEL", conf, netns=ctr, container_id=f"cnte-{n}",
                              in_netns=host_ns)
            assert dele.rc == 0, dele
    assert lab.leases(tmp_path / "ipam", "cnte-v110") == []
    assert lab.ipt_masq_rules(host_ns, "cnte-v110") == []


def test_libcni_1_1_2_rejects_1_1_0_results(cnitool, host_ns, make_container_ns, tmp_path: Path):
    """Pins what the driver does with a 1.1.0 config: the plugin ran, libcni could not read its result."""
    conf = lab.bridge_conflist("cnte-libcni", "cnte0", tmp_path / "ipam", version="1.1.0", isGateway=True)
    cnitool.write_conflist(conf)
    ctr = make_container_ns()
    add = cnitool.add(conf["name"], ctr)
    assert add.rc == 1 and 'unsupported CNI result version "1.1.0"' in add.out["error"], add
    assert cnitool.delete(conf["name"], ctr).rc == 0  # DEL needs no result: it still cleans up
    assert lab.leases(tmp_path / "ipam", conf["name"]) == [] and lab.bridge_ports(host_ns, "cnte0") == []
