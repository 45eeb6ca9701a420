"""The node model as text for a terminal: the node, its bridges with the containers behind each port, the
overlay, the rules, the bookkeeping on disk, and the orphans last (what an operator looks for first)."""

from __future__ import annotations

from typing import Any

from .model import host_port


def _ports(ctr: dict[str, Any]) -> str:
    return ", ".join(f"{host_port(p['host_ip'], p['host_port']) if p['host_ip'] else p['host_port']}"
                     f"/{p['protocol']} -> {p['container_port']} ({p['backend']})" for p in ctr["ports"])


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
    for ctr in node["containers"]:
        for iface in ctr["interfaces"]:
            by_bridge.setdefault(iface["bridge"], []).append((ctr, iface))
    for br in node["bridges"]:
        out.append(f"  bridge {br['name']} (mtu {br['mtu']}, {br['state']})  {' '.join(br['addresses']) or '-'}")
        out += _attached(by_bridge.pop(br["name"], []))
    for master, rest in by_bridge.items():
        out.append(f"  {'master ' + master if master else 'veths on no bridge'}")
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
        lines.append(f"    {iface['host_veth']} <-> {iface['name']} in {ctr['netns']}  "
                     f"{' '.join(iface['addresses']) or '-'}  [{iface['network'] or '?'} {ctr['container_id'] or '?'}]")
        if ctr["ports"]:
            lines.append(f"      ports: {_ports(ctr)}")
    return lines
