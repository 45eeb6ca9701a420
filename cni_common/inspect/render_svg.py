"""The node model as an SVG picture, drawn by hand: a few dozen boxes, lines and labels need no layout engine
(graphviz would add a system package and a process for a picture whose shape is always the same: devices on
top, bridges in the middle, containers below, overlay peers to the right, orphans at the bottom).

Everything is placed on a grid computed from the text it holds (monospace, so width = characters × a constant);
the output is plain SVG 1.1 that any browser or Markdown viewer shows.
"""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import escape

from .model import host_port

CHAR_W = 7.3  # width of one character of 12 px monospace
LINE_H = 16
PAD = 10
GAP = 24
MIN_BOX_W = 200
FONT = 'font-family="DejaVu Sans Mono, Menlo, Consolas, monospace"'
COLOURS = {"node": "#f4f6f8", "device": "#e3ecfa", "bridge": "#ffe8b3", "container": "#e2f4e2",
           "peer": "#efe3fa", "orphan": "#fde2e2", "line": "#555", "orphan_line": "#c0392b"}


class Canvas:
    """SVG elements in drawing order, with the extent they cover."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.width = 0.0
        self.height = 0.0

    def grow(self, x: float, y: float) -> None:
        self.width, self.height = max(self.width, x), max(self.height, y)

    def box(self, x: float, y: float, lines: list[str], fill: str, *, width: float = 0, stroke: str = "#333",
            bold_first: bool = True, dashed: bool = False) -> tuple[float, float]:
        """A rounded box holding ``lines`` (the first in bold); returns its (width, height)."""
        w = max(width, MIN_BOX_W, max((len(s) for s in lines), default=0) * CHAR_W + 2 * PAD)
        h = len(lines) * LINE_H + 2 * PAD - 4
        dash = ' stroke-dasharray="5,3"' if dashed else ""
        self.parts.append(f'<rect x="{x:.0f}" y="{y:.0f}" width="{w:.0f}" height="{h:.0f}" rx="6" fill="{fill}" '
                          f'stroke="{stroke}"{dash}/>')
        for i, text in enumerate(lines):
            weight = ' font-weight="bold"' if i == 0 and bold_first else ""
            self.text(x + PAD, y + PAD + 8 + i * LINE_H, text, extra=weight)
        self.grow(x + w, y + h)
        return w, h

    def text(self, x: float, y: float, text: str, *, extra: str = "", anchor: str = "start", size: int = 12) -> None:
        self.parts.append(f'<text x="{x:.0f}" y="{y:.0f}" {FONT} font-size="{size}" text-anchor="{anchor}"{extra}>'
                          f"{escape(text)}</text>")
        self.grow(x + (len(text) * CHAR_W if anchor == "start" else len(text) * CHAR_W / 2), y)

    def line(self, x1: float, y1: float, x2: float, y2: float, *, colour: str = COLOURS["line"],
             dashed: bool = False) -> None:
        dash = ' stroke-dasharray="6,4"' if dashed else ""
        self.parts.append(f'<line x1="{x1:.0f}" y1="{y1:.0f}" x2="{x2:.0f}" y2="{y2:.0f}" stroke="{colour}" '
                          f'stroke-width="1.5"{dash}/>')

    def svg(self, background: list[str]) -> str:
        w, h = self.width + 20, self.height + 20
        return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{w:.0f}" height="{h:.0f}" '
                f'viewBox="0 0 {w:.0f} {h:.0f}">\n'
                f'<rect x="0" y="0" width="{w:.0f}" height="{h:.0f}" fill="white"/>\n'
                + "\n".join(background + self.parts) + "\n</svg>\n")


def _container_lines(ctr: dict[str, Any]) -> list[str]:
    lines = [f"container {ctr['netns']}"]
    if ctr["container_id"]:
        lines.append(f"id {ctr['container_id']}")
    for iface in ctr["interfaces"]:
        vrf = f"  vrf {iface['vrf']}" if iface.get("vrf") else ""
        lines.append(f"{iface['name']}  {' '.join(iface['addresses']) or '(no address)'}{vrf}")
    lines += [f"rule {r}" for r in ctr.get("rules", [])]
    for p in ctr["ports"]:
        lines.append(f"port {host_port(p['host_ip'], p['host_port']) if p['host_ip'] else p['host_port']}"
                     f"/{p['protocol']} -> {p['container_port']}")
    return lines


def _orphan_lines(orphans: dict[str, list[dict[str, Any]]]) -> list[str]:
    lines = [f"reservation {r['network']}/{r['ip']} ({r['container_id']})" for r in orphans["reservations"]]
    lines += [f"veth {v['name']} (peer namespace not found)" for v in orphans["veths"]]
    lines += [f"{r['kind']} rule {r['backend']} -> {r.get('source') or r.get('container_ip')} ({r['container_id']})"
              for r in orphans["rules"]]
    lines += [f"cache {c['file']}" for c in orphans["cache"]]
    return lines


def render(node: dict[str, Any]) -> str:
    c = Canvas()
    left, top = 30.0, 60.0
    c.text(left, 30, f"node {node['netns'] or '(this namespace)'}", extra=' font-weight="bold"', size=15)

    # Row 1: the node's own devices (uplink, vxlan).
    x, row1_h, vxlan_boxes, masters = left + PAD, 0.0, [], {}
    for link in node["links"]:
        w, h = c.box(x, top, [f"{link['kind']} {link['name']}", *link["addresses"], f"mtu {link['mtu']}"],
                     COLOURS["device"])
        masters[link["name"]] = (x + w / 2, top + h)
        x, row1_h = x + w + GAP, max(row1_h, h)
    for ov in node["overlay"]:
        lines = [f"vxlan {ov['device']}", f"vni {ov['vni']} port {ov['port']}", f"local {ov['local']}",
                 *ov["addresses"], f"mtu {ov['mtu']}"]
        w, h = c.box(x, top, lines, COLOURS["device"])
        vxlan_boxes.append((ov, x + w, top + h / 2))
        x, row1_h = x + w + GAP, max(row1_h, h)

    # Rows 2 and 3: each bridge over the containers plugged into it.
    groups: dict[Any, list[dict[str, Any]]] = {b["name"]: [] for b in node["bridges"]}
    children = []  # (container, interface): macvlan, ipvlan, vlan children, joined to their master device
    for ctr in node["containers"]:
        for iface in ctr["interfaces"]:
            if iface["master"] or iface.get("host_device"):
                children.append((ctr, iface))
                continue
            members = groups.setdefault(iface["bridge"], [])
            if ctr not in members:
                members.append(ctr)
    bridge_y = top + (row1_h + 50 if row1_h else 0)
    ctr_y = bridge_y + 44 + 70
    x = left + PAD
    bridges = {b["name"]: b for b in node["bridges"]}
    for name, members in groups.items():
        group_x, boxes = x, []
        for ctr in members:
            w, h = c.box(x, ctr_y, _container_lines(ctr), COLOURS["container"])
            boxes.append((ctr, x + w / 2))
            x += w + GAP
        group_w = max(x - GAP - group_x, MIN_BOX_W)
        br = bridges.get(name)
        label = [f"bridge {name}", *(br["addresses"] if br else [])] if name else ["(routed veths, no bridge: ptp)"]
        c.box(group_x, bridge_y, [" ".join(label)], COLOURS["bridge"] if name else "white", width=group_w,
              dashed=not name)
        for ctr, cx in boxes:
            c.line(cx, bridge_y + 28, cx, ctr_y)
            veths = [i["host_veth"] for i in ctr["interfaces"] if i["bridge"] == name]
            c.text(cx + 6, (bridge_y + 28 + ctr_y) / 2 + 4, " ".join(veths), extra=' fill="#555"')
        x = max(x, group_x + group_w + GAP)
    drawn: dict[int, float] = {}
    for ctr, iface in children:  # each child's container below the bridges' row, a line up to its master device
        if id(ctr) not in drawn:
            w, _ = c.box(x, ctr_y, _container_lines(ctr), COLOURS["container"])
            drawn[id(ctr)] = x + w / 2
            x += w + GAP
        cx = drawn[id(ctr)]
        if iface.get("host_device"):  # the node lent it: no link of the node is joined to it any more
            c.text(cx + 6, ctr_y - 8, f"host-device {iface['host_device']} as {iface['name']}", extra=' fill="#555"')
            continue
        mx, my = masters.get(iface["master"], (cx, bridge_y))
        c.line(mx, my, cx, ctr_y)
        c.text((mx + cx) / 2 + 6, (my + ctr_y) / 2, f"{iface['kind']} {iface['name']}", extra=' fill="#555"')
    node_right = c.width + 2 * PAD
    node_bottom = c.height + PAD
    c.grow(node_right + PAD, node_bottom)  # the frame

    # Overlay peers: outside the node, joined to its vxlan device.
    px, py = node_right + 60, top
    for ov, vx, vy in vxlan_boxes:
        for peer in ov["peers"]:
            w, h = c.box(px, py, [f"peer {peer['subnet']}", f"underlay {peer['underlay_ip']}",
                                  f"vtep {peer['vtep_mac']}"], COLOURS["peer"], dashed=True)
            c.line(vx, vy, px, py + h / 2, dashed=True)
            py += h + 12

    # Orphans: under the node, in red.
    lines = _orphan_lines(node["orphans"])
    if lines:
        c.box(left, node_bottom + 30, ["orphans", *lines], COLOURS["orphan"], stroke=COLOURS["orphan_line"])
    frame = (f'<rect x="{left - 10:.0f}" y="{top - 20:.0f}" width="{node_right - left + 10:.0f}" '
             f'height="{node_bottom - top + 20:.0f}" rx="10" fill="{COLOURS["node"]}" stroke="#999"/>')
    return c.svg([frame])
