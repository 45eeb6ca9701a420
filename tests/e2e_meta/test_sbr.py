"""sbr chained after bridge through libcni, ours beside Go's v1.1.1: the same rules and tables after ADD, traffic
from the container's address through its table, CHECK of the whole chain (Go's bridge CHECK fails after Go's
sbr: `Failed to find Gateway`), DEL leaves no rule, and a DEL at a vanished netns path creates no file there."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from plugins.multicall import PLUGINS
from tests.helpers import net
from tests.helpers.netns import Netns


def _chain(name: str, bridge: str, data_dir: Path, *, sbr: dict[str, Any] | None = None,
           version: str = "1.0.0") -> dict[str, Any]:
    ipam = {"type": "host-local", "dataDir": str(data_dir), "ranges": [[{"subnet": "10.63.0.0/24"}]],
            "routes": [{"dst": "0.0.0.0/0"}]}
    return {"cniVersion": version, "name": name, "plugins": [
        {"type": "bridge", "bridge": bridge, "isGateway": True, "ipam": ipam},
        {"type": "sbr", **(sbr or {})},
    ]}


def _rules(ns: Netns) -> list[tuple[Any, ...]]:
    out = ns.run(["ip", "-j", "rule", "show"]).stdout
    return [(r["priority"], r.get("src"), r["table"]) for r in json.loads(out)]


def _table(ns: Netns, table: str) -> list[tuple[Any, ...]]:
    return sorted((r["dst"], r.get("gateway"), r.get("dev"), r.get("prefsrc")) for r in net.routes(ns, table=table))


def test_same_rules_and_tables_as_go_then_check_and_del(cnitool, go_cnitool, host_ns, make_container_ns,
                                                        tmp_path: Path):
    facts, checks = {}, {}
    for label, tool in (("ours", cnitool), ("go", go_cnitool)):
        name = f"cntsbr-{label}"
        tool.write_conflist(_chain(name, f"cntbr{label}", tmp_path / label))
        ctr = make_container_ns(lo_up=True)
        add = tool.add(name, ctr)
        assert add.rc == 0, (label, add)
        facts[label] = {"rules": _rules(ctr), "main": _table(ctr, "main"), "t100": _table(ctr, "100")}
        check = tool.check(name, ctr)
        checks[label] = (check.rc, check.out if check.rc else "")
        assert tool.delete(name, ctr).rc == 0, label
        assert [r for r in _rules(ctr) if r[2] not in ("local", "main", "default")] == []
        host_ns.ip("link", "del", f"cntbr{label}")
    assert facts["ours"] == facts["go"]
    assert facts["ours"]["main"] == []
    assert (32765, "10.63.0.2", "100") in facts["ours"]["rules"]
    assert ("default", "10.63.0.1", "eth0", None) in facts["ours"]["t100"]
    assert checks["ours"] == (0, "")
    assert checks["go"][0] == 1 and "Failed to find Gateway" in checks["go"][1]["msg"]


def test_traffic_from_the_address_uses_its_table(cnitool, host_ns, make_container_ns, tmp_path: Path):
    cnitool.write_conflist(_chain("cntsbr", "cntbrs", tmp_path))
    ctr = make_container_ns(lo_up=True)
    assert cnitool.add("cntsbr", ctr).rc == 0
    assert not net.ping(ctr, "10.63.0.1"), "main is empty: no source address can be picked"
    sourced = ctr.run(["ping", "-c1", "-W1", "-I", "10.63.0.2", "10.63.0.1"], check=False)
    assert sourced.returncode == 0, "from the container's address, through table 100, the gateway answers"
    assert cnitool.delete("cntsbr", ctr).rc == 0


def test_given_table_adds_only_the_rule(cnitool, host_ns, make_container_ns, tmp_path: Path):
    cnitool.write_conflist(_chain("cntsbr", "cntbrs", tmp_path, sbr={"table": 4321}))
    ctr = make_container_ns(lo_up=True)
    add = cnitool.add("cntsbr", ctr)
    assert add.rc == 0, add
    assert (32765, "10.63.0.2", "4321") in _rules(ctr)
    assert ("default", "10.63.0.1", "eth0", None) in _table(ctr, "main"), "routes untouched with a table"
    assert cnitool.check("cntsbr", ctr).rc == 0
    assert cnitool.delete("cntsbr", ctr).rc == 0
    assert all(r[2] != "4321" for r in _rules(ctr))


def test_del_of_a_vanished_netns_creates_no_file(cnitool, go_cnitool, host_ns, netns_pool, tmp_path: Path):
    """Go's sbr DEL creates an empty file at the gone path, then fails on it (`unknown FS magic`)."""
    outcomes = {}
    for label, tool in (("ours", cnitool), ("go", go_cnitool)):
        tool.write_conflist(_chain("cntsbr", f"cntbr{label}", tmp_path / label))
        ctr = netns_pool.create("ctr", lo_up=True)
        path = ctr.path
        assert tool.add("cntsbr", ctr).rc == 0
        netns_pool.remove(ctr)
        outcomes[label] = (tool.delete("cntsbr", path).rc, os.path.exists(path))
        if os.path.exists(path):
            os.unlink(path)
    assert outcomes == {"ours": (0, False), "go": (1, True)}


