"""`cni-suite inspect` on a node with ptp pods: each pod's host end is shown as its attachment (with the gateway it
holds), not as an uplink of the node, and nothing is reported orphaned."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from tests.helpers.cnitool import Cnitool
from tests.helpers.netns import Netns
from tests.netns.test_inspect import inspect

NET = "cntinsp"


def test_inspect_shows_ptp_links(host_ns: Netns, make_container_ns: Callable[..., Netns],
                                 make_cnitool: Callable[..., Cnitool], plugin_dir: Path, tmp_path: Path) -> None:
    tool = make_cnitool(plugin_dir)
    tool.write_conflist({"cniVersion": "1.0.0", "name": NET, "plugins": [
        {"type": "ptp", "ipMasq": True, "ipam": {"type": "host-local", "dataDir": str(tmp_path / "ipam"),
                                                 "ranges": [[{"subnet": "10.68.0.0/24"}]]}}]})
    results = {}
    for cid in ("c-ptp1", "c-ptp2"):
        added = tool.add(NET, make_container_ns(), container_id=cid)
        assert added.rc == 0, added
        results[cid] = added.out

    node = json.loads(inspect(host_ns, tmp_path, tool, "--format", "json").stdout)
    assert node["links"] == [] and node["bridges"] == []
    assert not any(node["orphans"].values()), node["orphans"]
    seen = {}
    for ctr in node["containers"]:
        (iface,) = ctr["interfaces"]
        seen[ctr["container_id"]] = (iface["host_veth"], iface["bridge"], iface["host_addresses"], iface["addresses"],
                                     iface["network"])
    assert seen == {cid: (res["interfaces"][0]["name"], None, ["10.68.0.1/32"], [res["ips"][0]["address"]], NET)
                    for cid, res in results.items()}
    assert sorted(m["container_id"] for m in node["masquerade"]) == ["c-ptp1", "c-ptp2"]
    text = inspect(host_ns, tmp_path, tool).stdout
    assert "routed veths, no bridge (ptp)" in text
    assert f"{results['c-ptp1']['interfaces'][0]['name']} (10.68.0.1/32) <-> eth0" in text
