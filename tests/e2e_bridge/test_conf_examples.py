"""Every bridge config in conf-examples/ (but the portmap chains, tested in tests/e2e_portmap, and the VLAN ones,
tested in the kernel lane: tests/kernel_lane/test_bridge_vlan.py) through libcni.

Each file is used as it is, except that host-local keeps its leases under the test's tmp_path instead of
/var/lib/cni/networks (the containerd test uses 10-bridge.conflist with no change at all).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e_bridge import lab
from tests.helpers import net
from tests.helpers.paths import REPO

EXAMPLES = sorted(p for p in (REPO / "conf-examples").glob("*bridge*.conflist") if not p.name.startswith("30-")
                  and not p.name.startswith("31-"))
#: Examples that need bridge VLAN filtering, which this machine's kernel lacks: run in the kernel lane.
VLAN_EXAMPLES = [p for p in EXAMPLES if any(pl.get("vlan") or pl.get("vlanTrunk")
                                            for pl in json.loads(p.read_text())["plugins"])]


def load_example(path: Path, data_dir: Path) -> dict[str, Any]:
    """The conflist of `path`, with host-local's dataDir moved to `data_dir`."""
    conf = json.loads(path.read_text())
    for plugin in conf["plugins"]:
        if plugin.get("ipam", {}).get("type") == "host-local":
            plugin["ipam"]["dataDir"] = str(data_dir)
    return conf


def test_examples_cover_the_advertised_kinds():
    kinds = {p.name: json.loads(p.read_text())["plugins"][0] for p in EXAMPLES}
    assert any(len(c["ipam"].get("ranges", [])) == 1 for c in kinds.values())  # IPv4
    assert any(len(c["ipam"].get("ranges", [])) == 2 for c in kinds.values())  # dual-stack
    assert any(c.get("vlan") for c in kinds.values())
    assert any(c.get("ipMasqBackend") == "nftables" for c in kinds.values())
    # containerd 1.6 (libcni 1.1) cannot read 1.1.0 results: examples must stay usable there.
    assert {json.loads(p.read_text())["cniVersion"] for p in EXAMPLES} == {"1.0.0"}


@pytest.mark.parametrize("path", [p for p in EXAMPLES if p not in VLAN_EXAMPLES], ids=lambda p: p.name)
def test_example_two_containers(path: Path, cnitool, host_ns, make_container_ns, tmp_path: Path):
    conf = load_example(path, tmp_path / "ipam")
    plugin = conf["plugins"][0]
    cnitool.write_conflist(conf)
    ctrs = [make_container_ns() for _ in range(2)]
    results = []
    for ctr in ctrs:
        add = cnitool.add(conf["name"], ctr)
        assert add.rc == 0, add
        results.append(add.out)
    bridge = plugin["bridge"]
    assert len({r["interfaces"][0]["mac"] for r in results}) == 1  # pinned: CHECK of the first pod still passes
    if plugin["ipam"]:
        ips = [lab.result_ips(r) for r in results]
        gateways = [ip["gateway"] for ip in results[0]["ips"]]
        if any(":" in gw for gw in gateways):
            lab.wait_dad(host_ns, bridge)
        for ctr in ctrs:
            assert all(net.ping(ctr, gw) for gw in gateways), (path.name, ctr.name)
        assert all(net.ping(ctrs[0], ip) for ip in ips[1])
        masq = lab.nft_masq_rules(host_ns) if plugin.get("ipMasqBackend") == "nftables" else \
            lab.ipt_masq_rules(host_ns, conf["name"])
        assert bool(masq) == bool(plugin.get("ipMasq"))
    else:  # L2 only: give the containers addresses by hand to see what the bridge lets through
        for n, ctr in enumerate(ctrs):
            ctr.ip("addr", "add", f"198.51.100.{n + 1}/24", "dev", "eth0")
        assert net.ping(ctrs[0], "198.51.100.2") != plugin.get("portIsolation", False)
    for ctr in ctrs:
        assert cnitool.check(conf["name"], ctr).rc == 0
        assert cnitool.delete(conf["name"], ctr).rc == 0
    assert lab.leases(tmp_path / "ipam", conf["name"]) == []
    assert lab.ipt_masq_rules(host_ns, conf["name"]) == [] and lab.nft_masq_rules(host_ns) == []
    assert lab.bridge_ports(host_ns, bridge) == [] or plugin.get("vlan")  # a vlan keeps its <br>.<vlan> port