def test_rules_of_an_interface_deleted_first_do_not_leak(cnitool, host_ns, make_container_ns, tmp_path: Path):
    """The main plugin's link went before sbr's DEL (a runtime that tore it down): the rule from the previous
    result's address goes all the same (upstream matches current addresses only, and leaks it)."""
    cnitool.write_conflist(_chain("cntsbr", "cntbrs", tmp_path))
    ctr = make_container_ns(lo_up=True)
    assert cnitool.add("cntsbr", ctr).rc == 0
    ctr.ip("link", "del", "eth0")
    assert cnitool.delete("cntsbr", ctr).rc == 0
    assert [r for r in _rules(ctr) if r[2] not in ("local", "main", "default")] == []


#: The main plugins sbr is chained after here: bridge, and ptp once the suite ships it (a parameter, not a skip:
#: the table of types says which exist).
MAIN_PLUGINS = [p for p in ("bridge", "ptp") if p in PLUGINS]


@pytest.mark.parametrize("main", MAIN_PLUGINS)
def test_check_of_the_chain_passes_after_sbr_where_gos_fails(main, cnitool, go_cnitool, host_ns, make_container_ns,
                                                            tmp_path: Path):
    """Go's main plugin looks for the routes sbr moved in the main table (`Failed to find Gateway`); ours finds
    them in the table the source rule names."""
    outcomes = {}
    for label, tool in (("ours", cnitool), ("go", go_cnitool)):
        conf = _chain(f"cntsbr-{label}", f"cntbc{label}", tmp_path / label)
        if main == "ptp":
            conf["plugins"][0] = {"type": "ptp", "ipam": conf["plugins"][0]["ipam"]}
        tool.write_conflist(conf)
        ctr = make_container_ns(lo_up=True)
        assert tool.add(conf["name"], ctr).rc == 0, label
        check = tool.check(conf["name"], ctr)
        outcomes[label] = check.rc
        if label == "go":
            assert "Failed to find Gateway" in json.dumps(check.out), check
        assert tool.delete(conf["name"], ctr).rc == 0, label
    assert outcomes == {"ours": 0, "go": 1}


def test_failed_add_leaves_the_container_as_it_was(plugin_dir, host_ns, make_container_ns):
    """The gateway cannot be a next hop (not on the link): the default route of table 100 is refused; the rule
    already added goes again and main keeps its routes (upstream leaves the rule and a half-filled table)."""
    from tests.helpers.plugin import run_plugin

    ctr = make_container_ns(lo_up=True)
    host_ns.ip("link", "add", "cntsb0", "type", "veth", "peer", "name", "eth0", "netns", ctr.name)
    host_ns.ip("link", "set", "cntsb0", "up")
    ctr.ip("addr", "add", "10.63.0.2/24", "dev", "eth0")
    ctr.ip("link", "set", "eth0", "up")
    ctr.ip("route", "add", "default", "via", "10.63.0.1")
    before = (_rules(ctr), _table(ctr, "main"))
    prev = {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "sandbox": ctr.path}],
            "ips": [{"address": "10.63.0.2/24", "gateway": "10.9.9.9", "interface": 0}]}
    conf = {"cniVersion": "1.0.0", "name": "cntsbr", "type": "sbr", "prevResult": prev}
    done = run_plugin(plugin_dir / "sbr", "ADD", conf, netns=ctr.path, in_netns=host_ns)
    assert done.rc == 1 and "10.9.9.9" in json.dumps(done.out), done
    assert (_rules(ctr), _table(ctr, "main")) == before
    assert _table(ctr, "100") == []


def test_dual_stack_matches_go(cnitool, go_cnitool, host_ns, make_container_ns, tmp_path: Path):
    """An IPv4 and an IPv6 address: a table each (100, 101), the same rules and routes as Go's."""
    facts = {}
    for label, tool in (("ours", cnitool), ("go", go_cnitool)):
        conf = _chain(f"cntsbr6-{label}", f"cntb6{label}", tmp_path / label)
        conf["plugins"][0]["ipam"]["ranges"].append([{"subnet": "fd63::/64"}])
        conf["plugins"][0]["ipam"]["routes"].append({"dst": "::/0"})
        tool.write_conflist(conf)
        ctr = make_container_ns(lo_up=True)
        assert tool.add(conf["name"], ctr).rc == 0, label
        rules6 = json.loads(ctr.run(["ip", "-j", "-6", "rule", "show"]).stdout)
        facts[label] = {
            "rules": _rules(ctr), "rules6": [(r["priority"], r.get("src"), r["table"]) for r in rules6],
            "t100": _table(ctr, "100"),
            "t101": sorted((r["dst"], r.get("gateway"), r.get("dev"))
                           for r in net.routes(ctr, family=6, table="101")),
            "main6": [r["dst"] for r in net.routes(ctr, family=6) if r.get("dev") == "eth0"]}
        assert tool.delete(conf["name"], ctr).rc == 0, label
        host_ns.ip("link", "del", f"cntb6{label}")
    assert facts["ours"] == facts["go"]
    assert (32765, "fd63::2", "101") in facts["ours"]["rules6"]
    assert ("default", "fd63::1", "eth0") in facts["ours"]["t101"]
