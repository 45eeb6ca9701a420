"""The node model as text for a terminal: the node, its bridges with the containers behind each port, the
overlay, the rules, the bookkeeping on disk, and the orphans last (what an operator looks for first)."""

from __future__ import annotations

from typing import Any

from .model import host_port


def _ports(ctr: dict[str, Any]) -> str:
    return ", ".join(f"{host_port(p['host_ip'], p['host_port']) if p['host_ip'] else p['host_port']}"
                     f"/{p['protocol']} -> {p['container_port']} ({p['backend']})" for p in ctr["ports"])


def _rate(bits: int) -> str:
    for unit, size in (("Gbit", 10 ** 9), ("Mbit", 10 ** 6), ("Kbit", 10 ** 3)):
        if bits >= size:
            return f"{bits / size:g}{unit}"
    return f"{bits}bit"


def _shaped(shaping: dict[str, Any]) -> str:
    parts = []
    if shaping["ingress"]:
        parts.append(f"to it {_rate(shaping['ingress']['rate_bits'])} (tbf on {shaping['ingress']['device']})")
    if shaping["egress"]:
        parts.append(f"from it {_rate(shaping['egress']['rate_bits'])} (tbf on {shaping['egress']['device']})")
    return ", ".join(parts)


def render(node: dict[str, Any]) -> str:
    out: list[str] = [f"node: {node['netns'] or '(this namespace)'}"]
    for link in node["links"]:
        out.append(f"  link {link['name']} ({link['kind']}, mtu {link['mtu']}, {link['state']})  "
                   f"{' '.join(link['addresses']) or '-'}")
    for ov in node["overlay"]:
        out.append(f"  vxlan {ov['device']}  vni {ov['vni']}  local {ov['local']}  port {ov['port']}  "
                   f"dev {ov['underlay_dev']}  mtu {ov['mtu']}  {' '.join(ov['addresses'])}")
        for p in ov["peers"]:
            out.append(f"    peer {p['subnet']} via {p['gateway']}  vtep {p['vtep_mac']}  underlay {p['underlay_ip']}")
    by_bridge: dict[Any, list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    by_master: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    lent: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for ctr in node["containers"]:
        for iface in ctr["interfaces"]:
            if iface.get("host_device"):
                lent.append((ctr, iface))
            elif iface["master"]:
                by_master.setdefault(iface["master"], []).append((ctr, iface))
            else:
                by_bridge.setdefault(iface["bridge"], []).append((ctr, iface))
    for master, children in sorted(by_master.items()):
        out.append(f"  master {master}")
        out += _attached(children)
    if lent:
        out.append("  devices lent to containers (host-device)")
        out += _attached(lent)
    for br in node["bridges"]:
        out.append(f"  bridge {br['name']} (mtu {br['mtu']}, {br['state']})  {' '.join(br['addresses']) or '-'}")
        out += _attached(by_bridge.pop(br["name"], []))
    for master, rest in by_bridge.items():
        out.append(f"  {'master ' + master if master else 'routed veths, no bridge (ptp)'}")
        out += _attached(rest)
    out.append("routes:")
    out += [f"  {r['dst']}" + (f" via {r['gateway']}" if r["gateway"] else "") + f" dev {r['dev']}"
            for r in node["routes"]] or ["  (none)"]
    out.append("masquerade:")
    out += [f"  {m['backend']}: {m['source']} ({m['network']}, {m['container_id']})" for m in node["masquerade"]] \
        or ["  (none)"]
    out.append("port mappings:")
    out += [f"  {p['backend']}: {host_port(p['host_ip'] or '*', p['host_port'])}/{p['protocol']} -> "
            f"{host_port(p['container_ip'], p['container_port'])} ({p['container_id']})" for p in node["portmaps"]] \
        or ["  (none)"]
    out.append("firewall (allowed addresses, isolated bridges):")
    fw = node["firewall"]
    out += [f"  {a['backend']}: {a['address']}" + (f" ({a['attachment']})" if a["attachment"] else "")
            for a in fw["allowed"]] + [f"  {b['backend']}: bridge {b['bridge']} (ingressPolicy)"
                                       for b in fw["isolated_bridges"]] or ["  (none)"]
    out.append("host-local reservations:")
    out += [f"  {r['network']}: {r['ip']} -> {r['container_id']} {r['ifname'] or ''}".rstrip()
            for r in node["reservations"]] or ["  (none)"]
    out.append("libcni cache:")
    out += [f"  {c['network']}: {c['container_id']} {c['ifname']} {' '.join(c['ips'])}" for c in node["cache"]] \
        or ["  (none)"]
    out.append("orphans:")
    orphans = node["orphans"]
    out += [f"  reservation {r['network']}/{r['ip']} ({r['container_id']}): no live container has this address"
            for r in orphans["reservations"]]
    out += [f"  veth {v['name']}" + (f" on {v['bridge']}" if v["bridge"] else "") + ": its peer is in no "
            "namespace found (no /run/netns name, no process)" for v in orphans["veths"]]
    out += [f"  {r['kind']} rule ({r['backend']}, {r.get('chain') or r.get('protocol')}) for "
            f"{r.get('source') or r.get('container_ip')} ({r['container_id']}): its container is gone"
            for r in orphans["rules"]]
    out += [f"  cache {c['file']}: its container is gone" for c in orphans["cache"]]
    out += [f"  ifb {name}: no container's traffic is redirected to it" for name in orphans.get("ifbs", [])]
    if not any(orphans.values()):
        out.append("  (none)")
    out.append("warm processes (docs/packaging.md):")
    out += [f"  pid {w.get('pid', '?')} build {str(w.get('build'))[:12]} context {w.get('context')}: "
            f"{w['state']}, {w.get('calls', '?')} calls, {w.get('refused', '?')} refused, "
            f"idle exit {w.get('idle_exit_seconds', '?')} s" for w in node.get("warm", [])] or ["  (none)"]
    if node["errors"]:
        out.append("could not read:")
        out += [f"  {e}" for e in node["errors"]]
    return "\n".join(out) + "\n"


def _attached(pairs: list[tuple[dict[str, Any], dict[str, Any]]]) -> list[str]:
    lines = []
    for ctr, iface in pairs:
        gateway = f" ({' '.join(iface['host_addresses'])})" if iface.get("host_addresses") else ""
        if iface.get("host_device"):
            joint = f"{iface['host_device']} lent as"
        else:
            joint = f"{iface['kind']} child" if iface["master"] else f"{iface['host_veth']}{gateway} <->"
        vrf = f"  vrf {iface['vrf']}" if iface.get("vrf") else ""
        lines.append(f"    {joint} {iface['name']} in {ctr['netns']}  "
                     f"{' '.join(iface['addresses']) or '-'}{vrf}  [{iface['network'] or '?'} "
                     f"{ctr['container_id'] or '?'}]")
        if ctr.get("rules"):
            lines.append(f"      rules: {', '.join(ctr['rules'])}")
        if ctr["ports"]:
            lines.append(f"      ports: {_ports(ctr)}")
        if iface.get("shaping"):
            lines.append(f"      shaped: {_shaped(iface['shaping'])}")
    return lines
