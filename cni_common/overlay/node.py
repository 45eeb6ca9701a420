"""This node's part of the overlay, shared by ADD and the agent: subnet, VXLAN device, liveness, peers.

Both run the same steps so either alone keeps the node correct: the agent keeps it correct over time, and an
ADD without any agent still publishes liveness and reconciles peers once.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Optional, Union

from .. import netlink
from ..errors import CNIError, ErrorCode
from ..log import get_logger
from ..netlink.conn import Conn
from ..record import record
from . import datapath
from .config import VxlanConf
from .peers import Peer, Plan, select
from .vtep import vtep_mac

if TYPE_CHECKING:  # the store's modules load only with a store: urllib.request and ssl cost ~45 ms per call
    from .etcd import EtcdClient
    from .liveness import Liveness
    from .subnets import SubnetStore

log = get_logger(__name__)

IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


@record
class Store:
    """The etcd-backed parts of one overlay network."""

    client: EtcdClient
    subnets: SubnetStore
    liveness: Liveness

    @classmethod
    def open(cls, conf: VxlanConf, timeout: float = 5.0, answer_within: Optional[float] = None) -> Optional[Store]:
        """The store of ``conf`` (None without one); ``answer_within`` bounds the wait for its first answer."""
        if conf.etcd is None:
            return None
        from .etcd import EtcdClient
        from .liveness import Liveness
        from .subnets import SubnetStore

        e = conf.etcd
        client = EtcdClient(e.endpoints, timeout=timeout, answer_within=answer_within, ca_file=e.ca_file,
                            cert_file=e.cert_file, key_file=e.key_file, username=e.username, password=e.password)
        return cls(client, SubnetStore(client, e.prefix), Liveness(client, e.prefix, e.lease_ttl))


@record
class NodeState:
    """What the node set up: its underlay, its subnet, its own peer record and the VXLAN device index."""

    underlay: datapath.Underlay
    subnet: IPNetwork
    me: Peer
    device_index: int
    offline: bool = False  # the store did not answer: the subnet is the one the device already held

    @property
    def mtu(self) -> int:
        return self.underlay.overlay_mtu


def choose_subnet(conf: VxlanConf, store: Optional[Store], underlay: datapath.Underlay,
                  own_ips: set) -> IPNetwork:
    """From the store (reserved atomically), else ``nodeSubnet``, else this node's entry in static ``peers``."""
    if store is not None:
        return store.subnets.reserve(conf.node_name, conf.network, conf.subnet_len, conf.node_subnet)
    if conf.node_subnet is not None:
        return conf.node_subnet
    for peer in conf.peers:
        if peer.underlay_ip in own_ips:
            return peer.subnet
    raise CNIError(ErrorCode.INVALID_CONFIG, "invalid config: nodeSubnet is required without a store",
                   f"or list this node (underlayIP {underlay.ip}) in peers")


def known_subnet(conn: Conn, conf: VxlanConf) -> Optional[IPNetwork]:
    """The subnet this node already holds, read from its VXLAN device (its network address as /32, /128).

    Reservations never expire and only move by this node's own config (``nodeSubnet``, ``network``), so a
    device address that still fits the config is this node's subnet, with or without the store.
    """
    link = netlink.find_link(conn, conf.device)
    if link is None:
        return None
    for addr in netlink.list_addrs(conn, link.index):
        ip = addr.address.ip
        if ip.version != conf.network.version or ip not in conf.network or \
                addr.address.network.prefixlen != ip.max_prefixlen:
            continue
        subnet = ipaddress.ip_network(f"{ip}/{conf.subnet_len}", strict=False)
        if subnet.network_address == ip and conf.node_subnet in (None, subnet):
            return subnet
    return None


def prepare(conn: Conn, conf: VxlanConf, store: Optional[Store], offline_ok: bool = False) -> NodeState:
    """Underlay, subnet and VXLAN device (created once, then reused).

    With ``offline_ok``, a store that does not answer is not an error when the node already holds its subnet
    (:func:`known_subnet`): the state says ``offline`` and the caller skips liveness and peers.
    """
    underlay = datapath.resolve_underlay(conn, conf)
    own_ips = datapath.local_addresses(conn)
    offline = False
    try:
        subnet = choose_subnet(conf, store, underlay, own_ips)
    except CNIError as exc:
        known = known_subnet(conn, conf) if offline_ok and _unreachable(exc) else None
        if known is None:
            raise
        log.warning("%s; going on with the subnet this node holds, %s", exc.msg, known)
        subnet, offline = known, True
    mac = vtep_mac(conf.vni, underlay.ip)
    link = datapath.ensure_device(conn, conf, underlay, subnet, mac)
    me = Peer(underlay_ip=underlay.ip, subnet=subnet, vtep_mac=mac, node=conf.node_name)
    return NodeState(underlay=underlay, subnet=subnet, me=me, device_index=link.index, offline=offline)


def _unreachable(exc: CNIError) -> bool:
    from .etcd import StoreUnreachable  # loaded already: only a store raises it

    return isinstance(exc, StoreUnreachable)



def wanted_peers(conf: VxlanConf, state: NodeState, live: list[Peer]) -> list[Peer]:
    """Live store peers first, then static ones (a subnet listed twice keeps the live record)."""
    return select([*live, *conf.peers], own_subnet=state.subnet, own_ips={state.underlay.ip},
                  network=conf.network)


def sync(conn: Conn, conf: VxlanConf, state: NodeState, live: list[Peer], remove: bool = True) -> Plan:
    """Program exactly the wanted peers on the device (only add or fix entries when ``remove`` is False)."""
    return datapath.reconcile(conn, state.device_index, wanted_peers(conf, state, live), conf.network, remove)
