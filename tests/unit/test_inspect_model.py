"""inspect's joins on a hand-made snapshot: rules of both backends parsed, attachments live or orphaned."""

from __future__ import annotations

from typing import Any

from cni_common.inspect.collect import Snapshot
from cni_common.inspect.model import build
from cni_common.inspect.render_svg import render as render_svg
from cni_common.inspect.render_text import render as render_text

IPTABLES_NAT = """*nat
:POSTROUTING ACCEPT [0:0]
:CNI-HOSTPORT-DNAT - [0:0]
:CNI-DN-1 - [0:0]
:CNI-aaa - [0:0]
-A POSTROUTING -s 10.1.0.2/32 -m comment --comment "name: \\"n1\\" id: \\"live\\"" -j CNI-aaa
-A POSTROUTING -s 10.1.0.9/32 -m comment --comment "name: \\"n1\\" id: \\"gone\\"" -j CNI-bbb
-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \\"n1\\" id: \\"live\\"" -m multiport \
--destination-ports 8080 -j CNI-DN-1
-A CNI-DN-1 -d 192.0.2.1/32 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.1.0.2:80
COMMIT
"""
NFT_RULES = [
    {"table": "cni_plugins_masquerade", "chain": "masq_checks", "comment":
     "0123456789abcdef-0123456789abcdef, net: n1, if: eth0, id: gone",
     "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": "10.1.0.9"}}]},
    {"table": "cni_hostport", "chain": "hostports", "comment": "gone",
     "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}}, "right": 53}},
              {"dnat": {"addr": "10.1.0.9", "port": 5353}}]},
]


def link(index: int, name: str, kind: str = "", **extra: Any) -> dict[str, Any]:
    out = {"ifindex": index, "ifname": name, "mtu": 1500, "operstate": "UP", "address": f"02:00:00:00:00:{index:02x}",
           "addr_info": extra.pop("addr_info", [])}
    if kind:
        out["linkinfo"] = {"info_kind": kind}
    out.update(extra)
    return out


def addr(cidr: str) -> dict[str, Any]:
    ip, plen = cidr.split("/")
    return {"local": ip, "prefixlen": int(plen), "scope": "global"}


def snapshot() -> Snapshot:
    links = [link(1, "lo"), link(2, "br0", "bridge", addr_info=[addr("10.1.0.1/24")]),
             link(3, "vethlive", "veth", master="br0", link_netnsid=0, link_index=2),
             link(4, "vethlost", "veth", master="br0", link_netnsid=1, link_index=2),
             link(5, "uplink", "veth", link_netnsid=2, link_index=9, addr_info=[addr("192.0.2.1/24")])]
    peer = link(2, "eth0", "veth", link_netnsid=0, link_index=3, addr_info=[addr("10.1.0.2/24")])
    return Snapshot(
        netns="/run/netns/node", links=links, routes=[], nsids={0: "/run/netns/ctr"},
        peers={"vethlive": {"netns": "/run/netns/ctr", "link": peer}}, peer_routes={}, fdb={}, neighbours={},
        iptables={4: IPTABLES_NAT, 6: ""}, nft=NFT_RULES,
        reservations=[{"network": "n1", "ip": ip, "container_id": cid, "ifname": "eth0", "data_dir": "/d"}
                      for ip, cid in (("10.1.0.2", "live"), ("10.1.0.9", "gone"))],
        cache=[{"file": f"n1-{cid}-eth0", "network": "n1", "container_id": cid, "ifname": "eth0",
                "netns": f"/run/netns/{cid}", "ips": [ip], "port_mappings": []}
               for ip, cid in (("10.1.0.2", "live"), ("10.1.0.9", "gone"))],
        errors=[])


