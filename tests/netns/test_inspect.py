"""`cni-suite inspect` against a node the plugins built through libcni: the JSON exactly, the SVG names every
container and address, the orphans appear once things are broken on purpose, and inspect changes nothing.

The node (a `host_ns`) has an uplink (a dummy holding 10.123.0.1), two bridge networks (iptables and nftables
backends, one port mapping each) and a vxlan network with static peers (device, FDB, neighbours, routes).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Callable

from tests.helpers.cnitool import Cnitool
from tests.helpers.netns import Netns
from tests.helpers.paths import REPO
from tests.helpers.vxlan_lab import eventually

IPT_NET, NFT_NET, VX_NET = "cntinsi", "cntinsn", "cntinsv"
UPLINK_IP = "10.123.0.1"
PEER_IP, PEER_SUBNET = "10.123.0.2", "10.244.2.0/24"


def conflists(data_dir: Path) -> list[dict[str, Any]]:
    def ipam(subnet: str) -> dict[str, Any]:
        return {"type": "host-local", "dataDir": str(data_dir), "ranges": [[{"subnet": subnet}]]}

    def bridge_net(name: str, bridge: str, subnet: str, backend: str) -> dict[str, Any]:
        return {"cniVersion": "1.0.0", "name": name, "plugins": [
            {"type": "bridge", "bridge": bridge, "isGateway": True, "ipMasq": True, "ipMasqBackend": backend,
             "ipam": ipam(subnet)},
            {"type": "portmap", "capabilities": {"portMappings": True}, "backend": backend}]}

    vxlan = {"cniVersion": "1.0.0", "name": VX_NET, "plugins": [
        {"type": "vxlan", "network": "10.244.0.0/16", "nodeName": "node1",
         "peers": [{"underlayIP": UPLINK_IP, "subnet": "10.244.1.0/24"},
                   {"underlayIP": PEER_IP, "subnet": PEER_SUBNET}],
         "ipam": {"type": "host-local", "dataDir": str(data_dir)}}]}
    return [bridge_net(IPT_NET, "cntinsi0", "10.66.0.0/24", "iptables"),
            bridge_net(NFT_NET, "cntinsn0", "10.67.0.0/24", "nftables"), vxlan]


def inspect(node: Netns, tmp: Path, tool: Cnitool, *extra: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "cni_common.inspect", "--netns", node.name, "--data-dir", str(tmp / "ipam"),
            "--cache-dir", str(tool.cache_dir), *extra]
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120, check=True)


def link(ns: Netns, name: str) -> dict[str, Any]:
    return json.loads(ns.ip("-j", "link", "show", name).stdout)[0]


def test_inspect_json_svg_and_orphans(host_ns: Netns, make_container_ns: Callable[..., Netns],
                                      make_cnitool: Callable[..., Cnitool], plugin_dir: Path,
                                      tmp_path: Path) -> None:
    host_ns.ip("link", "add", "cntup0", "type", "veth", "peer", "name", "cntup1")
    host_ns.ip("addr", "add", f"{UPLINK_IP}/24", "dev", "cntup0")
    host_ns.ip("link", "set", "cntup0", "up")
    tool = make_cnitool(plugin_dir)
    for conf in conflists(tmp_path / "ipam"):
        tool.write_conflist(conf)
    plan = [(IPT_NET, "c-ipt", {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}),
            (NFT_NET, "c-nft", {"hostPort": 9090, "containerPort": 90, "protocol": "udp"}),
            (VX_NET, "c-vx", None)]
    ctrs: dict[str, Netns] = {}
    results: dict[str, dict[str, Any]] = {}
    for net, cid, mapping in plan:
        ctrs[cid] = make_container_ns(lo_up=True)
        cap = {"portMappings": [mapping]} if mapping else None
        res = tool.add(net, ctrs[cid], container_id=cid, cap_args=cap)
        assert res.rc == 0, (res.out, res.stderr)
        results[cid] = res.out

    node = json.loads(inspect(host_ns, tmp_path, tool, "--format", "json").stdout)
    expected = expected_model(host_ns, ctrs, results, tmp_path, tool)
    for key in expected:
        assert node[key] == expected[key], key
    assert node["errors"] == []
    assert not any(node["orphans"].values())

    svg_file = tmp_path / "node.svg"
    inspect(host_ns, tmp_path, tool, "--format", "svg", "-o", str(svg_file))
    root = ET.parse(svg_file).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    texts = " ".join(t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text"))
    for cid, ns in ctrs.items():
        assert ns.name in texts and cid in texts
        assert results[cid]["ips"][0]["address"] in texts
    assert "peer 10.244.2.0/24" in texts and "port 8080/tcp -> 80" in texts

    # Break things: a container netns deleted without DEL (veth gone; reservation, rules, cache stay), and a
    # container whose namespace survives only through an open fd (its veth now leads nowhere we can find).
    # The vxlan container loses its /run/netns name but a process keeps it (as Docker's are): found via /proc.
    subprocess.run(["ip", "netns", "del", ctrs["c-ipt"].name], check=True)
    fd = os.open(ctrs["c-nft"].path, os.O_RDONLY)
    sleeper = ctrs["c-vx"].popen(["sleep", "300"])
    try:
        subprocess.run(["ip", "netns", "del", ctrs["c-nft"].name], check=True)
        assert eventually(lambda: os.stat(f"/proc/{sleeper.pid}/ns/net").st_ino != os.stat("/proc/self/ns/net").st_ino)
        subprocess.run(["ip", "netns", "del", ctrs["c-vx"].name], check=True)
        broken = json.loads(inspect(host_ns, tmp_path, tool, "--format", "json").stdout)
        text = inspect(host_ns, tmp_path, tool).stdout
    finally:
        os.close(fd)
        sleeper.kill()
        sleeper.wait()
    orphans = broken["orphans"]
    assert {(r["network"], r["ip"]) for r in orphans["reservations"]} == {(IPT_NET, "10.66.0.2"),
                                                                           (NFT_NET, "10.67.0.2")}
    assert [v["name"] for v in orphans["veths"]] == [results["c-nft"]["interfaces"][1]["name"]]
    assert sorted((r["kind"], r["backend"], r["container_id"]) for r in orphans["rules"]) == [
        ("masquerade", "iptables", "c-ipt"), ("masquerade", "nftables", "c-nft"),
        ("portmap", "iptables", "c-ipt"), ("portmap", "nftables", "c-nft")]
    assert sorted(c["container_id"] for c in orphans["cache"]) == ["c-ipt", "c-nft"]
    assert [(c["netns"], c["container_id"]) for c in broken["containers"]] == [(f"/proc/{sleeper.pid}/ns/net", "c-vx")]
    assert "reservation cntinsi/10.66.0.2 (c-ipt): no live container has this address" in text


def test_inspect_changes_nothing(host_ns: Netns, tmp_path: Path) -> None:
    """No file written, no rule or table added (not even iptables' nat table). (That no namespace is created
    follows from nsenter, which only enters; /run/netns is shared with other tests running at the same time.)"""
    tables_before = host_ns.run(["nft", "list", "tables"]).stdout
    out = subprocess.run([sys.executable, "-m", "cni_common.inspect", "--netns", host_ns.name, "--data-dir",
                          str(tmp_path / "none"), "--cache-dir", str(tmp_path / "none")],
                         cwd=REPO, capture_output=True, text=True, timeout=60, check=True).stdout
    assert "orphans:\n  (none)" in out
    assert host_ns.run(["nft", "list", "tables"]).stdout == tables_before
    assert list(tmp_path.iterdir()) == []


def test_inspect_is_off_the_plugin_path() -> None:
    code = ("import sys, plugins.bridge, plugins.portmap, plugins.vxlan, ipam.host_local, plugins.multicall; "
            "print(any(m.startswith('cni_common.inspect') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def expected_model(host: Netns, ctrs: dict[str, Netns], results: dict[str, dict[str, Any]], tmp: Path,
                   tool: Cnitool) -> dict[str, Any]:
    """What inspect must report, from what the plugins answered (MACs, veth names) and the plan above."""
    data_dir = str(tmp / "ipam")
    nets = {"c-ipt": (IPT_NET, "cntinsi0", "10.66.0"), "c-nft": (NFT_NET, "cntinsn0", "10.67.0"),
            "c-vx": (VX_NET, "cnivxbr1", "10.244.1")}
    ports = {"c-ipt": [{"protocol": "tcp", "host_ip": None, "host_port": 8080, "container_port": 80,
                        "backend": "iptables"}],
             "c-nft": [{"protocol": "udp", "host_ip": None, "host_port": 9090, "container_port": 90,
                        "backend": "nftables"}], "c-vx": []}
    containers, bridges = [], []
    for cid, (net, bridge, prefix) in nets.items():
        br, veth, eth0 = results[cid]["interfaces"]
        mtu = 1450 if cid == "c-vx" else 1500
        routes = [{"dst": "10.244.0.0/16", "gateway": f"{prefix}.1", "dev": "eth0"}] if cid == "c-vx" else []
        containers.append({
            "netns": ctrs[cid].name, "container_id": cid,
            "interfaces": [{"name": "eth0", "mac": eth0["mac"], "mtu": mtu, "addresses": [f"{prefix}.2/24"],
                            "network": net, "host_veth": veth["name"], "bridge": bridge, "kind": "veth",
                            "master": None, "shaping": None, "host_addresses": [], "host_device": None,
                            "vrf": None}],
            "routes": routes + [{"dst": f"{prefix}.0/24", "gateway": None, "dev": "eth0"}],
            "ports": ports[cid], "rules": []})
        bridges.append({"name": bridge, "mac": br["mac"], "mtu": mtu, "state": "UP",
                        "addresses": [f"{prefix}.1/24"], "ports": [veth["name"]]})
    vx = link(host, "cnivx.1")
    peer_mac = None  # filled below from the neighbour entry the plugin wrote
    neigh = json.loads(host.ip("-j", "neigh", "show", "dev", "cnivx.1").stdout)
    peer_mac = next(n["lladdr"] for n in neigh if n["dst"] == "10.244.2.0")
    return {
        "netns": host.name,
        "bridges": sorted(bridges, key=lambda b: b["name"]),
        "links": [{"name": "cntup0", "kind": "veth", "mtu": 1500, "state": "LOWERLAYERDOWN",
                   "addresses": [f"{UPLINK_IP}/24"], "children": []},
                  {"name": "cntup1", "kind": "veth", "mtu": 1500, "state": "DOWN", "addresses": [], "children": []}],
        "containers": sorted(containers, key=lambda c: c["netns"]),
        "overlay": [{"device": "cnivx.1", "vni": 1, "local": UPLINK_IP, "port": 4789, "underlay_dev": "cntup0",
                     "mtu": 1450, "mac": vx["address"], "addresses": ["10.244.1.0/32"],
                     "peers": [{"subnet": PEER_SUBNET, "gateway": "10.244.2.0", "vtep_mac": peer_mac,
                                "underlay_ip": PEER_IP}],
                     "fdb": [{"mac": peer_mac, "dst": PEER_IP}],
                     "neighbours": [{"ip": "10.244.2.0", "mac": peer_mac}]}],
        "reservations": [{"network": net, "ip": f"{prefix}.2", "container_id": cid, "ifname": "eth0",
                          "data_dir": data_dir} for cid, (net, _, prefix) in sorted(nets.items(), key=lambda i: i[1])],
        "cache": sorted(({"file": f"{net}-{cid}-eth0", "network": net, "container_id": cid, "ifname": "eth0",
                          "netns": ctrs[cid].path, "ips": [f"{prefix}.2"],
                          "port_mappings": [{"containerPort": p["container_port"], "hostPort": p["host_port"],
                                             "protocol": p["protocol"]} for p in ports[cid]]}
                         for cid, (net, _, prefix) in nets.items()), key=lambda c: c["file"]),
        "masquerade": [
            {"backend": "iptables", "network": IPT_NET, "container_id": "c-ipt", "source": "10.66.0.2",
             "chain": masq_chain(IPT_NET, "c-ipt")},
            {"backend": "nftables", "network": NFT_NET, "container_id": "c-nft", "source": "10.67.0.2",
             "chain": "masq_checks"}],
        "portmaps": [
            {"backend": "iptables", "network": IPT_NET, "container_id": "c-ipt", "protocol": "tcp", "host_ip": None,
             "host_port": 8080, "container_ip": "10.66.0.2", "container_port": 80},
            {"backend": "nftables", "network": None, "container_id": "c-nft", "protocol": "udp", "host_ip": None,
             "host_port": 9090, "container_ip": "10.67.0.2", "container_port": 90}],
    }


def masq_chain(network: str, cid: str) -> str:
    from cni_common.netfilter.names import masq_chain as chain

    return chain(network, cid)


def test_inspect_mode_of_the_built_program(host_ns: Netns, plugin_dir: Path, tmp_path: Path) -> None:
    """The installed program run as `cni-suite inspect` (a link of that name, here argv[0]): the bundle holds the
    inspect package and both lazily imported renderers."""
    host_ns.ip("link", "add", "cntbr9", "type", "bridge")
    argv = ["cni-suite", "inspect", "--netns", host_ns.path, "--data-dir", str(tmp_path), "--cache-dir",
            str(tmp_path)]

    def run(*extra: str) -> str:
        return subprocess.run([*argv, *extra], executable=plugin_dir / "bridge", capture_output=True, text=True,
                              timeout=60, check=True).stdout

    node = json.loads(run("--format", "json"))
    assert node["netns"] == host_ns.name and [b["name"] for b in node["bridges"]] == ["cntbr9"]
    assert "bridge cntbr9" in run("--format", "svg") and "bridge cntbr9" in run()
