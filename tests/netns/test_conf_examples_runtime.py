"""The ptp and loopback configs of conf-examples/ through libcni, as they are (host-local's leases moved under
the test's tmp_path): two containers reach the node and each other, DEL leaves nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.helpers import net
from tests.helpers.paths import REPO

EXAMPLES = REPO / "conf-examples"


def load(name: str, data_dir: Path) -> dict[str, Any]:
    conf = json.loads((EXAMPLES / name).read_text())
    for plugin in conf["plugins"]:
        if plugin.get("ipam", {}).get("type") == "host-local":
            plugin["ipam"]["dataDir"] = str(data_dir)
    assert conf["cniVersion"] == "1.0.0"  # containerd 1.6 (libcni 1.1) cannot read 1.1.0 results
    return conf


def node_leftovers(host) -> list[str]:
    rules = host.run(["iptables-save", "-t", "nat"]).stdout + host.run(["ip6tables-save", "-t", "nat"]).stdout
    nft = host.run(["nft", "list", "ruleset"]).stdout
    return ([link["ifname"] for link in net.links(host) if link["ifname"].startswith("veth")]
            + [line for line in rules.splitlines() if "CNI-" in line]
            + [line for line in nft.splitlines() if "masquerade" in line and "comment" in line])


def run_pair(cnitool, host, ctrs, conf: dict[str, Any], cap_args: list[Any]) -> list[dict[str, Any]]:
    cnitool.write_conflist(conf)
    results = []
    for ctr, cap in zip(ctrs, cap_args, strict=True):
        add = cnitool.add(conf["name"], ctr, cap_args=cap)
        assert add.rc == 0, add
        results.append(add.out)
    for ip in results[0]["ips"]:
        assert net.ping(ctrs[0], ip["gateway"]), ip  # the node, on the host end of the pair
    for ip in results[1]["ips"]:
        assert net.ping(ctrs[0], ip["address"].split("/")[0]), ip  # the other container, through the node
    for ctr, cap in zip(ctrs, cap_args, strict=True):
        assert cnitool.check(conf["name"], ctr, cap_args=cap).rc == 0
        assert cnitool.delete(conf["name"], ctr, cap_args=cap).rc == 0
    assert node_leftovers(host) == []
    return results


def test_ptp_example(cnitool, host_ns, make_container_ns, tmp_path: Path):
    conf = load("20-ptp.conflist", tmp_path / "ipam")
    results = run_pair(cnitool, host_ns, [make_container_ns(), make_container_ns()], conf, [None, None])
    assert [r["ips"][0]["gateway"] for r in results] == ["10.23.0.1", "10.23.0.1"]
    assert not any(p.name[0].isdigit() for p in (tmp_path / "ipam" / conf["name"]).iterdir())


def test_ptp_static_dual_stack_example(cnitool, host_ns, make_container_ns):
    """The first container takes the configured addresses, the second the runtime's (capability ``ips``), which
    keep the configured gateways of their subnets."""
    conf = load("21-ptp-static-dual-stack.conflist", None)  # type: ignore[arg-type]
    results = run_pair(cnitool, host_ns, [make_container_ns(), make_container_ns()], conf,
                       [None, {"ips": ["10.24.0.11/24", "fd24::11/64"]}])
    assert [(ip["address"], ip["gateway"]) for ip in results[1]["ips"]] == [("10.24.0.11/24", "10.24.0.1"),
                                                                             ("fd24::11/64", "fd24::1")]


def test_loopback_example(cnitool, make_container_ns):
    conf = load("90-loopback.conflist", None)  # type: ignore[arg-type]
    cnitool.write_conflist(conf)
    ctr = make_container_ns()
    assert cnitool.add("lo", ctr).rc == 0 and "UP" in net.link(ctr, "lo")["flags"]
    assert cnitool.check("lo", ctr).rc == 0
    assert cnitool.delete("lo", ctr).rc == 0 and "UP" not in net.link(ctr, "lo")["flags"]
