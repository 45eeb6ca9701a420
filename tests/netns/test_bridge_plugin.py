"""The bridge plugin end to end: exec'd inside a "host" namespace, attaching "container" namespaces.

Namespaces are named ``cnt-l<run>-*``. IPAM is the Go ``host-local`` for spec versions it knows (<= 1.0.0)
and our own for 1.1.0; a tiny recording IPAM script covers STATUS/GC forwarding and IPAM failures.
"""

from __future__ import annotations

import concurrent.futures
import json
import stat
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

from tests.helpers.net import ping
from tests.helpers.netns import Netns, NetnsPool
from tests.helpers.plugin import PluginResult, run_plugin

REPO = Path(__file__).resolve().parents[2]
GO_HOST_LOCAL = Path("/usr/lib/cni/host-local")
VERSIONS = ["0.3.1", "0.4.0", "1.0.0", "1.1.0"]


def _script(path: Path, body: str) -> Path:
    path.write_text(body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


@pytest.fixture
def host(pool: NetnsPool) -> Netns:
    return pool.create("host", lo_up=True)


@pytest.fixture
def make_ctr(pool: NetnsPool) -> Callable[[], Netns]:
    return lambda: pool.create("ctr")


@pytest.fixture
def cni_bin(tmp_path: Path) -> Path:
    """A CNI_PATH dir: our bridge and host-local as Python launchers through the program's dispatcher (as the
    built file runs them: it registers the in-process IPAM answers), Go's host-local as `go-host-local`."""
    d = tmp_path / "bin"
    d.mkdir()
    for name in ("bridge", "host-local"):
        _script(d / name, f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(REPO)!r})\n"
                          f"from plugins.multicall import main\nsys.exit(main(sys.argv))\n")
    if GO_HOST_LOCAL.exists():
        (d / "go-host-local").symlink_to(GO_HOST_LOCAL)
    _script(d / "recorder", "#!/bin/sh\n"
                            'echo "$CNI_COMMAND" >> "$(dirname "$0")/recorder.log"\n'
                            'if [ "$CNI_COMMAND" = STATUS ]; then\n'
                            '  echo \'{"cniVersion":"1.1.0","code":50,"msg":"pool exhausted"}\'; exit 1\n'
                            "fi\n"
                            'if [ "$CNI_COMMAND" = ADD ]; then echo \'{"cniVersion":"1.1.0","ips":[]}\'; fi\n')
    return d


def conf(tmp_path: Path, version: str = "1.0.0", **extra: Any) -> dict[str, Any]:
    ipam_type = "host-local" if version == "1.1.0" or not GO_HOST_LOCAL.exists() else "go-host-local"
    base: dict[str, Any] = {
        "cniVersion": version, "name": "cntnet", "type": "bridge", "bridge": "cntbr0",
        "isDefaultGateway": True, "ipMasq": True, "mtu": 1400, "hairpinMode": True,
        "ipam": {"type": ipam_type, "dataDir": str(tmp_path / "ipam"),
                 "ranges": [[{"subnet": "10.88.0.0/24"}], [{"subnet": "fd88::/64"}]]},
    }
    base.update(extra)
    return base


def bridge(cni_bin: Path, host: Netns, cmd: str, cfg: dict[str, Any], ctr: Netns | str = "",
           **kw: Any) -> PluginResult:
    return run_plugin(cni_bin / "bridge", cmd, cfg, netns=ctr, in_netns=host, cni_path=cni_bin, **kw)


def ipj(ns: Netns, *args: str) -> Any:
    return json.loads(ns.ip("-j", *args).stdout or "[]")


def leases(tmp_path: Path) -> list[str]:
    d = tmp_path / "ipam" / "cntnet"
    if not d.exists():
        return []
    return sorted(p.name for p in d.iterdir() if not p.name.startswith(("last_reserved", "lock", ".")))


def masq_rules(host: Netns) -> list[str]:
    out = host.run(["iptables", "-t", "nat", "-S"], check=False).stdout
    return [line for line in out.splitlines() if "cntnet" in line]


