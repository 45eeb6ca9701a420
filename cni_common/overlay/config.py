"""The ``vxlan`` plugin's config, parsed once and validated, every error a code 7 naming the key.

The same parse serves the plugin (one network config from stdin) and the agent (the ``vxlan`` entry of a
conflist file), so both agree on defaults: the VNI, port, bridge and device names, the store prefix.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from typing import Any, Mapping, Optional, Union

from ..config import check_netconf_types, get_bool, get_dict, get_int, get_list, get_str
from ..errors import CNIError, ErrorCode
from ..record import field, record
from ..types import subnet_of
from .peers import Peer
from .vtep import normalize_mac, vtep_mac

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

DEFAULT_VNI = 1
DEFAULT_PORT = 4789
DEFAULT_LEASE_TTL = 60
MIN_LEASE_TTL = 5
#: Encapsulation overhead: outer IP (20 / 40) + UDP 8 + VXLAN 8 + inner Ethernet 14.
OVERHEAD = {4: 50, 6: 70}


def _bad(key: str, why: str, value: Any = None) -> CNIError:
    details = "" if value is None else f"got {value!r}"
    return CNIError(ErrorCode.INVALID_CONFIG, f"invalid config: {key} {why}", details)


@record(frozen=True)
class EtcdConf:
    endpoints: tuple[str, ...]
    prefix: str
    lease_ttl: int
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    username: str = ""
    password: str = ""


@record(frozen=True)
class VxlanConf:
    """Everything the plugin and the agent read from a ``type: vxlan`` config."""

    name: str
    cni_version: str
    network: IPNetwork
    subnet_len: int
    vni: int = DEFAULT_VNI
    port: int = DEFAULT_PORT
    node_subnet: Optional[IPNetwork] = None
    node_name: str = ""
    underlay_interface: str = ""
    underlay_ip: Optional[IPAddress] = None
    mtu: int = 0
    bridge: str = ""
    ip_masq: bool = False
    ipam: dict[str, Any] = field(default_factory=dict)
    peers: tuple[Peer, ...] = ()
    etcd: Optional[EtcdConf] = None

    @property
    def device(self) -> str:
        """The VXLAN device: one per VNI on a node, shared by every network using that VNI."""
        return f"cnivx.{self.vni}"


def _ip(d: Mapping[str, Any], key: str, where: str = "") -> Optional[IPAddress]:
    raw = get_str(d, key, where=where)
    if not raw:
        return None
    try:
        return ipaddress.ip_address(raw)
    except ValueError:
        raise _bad(f"{where}.{key}" if where else key, "must be an IP address", raw) from None


def _net(d: Mapping[str, Any], key: str, where: str = "") -> Optional[IPNetwork]:
    raw = get_str(d, key, where=where)
    label = f"{where}.{key}" if where else key
    if not raw:
        return None
    try:
        return ipaddress.ip_network(raw)
    except ValueError:
        raise _bad(label, "must be a CIDR with no host bits set (e.g. 10.244.0.0/16)", raw) from None


def _check_ifname(key: str, value: str) -> str:
    if value and (len(value.encode()) > 15 or "/" in value or any(c.isspace() for c in value)):
        raise _bad(key, "is not a valid interface name", value)
    return value


def _subnet_len(conf: Mapping[str, Any], network: IPNetwork) -> int:
    default = 24 if network.version == 4 else 64
    subnet_len = get_int(conf, "subnetLen", default)
    longest = network.max_prefixlen - 2  # room for the gateway and at least one container
    if not network.prefixlen < subnet_len <= longest:
        raise _bad("subnetLen", f"must be longer than the network's /{network.prefixlen} and at most {longest}",
                   subnet_len)
    return subnet_len


def _node_subnet(conf: Mapping[str, Any], network: IPNetwork, subnet_len: int) -> Optional[IPNetwork]:
    subnet = _net(conf, "nodeSubnet")
    if subnet is not None and (subnet.version != network.version or subnet.prefixlen != subnet_len
                               or not subnet_of(subnet, network)):
        raise _bad("nodeSubnet", f"must be a /{subnet_len} inside network {network}", str(subnet))
    return subnet


def _peers(conf: Mapping[str, Any], vni: int, network: IPNetwork) -> tuple[Peer, ...]:
    peers = []
    for i, entry in enumerate(get_list(conf, "peers")):
        where = f"peers[{i}]"
        if not isinstance(entry, dict):
            raise _bad(where, "must be an object {underlayIP, subnet, vtepMAC?}", entry)
        underlay = _ip(entry, "underlayIP", where)
        subnet = _net(entry, "subnet", where)
        if underlay is None or subnet is None:
            raise _bad(where, "needs both underlayIP and subnet", entry)
        if subnet.version != network.version or not subnet_of(subnet, network):
            raise _bad(f"{where}.subnet", f"must be inside network {network}", str(subnet))
        raw_mac = get_str(entry, "vtepMAC", where=where)
        try:
            mac = normalize_mac(raw_mac) if raw_mac else vtep_mac(vni, underlay)
        except ValueError:
            raise _bad(f"{where}.vtepMAC", "must be a unicast MAC address", raw_mac) from None
        peers.append(Peer(underlay_ip=underlay, subnet=subnet, vtep_mac=mac,
                          node=get_str(entry, "nodeName", where=where)))
    return tuple(peers)


def _etcd(conf: Mapping[str, Any], name: str) -> Optional[EtcdConf]:
    store = get_dict(conf, "store")
    if not store:
        return None
    unknown = sorted(k for k in store if k.lower() != "etcd")
    if unknown:
        raise _bad("store", "supports only the \"etcd\" backend", unknown)
    etcd = get_dict(store, "etcd", where="store")
    endpoints = get_list(etcd, "endpoints", where="store.etcd")
    if not endpoints or not all(isinstance(e, str) and e for e in endpoints):
        raise _bad("store.etcd.endpoints", "must be a non-empty list of URLs", endpoints)
    from .etcd import validate_endpoint

    checked = tuple(validate_endpoint(e) for e in endpoints)
    prefix = get_str(etcd, "prefix", f"/cni-vxlan/{name}", where="store.etcd")
    if not prefix.startswith("/"):
        raise _bad("store.etcd.prefix", "must start with '/'", prefix)
    ttl = get_int(etcd, "leaseTTL", DEFAULT_LEASE_TTL, where="store.etcd")
    if ttl < MIN_LEASE_TTL:
        raise _bad("store.etcd.leaseTTL", f"must be at least {MIN_LEASE_TTL} seconds", ttl)
    username, password = _credentials(etcd)
    return EtcdConf(endpoints=checked, prefix=prefix.rstrip("/"), lease_ttl=ttl,
                    ca_file=get_str(etcd, "caFile", where="store.etcd"),
                    cert_file=get_str(etcd, "certFile", where="store.etcd"),
                    key_file=get_str(etcd, "keyFile", where="store.etcd"), username=username, password=password)


def _credentials(etcd: Mapping[str, Any]) -> tuple[str, str]:
    """``username`` with ``password`` or ``passwordFile`` (a root-only file keeps it out of the conflist)."""
    username = get_str(etcd, "username", where="store.etcd")
    password = get_str(etcd, "password", where="store.etcd")
    password_file = get_str(etcd, "passwordFile", where="store.etcd")
    if password and password_file:
        raise _bad("store.etcd.password", "and store.etcd.passwordFile are exclusive")
    if password_file:
        try:
            with open(password_file, encoding="utf-8") as f:
                password = f.read().strip()
        except OSError as exc:
            raise _bad("store.etcd.passwordFile", f"cannot be read: {exc.strerror}", password_file) from None
    if bool(username) != bool(password):
        raise _bad("store.etcd.username", "and a password (password or passwordFile) go together")
    return username, password


def parse(conf: Mapping[str, Any]) -> VxlanConf:
    """Validate a ``type: vxlan`` network config (as read from stdin, or one conflist entry)."""
    check_netconf_types(conf)
    network = _net(conf, "network")
    if network is None:
        raise _bad("network", "is required (the cluster's pod CIDR, e.g. 10.244.0.0/16)")
    subnet_len = _subnet_len(conf, network)
    vni = get_int(conf, "vni", DEFAULT_VNI)
    if not 1 <= vni <= 0xFFFFFF:
        raise _bad("vni", "must be in 1..16777215", vni)
    port = get_int(conf, "port", DEFAULT_PORT)
    if not 1 <= port <= 65535:
        raise _bad("port", "must be in 1..65535", port)
    mtu = get_int(conf, "mtu", 0)
    if mtu and not 576 <= mtu <= 65535:
        raise _bad("mtu", "must be in 576..65535", mtu)
    node_name = get_str(conf, "nodeName") or socket.gethostname()
    if "/" in node_name or not node_name.strip():
        raise _bad("nodeName", "must be a non-empty name without '/'", node_name)
    name = get_str(conf, "name")
    return VxlanConf(
        name=name, cni_version=get_str(conf, "cniVersion"), network=network, subnet_len=subnet_len, vni=vni,
        port=port, node_subnet=_node_subnet(conf, network, subnet_len), node_name=node_name,
        underlay_interface=_check_ifname("underlayInterface", get_str(conf, "underlayInterface")),
        underlay_ip=_ip(conf, "underlayIP"), mtu=mtu,
        bridge=_check_ifname("bridge", get_str(conf, "bridge")) or f"cnivxbr{vni}",
        ip_masq=get_bool(conf, "ipMasq"), ipam=get_dict(conf, "ipam"), peers=_peers(conf, vni, network),
        etcd=_etcd(conf, name))


def load_file(path: str) -> tuple[dict[str, Any], VxlanConf]:
    """The agent's ``--conf FILE``: a conflist (its ``vxlan`` entry, inheriting name and cniVersion) or one
    config. Returns the effective single config and its parse."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except OSError as exc:
        raise CNIError(ErrorCode.IO_FAILURE, f"cannot read {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise CNIError(ErrorCode.DECODING_FAILURE, f"{path} is not valid JSON", str(exc)) from exc
    if not isinstance(doc, dict):
        raise CNIError(ErrorCode.DECODING_FAILURE, f"{path} must hold a JSON object")
    if isinstance(doc.get("plugins"), list):
        entries = [p for p in doc["plugins"] if isinstance(p, dict) and p.get("type") == "vxlan"]
        if not entries:
            raise CNIError(ErrorCode.INVALID_CONFIG, f"{path}: no plugin of type \"vxlan\" in the conflist")
        single = dict(entries[0])
        single.setdefault("name", doc.get("name", ""))
        single.setdefault("cniVersion", doc.get("cniVersion", ""))
    elif doc.get("type") == "vxlan":
        single = doc
    else:
        raise CNIError(ErrorCode.INVALID_CONFIG, f"{path}: not a vxlan config (type is {doc.get('type')!r})")
    return single, parse(single)
