"""Shared pieces of the link-plugin tests (macvlan, ipvlan, vlan, dummy, tap): configs, a master, the facts of a
container's link that ours and Go's must agree on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.helpers import net
from tests.helpers.netns import Netns

MASTER = "cntmst0"


def conflist(name: str, plugin: dict[str, Any], data_dir: Path | None, *, subnet: str = "10.61.0.0/24",
             version: str = "1.0.0") -> dict[str, Any]:
    """A one-plugin conflist; host-local over `subnet` unless `data_dir` is None (no IPAM: L2 only)."""
    conf = dict(plugin)
    if data_dir is not None:
        conf["ipam"] = {"type": "host-local", "dataDir": str(data_dir), "ranges": [[{"subnet": subnet}]]}
    return {"cniVersion": version, "name": name, "plugins": [conf]}


def make_master(ns: Netns, name: str = MASTER, *, default_route: bool = True) -> None:
    """A veth in `ns` with its peer up beside it (so children have carrier), optionally the default route's link."""
    ns.ip("link", "add", name, "type", "veth", "peer", "name", f"{name}p")
    ns.ip("link", "set", f"{name}p", "up")
    ns.ip("link", "set", name, "up")
    if default_route:
        ns.ip("addr", "add", "10.59.0.1/24", "dev", name)
        ns.ip("route", "add", "default", "via", "10.59.0.254")


def link_facts(ns: Netns, ifname: str = "eth0") -> dict[str, Any]:
    """What a link plugin built, with the random parts (MAC, temporary names, indexes) left out."""
    lk = net.link(ns, ifname)
    assert lk is not None, f"no {ifname} in {ns.name}"
    info = lk.get("linkinfo", {})
    data = dict(info.get("info_data", {}))
    data.pop("bcqueuelen", None)
    data.pop("usedbcqueuelen", None)
    return {"kind": info.get("info_kind"), "data": data, "mtu": lk["mtu"], "up": "UP" in lk["flags"],
            "addresses": net.ip_addresses(ns, ifname), "has_parent": "link_index" in lk or "link" in lk}


def result_shape(result: dict[str, Any]) -> dict[str, Any]:
    """An ADD result without its addresses and MAC: what ours and Go's must agree on."""
    return {"interfaces": [sorted(itf) for itf in result.get("interfaces", [])],
            "ips": [(ip.get("interface"), "gateway" in ip) for ip in result.get("ips", [])],
            "routes": result.get("routes", []), "dns": result.get("dns", {})}


def only_lo(ns: Netns) -> bool:
    return [lk["ifname"] for lk in net.links(ns)] == ["lo"]


def leases(data_dir: Path, network: str) -> list[str]:
    d = data_dir / network
    return sorted(p.name for p in d.iterdir() if p.name[0].isdigit()) if d.is_dir() else []