def test_joins_and_orphans() -> None:
    node = build(snapshot())
    assert node["netns"] == "node"
    [ctr] = node["containers"]
    assert (ctr["netns"], ctr["container_id"], ctr["interfaces"][0]["host_veth"]) == ("ctr", "live", "vethlive")
    assert ctr["ports"] == [{"protocol": "tcp", "host_ip": "192.0.2.1", "host_port": 8080, "container_port": 80,
                             "backend": "iptables"}]
    assert [ln["name"] for ln in node["links"]] == ["uplink"]  # addressed: an uplink, not a lost container
    orphans = node["orphans"]
    assert [r["ip"] for r in orphans["reservations"]] == ["10.1.0.9"]
    assert [v["name"] for v in orphans["veths"]] == ["vethlost"]
    assert sorted((r["kind"], r["backend"]) for r in orphans["rules"]) == [
        ("masquerade", "iptables"), ("masquerade", "nftables"), ("portmap", "nftables")]
    assert [c["container_id"] for c in orphans["cache"]] == ["gone"]


def test_renderers_name_everything() -> None:
    node = build(snapshot())
    text, svg = render_text(node), render_svg(node)
    for needle in ("vethlive <-> eth0 in ctr", "10.1.0.2/24", "reservation n1/10.1.0.9", "veth vethlost"):
        assert needle in text
    for needle in ("container ctr", "eth0  10.1.0.2/24", "port 192.0.2.1:8080/tcp -&gt; 80", "bridge br0 10.1.0.1/24",
                   "reservation n1/10.1.0.9"):
        assert needle in svg


def test_dual_stack_mapping_is_one_port_and_ipv6_in_brackets() -> None:
    snap = snapshot()
    snap.links[2]["addr_info"] = []
    peer = snap.peers["vethlive"]["link"]
    peer["addr_info"].append(addr("fd00::2/64"))
    snap.iptables[6] = IPTABLES_NAT.replace("192.0.2.1/32", "2001:db8::1/128").replace(
        "10.1.0.2:80", "[fd00::2]:80").replace("10.1.0.2/32", "fd00::2/128")
    node = build(snap)
    assert len(node["containers"][0]["ports"]) == 2  # the host address differs per family; no duplicate
    snap.iptables[6] = snap.iptables[6].replace("-d 2001:db8::1/128 ", "")
    snap.iptables[4] = snap.iptables[4].replace("-d 192.0.2.1/32 ", "")
    node = build(snap)
    assert node["containers"][0]["ports"] == [{"protocol": "tcp", "host_ip": None, "host_port": 8080,
                                               "container_port": 80, "backend": "iptables"}]
    assert "iptables: *:8080/tcp -> [fd00::2]:80 (live)" in render_text(node)


def test_unwritable_output_is_one_line_and_exit_1(monkeypatch: Any, tmp_path: Any, capsys: Any) -> None:
    import cni_common.inspect as cli

    monkeypatch.setattr(cli, "collect", lambda *_: snapshot())
    assert cli.main(["--format", "json", "-o", str(tmp_path / "no-such-dir" / "node.json")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("cni-suite inspect: cannot write") and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_ipvlan_and_vlan_children_join_their_master() -> None:
    snap = snapshot()
    snap.links.append(link(6, "cntmst0", "veth", link_netnsid=2, link_index=10, addr_info=[addr("192.0.2.9/24")]))
    for netns, kind, ip in (("/run/netns/a", "ipvlan", "10.5.0.2/24"), ("/run/netns/b", "vlan", "10.6.0.2/24")):
        child = link(2, "net1", kind, link_netnsid=0, link_index=6, addr_info=[addr(ip)])
        snap.children.append({"netns": netns, "link": child, "master": "cntmst0"})
    node = build(snap)
    assert next(ln for ln in node["links"] if ln["name"] == "cntmst0")["children"] == ["a:net1", "b:net1"]
    joined = {c["netns"]: (c["interfaces"][0]["kind"], c["interfaces"][0]["master"]) for c in node["containers"]}
    assert joined == {"a": ("ipvlan", "cntmst0"), "b": ("vlan", "cntmst0"), "ctr": ("veth", None)}
    text = render_text(node)
    assert "  master cntmst0\n    ipvlan child net1 in a" in text and "vlan child net1 in b" in text
    svg = render_svg(node)
    assert "ipvlan net1" in svg and "vlan net1" in svg
