"""Read a node's network state, changing nothing: the raw material :mod:`.model` joins into a picture.

Everything comes from the tools an operator would run by hand (``ip -j``, ``bridge -j``, ``iptables-save``,
``nft -j``), run inside the inspected namespace with ``nsenter --net=PATH`` (which enters an existing namespace
and never creates one), and from the files host-local and libcni keep on disk, opened read-only. The JSON forms
of ``ip`` and ``nft`` are stable, documented interfaces; parsing them here costs one exec per question, which is
fine for a command a person runs, and keeps this part away from the plugins' netlink code (no shared state, no
chance of a write). Nothing here is imported on a plugin's call path.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass, field
from typing import Any, Optional

from cni_common.alloc.disk import ip_from_name, parse_owner

NETNS_DIR = "/run/netns"
DEFAULT_DATA_DIR = "/var/lib/cni/networks"
DEFAULT_CACHE_DIR = "/var/lib/cni"
#: nftables tables written by the plugins (portmap per family, bridge's masquerade in inet).
NFT_TABLES = (("ip", "cni_hostport"), ("ip6", "cni_hostport"), ("inet", "cni_plugins_masquerade"),
              ("inet", "cni_plugins_firewall"))
_COMMAND_TIMEOUT = 30.0


def netns_path(netns: str) -> str:
    """A bare name means ``/run/netns/<name>`` (as ``ip netns`` makes them); anything with a slash is a path."""
    return netns if "/" in netns else os.path.join(NETNS_DIR, netns)


@dataclass
class Runner:
    """Runs read-only commands inside one namespace (``path`` None: the current one); keeps what failed."""

    path: Optional[str] = None
    errors: list[str] = field(default_factory=list)

    def text(self, argv: list[str]) -> Optional[str]:
        """stdout of ``argv`` in the namespace, or None (and an entry in ``errors``) when it fails."""
        full = (["nsenter", f"--net={self.path}", *argv]) if self.path else argv
        try:
            proc = subprocess.run(full, capture_output=True, text=True, timeout=_COMMAND_TIMEOUT)
        except (OSError, subprocess.TimeoutExpired) as exc:
            self.errors.append(f"{' '.join(argv)}: {exc}")
            return None
        if proc.returncode != 0:
            self.errors.append(f"{' '.join(argv)}: {proc.stderr.strip() or f'exit status {proc.returncode}'}")
            return None
        return proc.stdout

    def json(self, argv: list[str]) -> Any:
        """The parsed JSON output of ``argv`` ([] when it printed nothing, None when it failed)."""
        out = self.text(argv)
        if out is None:
            return None
        try:
            return json.loads(out) if out.strip() else []
        except ValueError as exc:
            self.errors.append(f"{' '.join(argv)}: not JSON ({exc})")
            return None


@dataclass
class Snapshot:
    """The node's state as read, before any interpretation."""

    netns: Optional[str]
    links: list[dict[str, Any]]
    routes: list[dict[str, Any]]
    nsids: dict[int, str]  # nsid (as the node sees it) -> netns path, for namespaces named in /run/netns
    peers: dict[str, dict[str, Any]]  # host veth name -> {"netns": path, "link": the peer's ip -j entry}
    peer_routes: dict[str, list[dict[str, Any]]]  # container netns path -> its routes
    fdb: dict[str, list[dict[str, Any]]]  # vxlan device -> bridge fdb entries
    neighbours: dict[str, list[dict[str, Any]]]  # vxlan device -> neighbour entries
    iptables: dict[int, str]  # 4/6 -> iptables-save -t nat text
    nft: list[dict[str, Any]]  # rule objects of the plugins' nft tables
    reservations: list[dict[str, Any]]
    cache: list[dict[str, Any]]
    errors: list[str]
    filter_tables: dict[int, str] = field(default_factory=dict)  # 4/6 -> iptables-save -t filter (firewall)
    qdiscs: list[dict[str, Any]] = field(default_factory=list)  # ``tc -j qdisc show``: every link's
    redirects: dict[str, str] = field(default_factory=dict)  # host veth -> the ifb its ingress filter feeds
    #: container links hung off a node link: {"netns": path, "link": its ip -j entry, "master": the node link's name}
    #: or lent by the node (host-device): "master" None and "host_device" the device's name in the node
    children: list[dict[str, Any]] = field(default_factory=list)
    peer_rules: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # container netns path -> ip rules


def _named_namespaces() -> dict[int, str]:
    """inode -> /run/netns path of every named namespace (a stat each; nothing opened for writing)."""
    found: dict[int, str] = {}
    try:
        names = sorted(os.listdir(NETNS_DIR))
    except OSError:
        return found
    for name in names:
        path = os.path.join(NETNS_DIR, name)
        try:
            found.setdefault(os.stat(path).st_ino, path)
        except OSError:
            continue
    return found


