"""Join what :mod:`.collect` read into one picture of the node: who is attached where, and what is orphaned.

The joins use only facts the kernel and the files state: a host veth leads to a container namespace (peer
ifindex), a container's address is what a reservation, a cache entry and a rule name. An attachment is *live*
when its address is on an interface of a container namespace reachable from this node; everything that names an
address no live container has is an orphan. The result is plain JSON-ready data, the one input of every renderer
and the ``--format json`` output (its keys are documented in docs/inspect.md).
"""

from __future__ import annotations

import re
from typing import Any, Optional

from cni_common.netfilter.xtables import option_value, parse_save, target_of

from .collect import Snapshot, container_side, lent_name, link_kind
from .firewall import firewall_view

_PORT_KEYS = ("protocol", "host_ip", "host_port", "container_port", "backend")  # a mapping, as a container shows it
_MASQ_COMMENT = re.compile(r'^name: "(?P<network>(?:[^"\\]|\\.)*)" id: "(?P<cid>(?:[^"\\]|\\.)*)"$')
_DNAT_COMMENT = re.compile(r'^dnat name: "(?P<network>[^"]*)" id: "(?P<cid>[^"]*)"')
_NFT_MASQ_COMMENT = re.compile(
    r"^[0-9a-f]{16}-[0-9a-f]{16}, net: (?P<network>.*), if: (?P<ifname>.*), id: (?P<cid>.*)$")


def _addresses(link: dict[str, Any]) -> list[str]:
    """Global addresses as ``ip/len`` (link-local IPv6 left out: every interface has one)."""
    return [f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", [])
            if a.get("scope") != "link" and "local" in a]


def _ip_only(cidr: str) -> str:
    return cidr.split("/")[0]


def _netns_label(path: Optional[str]) -> Optional[str]:
    """``/run/netns/x`` -> ``x`` (what people type); other paths stay as they are."""
    if path and path.startswith("/run/netns/"):
        return path[len("/run/netns/"):]
    return path


def _route(r: dict[str, Any]) -> dict[str, Any]:
    return {"dst": r.get("dst"), "gateway": r.get("gateway"), "dev": r.get("dev")}


# --------------------------------------------------------------------------------------------- netfilter
def _iptables_rules(snapshot: Snapshot) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Masquerade entries (POSTROUTING jumps to ``CNI-<hash>``) and port mappings (``CNI-DN-<hash>`` DNATs)."""
    masq, ports = [], []
    for text in snapshot.iptables.values():
        table = parse_save(text)
        for rule in table.rules("POSTROUTING"):
            m = _MASQ_COMMENT.match(option_value(rule, "--comment"))
            if m and target_of(rule).startswith("CNI-"):
                masq.append({"backend": "iptables", "network": m["network"], "container_id": m["cid"],
                             "source": _ip_only(option_value(rule, "-s")), "chain": target_of(rule)})
        owners = {}
        for rule in table.rules("CNI-HOSTPORT-DNAT"):
            m = _DNAT_COMMENT.match(option_value(rule, "--comment"))
            if m:
                owners[target_of(rule)] = (m["network"], m["cid"])
        for chain, (network, cid) in sorted(owners.items()):
            for rule in table.rules(chain):
                if target_of(rule) != "DNAT":
                    continue
                to = option_value(rule, "--to-destination")
                ip, _, port = to.rpartition(":")
                host_ip = option_value(rule, "-d")
                ports.append({"backend": "iptables", "network": network, "container_id": cid,
                              "protocol": option_value(rule, "-p"), "host_ip": _ip_only(host_ip) or None,
                              "host_port": int(option_value(rule, "--dport") or 0),
                              "container_ip": ip.strip("[]"), "container_port": int(port or 0)})
    return masq, ports


def _nft_match(expr: list[dict[str, Any]], field: str) -> tuple[Optional[str], Any]:
    """(protocol, value) of the first ``payload <field> == value`` match of a rule."""
    for e in expr:
        match = e.get("match", {})
        payload = match.get("left", {}).get("payload", {}) if isinstance(match.get("left"), dict) else {}
        if payload.get("field") == field and match.get("op") == "==":
            return payload.get("protocol"), match.get("right")
    return None, None


def _nft_rules(snapshot: Snapshot) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    masq, ports = [], []
    for rule in snapshot.nft:
        expr, comment = rule.get("expr", []), str(rule.get("comment", ""))
        if rule.get("table") == "cni_plugins_masquerade":
            m = _NFT_MASQ_COMMENT.match(comment)
            _, source = _nft_match(expr, "saddr")
            if m and isinstance(source, str):
                masq.append({"backend": "nftables", "network": m["network"], "container_id": m["cid"],
                             "source": source, "chain": rule.get("chain")})
        elif rule.get("table") == "cni_hostport" and rule.get("chain") in ("hostports", "hostip_hostports"):
            dnat = next((e["dnat"] for e in expr if "dnat" in e), None)
            protocol, port = _nft_match(expr, "dport")
            _, host_ip = _nft_match(expr, "daddr")
            if dnat and protocol:
                ports.append({"backend": "nftables", "network": None, "container_id": comment,
                              "protocol": protocol, "host_ip": host_ip if isinstance(host_ip, str) else None,
                              "host_port": port, "container_ip": dnat.get("addr"),
                              "container_port": dnat.get("port", port)})
    return masq, ports


# --------------------------------------------------------------------------------------------- overlay
def _overlay(snapshot: Snapshot, links: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Each vxlan device with its peers: route (subnet via gateway, onlink) + neighbour (gateway -> VTEP MAC)
    + FDB (MAC -> the peer's underlay address): the three entries flannel's vxlan backend writes per node."""
    out = []
    for name, link in sorted(links.items()):
        if link_kind(link) != "vxlan":
            continue
        data = link.get("linkinfo", {}).get("info_data", {})
        neigh = {n["dst"]: n.get("lladdr") for n in snapshot.neighbours.get(name, []) if "dst" in n}
        fdb = {f["mac"]: f.get("dst") for f in snapshot.fdb.get(name, []) if f.get("dst")}
        peers = []
        for r in snapshot.routes:
            if r.get("dev") == name and r.get("gateway"):
                mac = neigh.get(r["gateway"])
                peers.append({"subnet": r["dst"], "gateway": r["gateway"], "vtep_mac": mac,
                              "underlay_ip": fdb.get(mac) if mac else None})
        out.append({
            "device": name, "vni": data.get("id"), "local": data.get("local"), "port": data.get("port"),
            "underlay_dev": data.get("link"), "mtu": link.get("mtu"), "mac": link.get("address"),
            "addresses": _addresses(link), "peers": peers,
            "fdb": [{"mac": m, "dst": d} for m, d in sorted(fdb.items())],
            "neighbours": [{"ip": ip, "mac": mac} for ip, mac in sorted(neigh.items())],
        })
    return out