@pytest.mark.parametrize("version", VERSIONS)
def test_add_check_del_round_trip(version, tmp_path, host, make_ctr, cni_bin):
    ctr = make_ctr()
    cfg = conf(tmp_path, version)
    add = bridge(cni_bin, host, "ADD", cfg, ctr)
    assert add.rc == 0, add
    res = add.out
    names = [i["name"] for i in res["interfaces"]]
    assert names[0] == "cntbr0" and names[1].startswith("veth") and names[2] == "eth0"
    assert res["interfaces"][2]["sandbox"] == ctr.path
    assert [(ip["address"], ip.get("gateway"), ip["interface"]) for ip in res["ips"]] == [
        ("10.88.0.2/24", "10.88.0.1", 2), ("fd88::2/64", "fd88::1", 2)]
    assert {(r["dst"], r["gw"]) for r in res["routes"]} == {("0.0.0.0/0", "10.88.0.1"), ("::/0", "fd88::1")}
    (veth,) = ipj(host, "-d", "link", "show", "dev", names[1])
    assert veth["master"] == "cntbr0" and veth["mtu"] == 1400
    assert veth["linkinfo"]["info_slave_data"]["hairpin"] is True
    br_addrs = {a["local"] for a in ipj(host, "addr", "show", "dev", "cntbr0")[0]["addr_info"]}
    assert br_addrs >= {"10.88.0.1", "fd88::1"}
    (eth0,) = ipj(ctr, "addr", "show", "dev", "eth0")
    assert eth0["address"] == res["interfaces"][2]["mac"] and eth0["mtu"] == 1400
    assert ctr.run(["cat", "/proc/sys/net/ipv6/conf/eth0/accept_dad"]).stdout.strip() == "0"
    assert host.run(["cat", "/proc/sys/net/ipv4/ip_forward"]).stdout.strip() == "1"
    assert ping(host, "10.88.0.2")
    assert len(masq_rules(host)) == 3
    if version != "0.3.1":
        chk = bridge(cni_bin, host, "CHECK", {**cfg, "prevResult": res}, ctr)
        assert chk.rc == 0 and chk.out == "", chk
    dele = bridge(cni_bin, host, "DEL", cfg, ctr)
    assert dele.rc == 0, dele
    assert ctr.ip("link", "show", "eth0", check=False).returncode != 0
    assert leases(tmp_path) == [] and masq_rules(host) == []
    assert bridge(cni_bin, host, "DEL", cfg, ctr).rc == 0


def test_check_detects_a_missing_address(tmp_path, host, make_ctr, cni_bin):
    ctr = make_ctr()
    cfg = conf(tmp_path)
    res = bridge(cni_bin, host, "ADD", cfg, ctr).out
    ctr.ip("addr", "del", "10.88.0.2/24", "dev", "eth0")
    chk = bridge(cni_bin, host, "CHECK", {**cfg, "prevResult": res}, ctr)
    assert chk.rc == 1 and "10.88.0.2/24" in chk.out["msg"]
    assert bridge(cni_bin, host, "CHECK", cfg, ctr).out["msg"] == "Required prevResult missing"


def test_mac_precedence_cni_args_then_args_then_runtime_config(tmp_path, host, make_ctr, cni_bin):
    macs = {"cni": "0a:58:00:00:00:01", "args": "0a:58:00:00:00:02", "rc": "0a:58:00:00:00:03"}
    cases = [({}, macs["cni"]), ({"args": {"cni": {"mac": macs["args"]}}}, macs["args"]),
             ({"args": {"cni": {"mac": macs["args"]}}, "runtimeConfig": {"mac": macs["rc"]}}, macs["rc"])]
    for n, (extra, want) in enumerate(cases):
        ctr = make_ctr()
        add = bridge(cni_bin, host, "ADD", conf(tmp_path, **extra), ctr, container_id=f"cid{n}",
                     cni_args=f"IgnoreUnknown=1;K8S_POD_NAME=x;MAC={macs['cni']}")
        assert add.rc == 0, add
        assert add.out["interfaces"][2]["mac"] == want
        assert ipj(ctr, "link", "show", "dev", "eth0")[0]["address"] == want