def _process_namespaces(skip: set[int]) -> dict[int, str]:
    """inode -> /proc/<pid>/ns/net of namespaces that only processes hold (docker-style, no /run/netns name)."""
    found: dict[int, str] = {}
    for pid in sorted((p for p in os.listdir("/proc") if p.isdigit()), key=int):
        path = f"/proc/{pid}/ns/net"
        try:
            ino = os.stat(path).st_ino
        except OSError:
            continue
        if ino not in skip:
            found.setdefault(ino, path)
    return found


def _find_peers(run: Runner, links: list[dict[str, Any]], nsids: dict[int, str],
                host_ino: int) -> tuple[dict[str, dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """For each veth of the node whose other end is in another namespace: that namespace and the other end.

    The node reports the peer as (link_netnsid, link_index); a named namespace is found from the nsid, the
    rest by looking for the interface whose own peer is this veth in namespaces held by processes.
    """
    veths = [ln for ln in links if container_side(ln)]
    peers: dict[str, dict[str, Any]] = {}
    unresolved = []
    for veth in veths:
        path = nsids.get(veth["link_netnsid"])
        other = _peer_in(_addr_show(Runner(path, run.errors)), veth) if path else None
        if other is None:
            unresolved.append(veth)
        else:
            peers[veth["ifname"]] = {"netns": path, "link": other}
    if unresolved:
        peers.update(_search_process_namespaces(run.path, unresolved, host_ino))
    routes = {path: Runner(path, run.errors).json(["ip", "-j", "route", "show"]) or []
              for path in sorted({p["netns"] for p in peers.values()})}
    return peers, routes


#: Link kinds a plugin makes in a container as a child of a node link (its "master"): drawn joined to that link.
CHILD_KINDS = ("macvlan", "ipvlan", "vlan")


def _find_children(host_path: Optional[str], links: list[dict[str, Any]], host_ino: int,
                   cache: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Container links of :data:`CHILD_KINDS` whose parent is one of the node's links, in the named namespaces
    and those of the libcni cache. The container reports its parent as (link_netnsid, link_index); the index is
    matched against the node's links and, when the node is a named namespace, the nsid must name it (as for
    the veth search). A namespace that vanishes meanwhile is no error worth reporting."""
    by_index = {ln["ifindex"]: ln["ifname"] for ln in links if "ifindex" in ln}
    host_name = os.path.basename(host_path) if host_path and host_path.startswith(NETNS_DIR + "/") else None
    cached = {c["netns"] for c in cache if c.get("netns")}
    paths = set(_named_namespaces().values()) | cached
    found = []
    for path in sorted(paths):
        try:
            if os.stat(path).st_ino == host_ino:
                continue
        except OSError:
            continue
        inside = Runner(path, [])
        for link in _addr_show(inside):
            parent = by_index.get(link.get("link_index", -1))
            if link_kind(link) in CHILD_KINDS and "link_netnsid" in link and parent is not None and \
                    (host_name is None or _names_nsid(inside, link, host_name)):
                found.append({"netns": path, "link": link, "master": parent})
            elif path in cached and lent_name(link):
                found.append({"netns": path, "link": link, "master": None, "host_device": lent_name(link)})
    return found


#: What host-device writes as a lent device's alias: its name in the node, a plain link name.
_LINK_NAME = re.compile(r"^[^\s/:]{1,15}$")


def lent_name(link: dict[str, Any]) -> str:
    """The node name of a device host-device lent (its alias), or "". Nothing ties a lent device to the node in
    the kernel, so only containers of the libcni cache are searched, and only an alias that is a link name
    counts (other plugins write prose there: bandwidth's ifb says "cni-bandwidth ...")."""
    alias = str(link.get("ifalias", ""))
    if link_kind(link) in CHILD_KINDS + ("vrf", "ifb") or alias == link.get("ifname"):
        return ""
    return alias if _LINK_NAME.match(alias) else ""


def _addr_show(inside: Runner) -> list[dict[str, Any]]:
    return inside.json(["ip", "-j", "-d", "addr", "show"]) or []


def _peer_in(links: list[dict[str, Any]], veth: dict[str, Any]) -> Optional[dict[str, Any]]:
    """The interface among ``links`` (another namespace's) that is the other end of the node's ``veth``."""
    for other in links:
        if other.get("ifindex") == veth.get("link_index") and other.get("link_index") == veth["ifindex"]:
            return other
    return None


def _search_process_namespaces(host_path: Optional[str], veths: list[dict[str, Any]],
                               host_ino: int) -> dict[str, dict[str, Any]]:
    """Peers of ``veths`` in namespaces that only processes hold (Docker's, say), found by interface indexes.

    Indexes alone could match a pair between two other namespaces on a machine that runs several "nodes" in
    namespaces; when the node is a named namespace, the candidate must also name it as its peer's namespace.
    A process that ends meanwhile is no error worth reporting: those failures are dropped.
    """
    host_name = os.path.basename(host_path) if host_path and host_path.startswith(NETNS_DIR + "/") else None
    found: dict[str, dict[str, Any]] = {}
    for path in _process_namespaces({host_ino, *_named_namespaces()}).values():
        inside = Runner(path, [])
        links = _addr_show(inside)
        for veth in [v for v in veths if v["ifname"] not in found]:
            other = _peer_in(links, veth)
            if other is not None and (host_name is None or _names_nsid(inside, other, host_name)):
                found[veth["ifname"]] = {"netns": path, "link": other}
        if len(found) == len(veths):
            break
    return found


def _names_nsid(inside: Runner, link: dict[str, Any], name: str) -> bool:
    """Whether, seen from ``inside``, the namespace ``link``'s peer lives in is the one named ``name``."""
    ids = inside.json(["ip", "-j", "netns", "list-id"]) or []
    return any(e.get("nsid") == link.get("link_netnsid") and e.get("name") == name for e in ids)


def container_side(link: dict[str, Any]) -> bool:
    """Whether ``link`` is a node veth leading to another namespace that may be a container's. A veth holding a
    subnet's address on this side is the node's uplink (as in a lab whose "wire" is a veth), not a container's:
    the bridge plugin never addresses the node's end, and ptp puts only the gateway there, as a host address
    (/32, /128)."""
    return link_kind(link) == "veth" and "link_netnsid" in link and \
        all(a.get("scope") == "link" or a.get("prefixlen") in (32, 128) for a in link.get("addr_info", []))


def link_kind(link: dict[str, Any]) -> str:
    """``bridge``, ``veth``, ``vxlan``... from ``ip -d``'s linkinfo ("" for a plain device)."""
    return str(link.get("linkinfo", {}).get("info_kind", ""))


def _read_nofollow(path: str) -> Optional[bytes]:
    """A small regular file's bytes, never through a symlink we did not expect; None when unreadable."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return os.read(fd, 1 << 20)
    except OSError:
        return None
    finally:
        os.close(fd)


def read_reservations(data_dirs: list[str]) -> list[dict[str, Any]]:
    """host-local's reservations under each data dir: one file per IP holding ``<container id>\\r\\n<ifname>``."""
    out = []
    for data_dir in data_dirs:
        try:
            networks = sorted(e.name for e in os.scandir(data_dir) if e.is_dir(follow_symlinks=False))
        except OSError:
            continue
        for network in networks:
            directory = os.path.join(data_dir, network)
            try:
                names = sorted(os.listdir(directory))
            except OSError:
                continue
            for name in names:
                ip = ip_from_name(name)
                data = _read_nofollow(os.path.join(directory, name)) if ip is not None else None
                if ip is None or data is None:
                    continue
                owner = parse_owner(data)
                out.append({"network": network, "ip": str(ip), "container_id": owner.container_id,
                            "ifname": owner.ifname, "data_dir": data_dir})
    return out


def read_cache(cache_dir: str) -> list[dict[str, Any]]:
    """libcni's result cache (``<cacheDir>/results/<net>-<id>-<ifname>``, JSON ``kind: cniCacheV1``)."""
    results = os.path.join(cache_dir, "results")
    directory = results if os.path.isdir(results) else cache_dir
    out: list[dict[str, Any]] = []
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return out
    for name in names:
        data = _read_nofollow(os.path.join(directory, name))
        try:
            entry = json.loads(data or b"")
        except ValueError:
            continue
        if not isinstance(entry, dict) or "containerId" not in entry:
            continue
        result = entry.get("result") or {}
        interfaces = result.get("interfaces") or []
        sandboxes = [i.get("sandbox") for i in interfaces if i.get("sandbox")]
        out.append({
            "file": name,
            "network": entry.get("networkName"),
            "container_id": entry.get("containerId"),
            "ifname": entry.get("ifName"),
            "netns": entry.get("netns") or (sandboxes[0] if sandboxes else None),
            "ips": [ip["address"].split("/")[0] for ip in result.get("ips") or [] if "address" in ip],
            "port_mappings": (entry.get("capabilityArgs") or {}).get("portMappings") or [],
        })
    return out


def read_nft(run: Runner) -> list[dict[str, Any]]:
    """Rules of the plugins' own nft tables (the iptables-nft tables are read through iptables-save)."""
    listed = run.json(["nft", "-j", "list", "tables"])
    if not listed:
        return []
    present = {(o["table"]["family"], o["table"]["name"]) for o in listed.get("nftables", []) if "table" in o}
    rules = []
    for family, table in NFT_TABLES:
        if (family, table) in present:
            objects = run.json(["nft", "-j", "list", "table", family, table]) or {}
            rules += [o["rule"] for o in objects.get("nftables", []) if "rule" in o]
    return rules


def read_shaping(run: Runner, links: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Every qdisc of the node, and for each container veth with an ingress qdisc the device its ingress filter
    redirects to (the bandwidth plugin's ifb: the first mirred action's ``to_dev``)."""
    qdiscs = run.json(["tc", "-j", "qdisc", "show"]) or []
    hooked = {q.get("dev") for q in qdiscs if q.get("kind") in ("ingress", "clsact")}
    redirects = {}
    for link in links:
        if link["ifname"] not in hooked or not container_side(link):
            continue
        for flt in run.json(["tc", "-j", "filter", "show", "dev", link["ifname"], "ingress"]) or []:
            action = next((a for a in flt.get("options", {}).get("actions", []) if a.get("kind") == "mirred"), None)
            if action and action.get("to_dev"):
                redirects[link["ifname"]] = action["to_dev"]
                break
    return qdiscs, redirects


def collect(netns: Optional[str], data_dirs: list[str], cache_dir: str) -> Snapshot:
    """Read everything :mod:`.model` needs from the namespace ``netns`` (None: the one we run in)."""
    path = netns_path(netns) if netns else None
    try:
        host_ino = os.stat(path or "/proc/self/ns/net").st_ino
    except OSError as exc:
        raise OSError(f"network namespace {path}: {exc.strerror}") from exc
    run = Runner(path)
    links = run.json(["ip", "-j", "-d", "addr", "show"]) or []
    routes = run.json(["ip", "-j", "route", "show"]) or []
    routes6 = run.json(["ip", "-j", "-6", "route", "show"]) or []
    nsids = {e["nsid"]: netns_path(e["name"]) for e in run.json(["ip", "-j", "netns", "list-id"]) or []
             if "name" in e}
    peers, peer_routes = _find_peers(run, links, nsids, host_ino)
    cache = read_cache(cache_dir)
    children = _find_children(path, links, host_ino, cache)
    lent_veths = {(p["netns"], p["link"]["ifname"]) for p in peers.values()}  # a lent veth: drawn as a peer
    children = [c for c in children if not (c["master"] is None and (c["netns"], c["link"]["ifname"]) in lent_veths)]
    for child in children:
        if child["netns"] not in peer_routes:
            peer_routes[child["netns"]] = Runner(child["netns"], run.errors).json(["ip", "-j", "route", "show"]) or []
    # source rules (sbr) of the containers; the kernel's three default ones are left out
    peer_rules = {ns: [r for r in Runner(ns, run.errors).json(["ip", "-j", "rule", "show"]) or []
                       if r.get("table") not in ("local", "main", "default")] for ns in sorted(peer_routes)}
    fdb: dict[str, list[dict[str, Any]]] = {}
    neighbours: dict[str, list[dict[str, Any]]] = {}
    for link in links:
        if link_kind(link) == "vxlan":
            fdb[link["ifname"]] = run.json(["bridge", "-j", "fdb", "show", "dev", link["ifname"]]) or []
            neighbours[link["ifname"]] = run.json(["ip", "-j", "neigh", "show", "dev", link["ifname"]]) or []
    iptables = {4: run.text(["iptables-save", "-t", "nat"]) or "", 6: run.text(["ip6tables-save", "-t", "nat"]) or ""}
    qdiscs, redirects = read_shaping(run, links)
    return Snapshot(netns=path, links=links, routes=routes + [r for r in routes6 if r.get("dst") != "fe80::/64"],
                    nsids=nsids, peers=peers, peer_routes=peer_routes, fdb=fdb, neighbours=neighbours,
                    iptables=iptables, nft=read_nft(run), reservations=read_reservations(data_dirs),
                    cache=cache, errors=run.errors,
                    filter_tables={4: run.text(["iptables-save", "-t", "filter"]) or "",
                                   6: run.text(["ip6tables-save", "-t", "filter"]) or ""},
                    qdiscs=qdiscs, redirects=redirects, children=children,
                    peer_rules=peer_rules)
