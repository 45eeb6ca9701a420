"""conf-examples/50-firewall-tuning.conflist and 51-firewall-nftables-isolated.conflist through libcni, used as
they are except for the data dirs (host-local's and tuning's move under the test's tmp_path): the container
gets its address, the tuned link and the firewall's rules, reaches its gateway, and DEL leaves none of it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers.paths import REPO

EXAMPLES = ["50-firewall-tuning.conflist", "51-firewall-nftables-isolated.conflist"]


@pytest.mark.parametrize("name", EXAMPLES)
def test_example(name, make_cnitool, plugin_dir, host_ns, make_container_ns, tmp_path: Path):
    conf = json.loads((REPO / "conf-examples" / name).read_text())
    bridge = conf["plugins"][0]
    bridge["bridge"] = "cntex" + name[:2]
    bridge["ipam"]["dataDir"] = str(tmp_path / "ipam")
    tuning = next(p for p in conf["plugins"] if p["type"] == "tuning")
    tuning["dataDir"] = str(tmp_path / "tuning")
    tool = make_cnitool(plugin_dir)
    tool.write_conflist(conf)
    ctr = make_container_ns(lo_up=True)
    added = tool.add(conf["name"], ctr, container_id="cnt-example", cap_args={"mac": "0a:58:0a:59:00:42"})
    assert added.rc == 0, added.out
    ip = added.out["ips"][0]["address"].split("/")[0]
    gateway = added.out["ips"][0]["gateway"]
    assert ctr.run(["ping", "-c", "1", "-W", "2", gateway], check=False).returncode == 0
    link = json.loads(ctr.run(["ip", "-j", "-d", "link", "show", "eth0"]).stdout)[0]
    rules = host_ns.run(["iptables-save", "-t", "filter"]).stdout + host_ns.run(["nft", "list", "ruleset"]).stdout
    assert ip in rules
    if "mtu" in tuning:
        assert link["mtu"] == tuning["mtu"] and link["address"] == "0a:58:0a:59:00:42"
    else:
        assert "ALLMULTI" in link["flags"] and link["txqlen"] == tuning["txQLen"]
    assert tool.check(conf["name"], ctr, container_id="cnt-example").rc == 0
    assert tool.delete(conf["name"], ctr, container_id="cnt-example").rc == 0
    rules = host_ns.run(["iptables-save"]).stdout + host_ns.run(["nft", "list", "ruleset"]).stdout
    assert ip not in rules and not any((tmp_path / "tuning").glob("*.json"))