# --------------------------------------------------------------------------------------------- the node
def build(snapshot: Snapshot) -> dict[str, Any]:
    """The node model (see docs/inspect.md for every key)."""
    links = {ln["ifname"]: ln for ln in snapshot.links}
    cache_by_ip = {ip: c for c in snapshot.cache for ip in c["ips"]}
    reservation_by_ip = {r["ip"]: r for r in snapshot.reservations}
    masq_ipt, ports_ipt = _iptables_rules(snapshot)
    masq_nft, ports_nft = _nft_rules(snapshot)
    masquerade, portmaps = masq_ipt + masq_nft, ports_ipt + ports_nft

    containers: dict[str, dict[str, Any]] = {}

    def add_interface(path: str, other: dict[str, Any], **joined: Any) -> None:
        """Put the container-side link ``other`` of namespace ``path`` into its container, with how it is joined
        to the node (``host_veth`` and ``bridge``, ``master``, or ``host_device``: lent by the node) and the VRF
        it is in."""
        addresses = _addresses(other)
        ips = [_ip_only(a) for a in addresses]
        owner = next((cache_by_ip[ip] for ip in ips if ip in cache_by_ip), None) or \
            next((reservation_by_ip[ip] for ip in ips if ip in reservation_by_ip), None) or {}
        ctr = containers.setdefault(path, {
            "netns": _netns_label(path), "container_id": owner.get("container_id"), "interfaces": [],
            "routes": [_route(r) for r in snapshot.peer_routes.get(path, [])], "ports": [],
            "rules": [f"from {r.get('src')} lookup {r.get('table')}" for r in snapshot.peer_rules.get(path, [])]})
        ctr["container_id"] = ctr["container_id"] or owner.get("container_id")
        ctr["interfaces"].append({
            "name": other["ifname"], "kind": link_kind(other), "mac": other.get("address"), "mtu": other.get("mtu"),
            "addresses": addresses, "network": owner.get("network"), "host_veth": None, "bridge": None,
            "master": None, "shaping": None, "host_addresses": [], "host_device": None, **joined,
            "vrf": other.get("master") if other.get("linkinfo", {}).get("info_slave_kind") == "vrf" else None})

    for veth_name, peer in sorted(snapshot.peers.items()):
        add_interface(peer["netns"], peer["link"], host_veth=veth_name, bridge=links[veth_name].get("master"),
                      shaping=_shaping(snapshot, veth_name),
                      host_addresses=_addresses(links[veth_name]),  # ptp: the gateway, held by the host end
                      host_device=lent_name(peer["link"]) or None)  # a veth end lent by host-device
    for child in snapshot.children:
        add_interface(child["netns"], child["link"], master=child["master"], host_device=child.get("host_device"))
    by_ip = {_ip_only(a): c for c in containers.values() for i in c["interfaces"] for a in i["addresses"]}
    live_ips = set(by_ip)
    for pm in portmaps:
        target = by_ip.get(pm["container_ip"])
        port = {k: pm[k] for k in _PORT_KEYS}
        if target is not None and port not in target["ports"]:  # a dual-stack mapping: one per family
            target["ports"].append(port)

    bridges = [{"name": name, "mac": ln.get("address"), "mtu": ln.get("mtu"), "state": ln.get("operstate"),
                "addresses": _addresses(ln),
                "ports": sorted(p for p, pl in links.items() if pl.get("master") == name)}
               for name, ln in sorted(links.items()) if link_kind(ln) == "bridge"]
    lost_veths = [name for name, ln in sorted(links.items()) if container_side(ln) and name not in snapshot.peers]
    shaping_ifbs = set(snapshot.redirects.values())
    children: dict[str, list[str]] = {}
    for child in (c for c in snapshot.children if c["master"]):
        children.setdefault(child["master"], []).append(f"{_netns_label(child['netns'])}:{child['link']['ifname']}")
    others = [{"name": name, "kind": link_kind(ln) or ln.get("link_type"), "mtu": ln.get("mtu"),
               "state": ln.get("operstate"), "addresses": _addresses(ln), "children": children.get(name, [])}
              for name, ln in sorted(links.items())
              if name != "lo" and link_kind(ln) not in ("bridge", "vxlan") and name not in snapshot.peers
              and name not in lost_veths and name not in shaping_ifbs]
    orphans = {
        "reservations": [r for r in snapshot.reservations if r["ip"] not in live_ips],
        "veths": [{"name": name, "bridge": links[name].get("master"), "peer_ifindex": links[name].get("link_index")}
                  for name in lost_veths],
        "rules": [dict(r, kind="masquerade") for r in masquerade if r["source"] not in live_ips]
                 + [dict(r, kind="portmap") for r in portmaps if r["container_ip"] not in live_ips],
        "cache": [c for c in snapshot.cache if not _cache_live(c, live_ips, containers)],
        "ifbs": [name for name, ln in sorted(links.items()) if link_kind(ln) == "ifb" and name.startswith("bwp")
                 and name not in shaping_ifbs],
    }
    return {
        "netns": _netns_label(snapshot.netns),
        "bridges": bridges,
        "links": others,
        "containers": sorted(containers.values(), key=lambda c: str(c["netns"])),
        "routes": [_route(r) for r in snapshot.routes],
        "overlay": _overlay(snapshot, links),
        "reservations": snapshot.reservations,
        "cache": snapshot.cache,
        "masquerade": masquerade,
        "portmaps": portmaps,
        "firewall": firewall_view(snapshot.filter_tables, snapshot.nft),
        "orphans": orphans,
        "errors": snapshot.errors,
    }