def test_failed_add_undoes_veth_lease_and_rules(tmp_path, host, make_ctr, cni_bin):
    host.ip("link", "add", "cntbr0", "type", "bridge")
    host.ip("addr", "add", "10.66.0.1/24", "dev", "cntbr0")  # a different gateway: fails after IPAM ADD
    ctr = make_ctr()
    add = bridge(cni_bin, host, "ADD", conf(tmp_path), ctr)
    assert add.rc == 1 and "already has an IP address different from 10.88.0.1/24" in add.out["msg"], add
    assert [link["ifname"] for link in ipj(ctr, "link", "show")] == ["lo"]
    assert [link["ifname"] for link in ipj(host, "link", "show")] == ["lo", "cntbr0"]
    assert leases(tmp_path) == [] and masq_rules(host) == []


def test_force_address_replaces_the_bridge_ipv4(tmp_path, host, make_ctr, cni_bin):
    host.ip("link", "add", "cntbr0", "type", "bridge")
    host.ip("addr", "add", "10.66.0.1/24", "dev", "cntbr0")
    add = bridge(cni_bin, host, "ADD", conf(tmp_path, forceAddress=True), make_ctr())
    assert add.rc == 0, add
    v4 = [a["local"] for a in ipj(host, "-4", "addr", "show", "dev", "cntbr0")[0]["addr_info"]]
    assert v4 == ["10.88.0.1"]


def test_del_with_gone_or_empty_netns_releases_ipam_and_masquerade(tmp_path, host, pool, make_ctr, cni_bin):
    cfg = conf(tmp_path)
    ctr = make_ctr()
    assert bridge(cni_bin, host, "ADD", cfg, ctr).rc == 0
    pool.remove(ctr)
    assert bridge(cni_bin, host, "DEL", cfg, ctr.path).rc == 0
    assert leases(tmp_path) == [] and masq_rules(host) == []
    ctr2 = make_ctr()
    assert bridge(cni_bin, host, "ADD", cfg, ctr2, container_id="cid2").rc == 0
    assert bridge(cni_bin, host, "DEL", cfg, "", container_id="cid2").rc == 0
    assert leases(tmp_path) == [] and masq_rules(host) == []


def test_first_pods_racing_all_succeed(tmp_path, host, make_ctr, cni_bin):
    cfg = conf(tmp_path)
    ctrs = [make_ctr() for _ in range(4)]
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        results = list(ex.map(lambda i: bridge(cni_bin, host, "ADD", cfg, ctrs[i], container_id=f"race{i}"),
                              range(4)))
    assert [r.rc for r in results] == [0, 0, 0, 0], results
    v4 = [a["local"] for a in ipj(host, "-4", "addr", "show", "dev", "cntbr0")[0]["addr_info"]]
    assert v4 == ["10.88.0.1"]
    assert len({r.out["ips"][0]["address"] for r in results}) == 4


def test_existing_container_ifname_is_an_error(tmp_path, host, make_ctr, cni_bin):
    ctr = make_ctr()
    ctr.ip("link", "add", "eth0", "type", "bridge")
    add = bridge(cni_bin, host, "ADD", conf(tmp_path), ctr)
    assert add.rc == 1 and "'eth0' already exists" in add.out["msg"]
    assert leases(tmp_path) == []
    assert not [link for link in ipj(host, "link", "show") if link["ifname"].startswith("veth")]


def test_mtu_applies_to_an_existing_bridge(tmp_path, host, make_ctr, cni_bin):
    host.ip("link", "add", "cntbr0", "mtu", "1500", "type", "bridge")
    add = bridge(cni_bin, host, "ADD", conf(tmp_path, mtu=1300), make_ctr())
    assert add.rc == 0, add
    assert ipj(host, "link", "show", "dev", "cntbr0")[0]["mtu"] == 1300


def test_existing_non_bridge_is_an_error(tmp_path, host, make_ctr, cni_bin):
    host.ip("link", "add", "cntbr0", "type", "veth", "peer", "name", "cntbr0p")
    add = bridge(cni_bin, host, "ADD", conf(tmp_path), make_ctr())
    assert add.rc == 1 and add.out["msg"] == "'cntbr0' already exists but is not a bridge"


def test_layer2_only(tmp_path, host, make_ctr, cni_bin):
    ctr = make_ctr()
    cfg = {"cniVersion": "1.0.0", "name": "cntnet", "type": "bridge", "bridge": "cntbr0", "ipam": {}}
    add = bridge(cni_bin, host, "ADD", cfg, ctr)
    assert add.rc == 0, add
    assert add.out.get("ips", []) == [] and len(add.out["interfaces"]) == 3
    assert "UP" in ipj(ctr, "link", "show", "dev", "eth0")[0]["flags"]
    assert bridge(cni_bin, host, "DEL", cfg, ctr).rc == 0