def _shaping(snapshot: Snapshot, veth: str) -> Optional[dict[str, Any]]:
    """The bandwidth plugin's limits on a container's veth: "ingress" (to the container) is the veth's root tbf,
    "egress" (from it) the root tbf of the ifb its ingress filter redirects to. None when neither is there."""
    roots = {q.get("dev"): q for q in snapshot.qdiscs if q.get("kind") == "tbf" and q.get("root")}

    def limit(dev: Optional[str]) -> Optional[dict[str, Any]]:
        opts = roots[dev].get("options", {}) if dev in roots else None
        return {"device": dev, "rate_bits": int(opts["rate"]) * 8, "burst_bytes": opts.get("burst")} \
            if opts and "rate" in opts else None

    ingress, egress = limit(veth), limit(snapshot.redirects.get(veth))
    return {"ingress": ingress, "egress": egress} if ingress or egress else None


def host_port(ip: Any, port: Any) -> str:
    """``ip:port`` for the renderers, with an IPv6 address in brackets as in a URL."""
    return f"[{ip}]:{port}" if ":" in str(ip) else f"{ip}:{port}"


def _cache_live(entry: dict[str, Any], live_ips: set[str], containers: dict[str, dict[str, Any]]) -> bool:
    """A cache entry has state when one of its addresses is live, or (no addresses: L2 only) its netns is."""
    if entry["ips"]:
        return any(ip in live_ips for ip in entry["ips"])
    return entry.get("netns") in containers