def test_layer2_gateway_bridge_keeps_its_mac_when_a_lower_port_joins(tmp_path, host, make_ctr, cni_bin):
    """isGateway without IPAM puts no address on the bridge, yet its MAC (reported, and verified by CHECK) is
    pinned all the same."""
    ctr = make_ctr()
    cfg = {"cniVersion": "1.0.0", "name": "cntnet", "type": "bridge", "bridge": "cntbr0", "isGateway": True}
    add = bridge(cni_bin, host, "ADD", cfg, ctr)
    assert add.rc == 0, add
    host.ip("link", "add", "cntlow", "address", "02:00:00:00:00:01", "type", "veth", "peer", "name", "cntlowp")
    host.ip("link", "set", "cntlow", "master", "cntbr0")
    assert bridge(cni_bin, host, "CHECK", {**cfg, "prevResult": add.out}, ctr).rc == 0


def test_status_and_gc_are_forwarded_to_ipam(tmp_path, host, cni_bin):
    cfg = {"cniVersion": "1.1.0", "name": "cntnet", "type": "bridge", "bridge": "cntbr0",
           "ipam": {"type": "recorder"}}
    status = bridge(cni_bin, host, "STATUS", cfg)
    assert status.rc == 1 and status.out["code"] == 50
    gc = bridge(cni_bin, host, "GC", {**cfg, "cni.dev/valid-attachments": []})
    assert gc.rc == 0, gc
    assert (cni_bin / "recorder.log").read_text().split() == ["STATUS", "GC"]


def test_ipam_without_ips_fails_and_is_released(tmp_path, host, make_ctr, cni_bin):
    cfg = {"cniVersion": "1.1.0", "name": "cntnet", "type": "bridge", "bridge": "cntbr0",
           "ipam": {"type": "recorder"}}
    ctr = make_ctr()
    add = bridge(cni_bin, host, "ADD", cfg, ctr)
    assert add.rc == 1 and add.out["code"] == 7, add
    assert add.out["msg"] == "IPAM plugin 'recorder' returned no IP addresses for 'eth0'"
    assert (cni_bin / "recorder.log").read_text().split() == ["ADD", "DEL"]
    assert [link["ifname"] for link in ipj(ctr, "link", "show")] == ["lo"]


def test_gc_removes_masquerade_of_stale_attachments(tmp_path, host, make_ctr, cni_bin):
    cfg = conf(tmp_path, "1.1.0")
    for cid in ("keep", "stale"):
        assert bridge(cni_bin, host, "ADD", cfg, make_ctr(), container_id=cid).rc == 0
    gc = bridge(cni_bin, host, "GC", {**cfg, "cni.dev/valid-attachments": [{"containerID": "keep", "ifname": "eth0"}]})
    assert gc.rc == 0, gc
    rules = masq_rules(host)
    assert rules and all('id: \\"keep\\"' in r for r in rules)


def test_port_isolation_and_macspoofchk(tmp_path, host, make_ctr, cni_bin):
    ctr = make_ctr()
    cfg = {"cniVersion": "1.0.0", "name": "cntnet", "type": "bridge", "bridge": "cntbr0", "ipam": {},
           "portIsolation": True, "macspoofchk": True}
    add = bridge(cni_bin, host, "ADD", cfg, ctr, container_id="spoof1")
    assert add.rc == 0, add
    host_if = add.out["interfaces"][1]["name"]
    (veth,) = ipj(host, "-d", "link", "show", "dev", host_if)
    assert veth["linkinfo"]["info_slave_data"]["isolated"] is True
    ruleset = host.run(["nft", "list", "table", "bridge", "nat"]).stdout
    assert host_if in ruleset and add.out["interfaces"][2]["mac"] in ruleset
    assert bridge(cni_bin, host, "DEL", cfg, ctr, container_id="spoof1").rc == 0
    assert "macspoofchk-spoof1" not in host.run(["nft", "list", "ruleset"]).stdout
