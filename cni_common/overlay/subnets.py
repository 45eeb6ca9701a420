"""Per-node subnets of the pod network: the pure search for a free one, and its reservation in etcd.

Layout under the store prefix (values are JSON):

- ``<prefix>/subnets/<a.b.c.d-len>`` -> ``{"node": name}``: who owns a subnet. Written only inside a transaction
  that first checks the key is absent, so two nodes can never both get it, however close their starts are.
- ``<prefix>/nodes/<name>`` -> ``{"subnet": "a.b.c.d/len"}``: the node's reservation, found again on restart.

Both keys are written in the same transaction, and neither has a lease: a reservation outlives the node's
liveness (a rebooted node gets its subnet back). Freeing it is an explicit act (:func:`release`).
"""

from __future__ import annotations

import ipaddress
import json
from typing import Iterator, Mapping, Optional, Union

from ..errors import CNIError, ErrorCode
from ..log import get_logger
from ..types import subnet_of
from .etcd import EtcdClient, KeyValue, cmp_absent, cmp_mod_revision, op_delete, op_put

log = get_logger(__name__)

IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

#: Transaction attempts before giving up; each lost race means another node took a subnet, so with N nodes
#: starting together a node needs at most N attempts.
MAX_ATTEMPTS = 64


def subnet_key_part(subnet: IPNetwork) -> str:
    """``10.244.1.0/24`` -> ``10.244.1.0-24`` (no ``/`` inside a key segment)."""
    return f"{subnet.network_address.compressed}-{subnet.prefixlen}"


def candidates(network: IPNetwork, subnet_len: int) -> Iterator[IPNetwork]:
    """The subnets of ``network`` of length ``subnet_len``, lowest first (lazy: a /8 of /24s is 65536)."""
    step = 1 << (network.max_prefixlen - subnet_len)
    base = int(network.network_address)
    cls = ipaddress.IPv4Network if network.version == 4 else ipaddress.IPv6Network
    for i in range(1 << (subnet_len - network.prefixlen)):
        yield cls((base + i * step, subnet_len))


def fits(subnet: IPNetwork, network: IPNetwork, subnet_len: int) -> bool:
    """Whether ``subnet`` is a valid node subnet of ``network`` (same family, inside it, the right length)."""
    return subnet.version == network.version and subnet.prefixlen == subnet_len and subnet_of(subnet, network)


def first_free(network: IPNetwork, subnet_len: int, taken: Mapping[IPNetwork, str]) -> Optional[IPNetwork]:
    """The lowest subnet that nobody owns; None when the network is full."""
    for subnet in candidates(network, subnet_len):
        if subnet not in taken:
            return subnet
    return None


class SubnetStore:
    """Reservations of one overlay network in etcd (all keys under ``prefix``)."""

    def __init__(self, client: EtcdClient, prefix: str) -> None:
        self.client = client
        self.prefix = prefix.rstrip("/")

    def subnet_key(self, subnet: IPNetwork) -> str:
        return f"{self.prefix}/subnets/{subnet_key_part(subnet)}"

    def node_key(self, node: str) -> str:
        return f"{self.prefix}/nodes/{node}"

    def owners(self) -> dict[IPNetwork, str]:
        """Every reserved subnet and its node."""
        kvs, _ = self.client.get_prefix(f"{self.prefix}/subnets/")
        owners: dict[IPNetwork, str] = {}
        for kv in kvs:
            part = kv.key.rsplit("/", 1)[-1]
            try:
                subnet = ipaddress.ip_network(part.replace("-", "/"))
                owners[subnet] = str(json.loads(kv.value)["node"])
            except (ValueError, KeyError, TypeError):
                log.warning("ignoring malformed subnet reservation %s", kv.key)
        return owners

    def owner(self, subnet: IPNetwork) -> Optional[str]:
        """The node holding ``subnet``, or None."""
        kv = self.client.get(self.subnet_key(subnet))
        try:
            return str(json.loads(kv.value)["node"]) if kv is not None else None
        except (ValueError, KeyError, TypeError):
            return None

    def node_subnet(self, node: str) -> tuple[Optional[IPNetwork], Optional[KeyValue]]:
        """The subnet ``node`` holds (or None) and its key, for a compare-and-swap."""
        kv = self.client.get(self.node_key(node))
        if kv is None:
            return None, None
        try:
            return ipaddress.ip_network(json.loads(kv.value)["subnet"]), kv
        except (ValueError, KeyError, TypeError):
            log.warning("malformed reservation of node %s: %r", node, kv.value)
            return None, kv

    def reserve(self, node: str, network: IPNetwork, subnet_len: int,
                wanted: Optional[IPNetwork] = None) -> IPNetwork:
        """Reserve (or find again) the subnet of ``node``; ``wanted`` pins which one.

        Each attempt reads, picks, and commits in one transaction that holds only if nothing it read has
        changed (the node key's revision, the chosen subnet key's absence). A lost race just re-reads.
        """
        for _ in range(MAX_ATTEMPTS):
            current, node_kv = self.node_subnet(node)
            if current is not None and fits(current, network, subnet_len) and wanted in (None, current):
                owner = self.owner(current)
                if owner == node:  # the common case (a restart, any later ADD): two reads, no listing
                    return current
                if owner is None:  # the owner key was removed by hand: take it back
                    if self._commit(node, current, node_kv, None):
                        return current
                    continue
            owners = self.owners()
            choice = wanted or self._own_or_free(node, network, subnet_len, owners)
            if owners.get(choice, node) != node:
                raise CNIError(ErrorCode.INVALID_CONFIG,
                               f"invalid config: nodeSubnet {choice} is reserved by node {owners[choice]!r}")
            previous = current if current is not None and current != choice and owners.get(current) == node \
                else None
            if self._commit(node, choice, node_kv, previous, choice in owners):
                log.info("node %s reserved subnet %s", node, choice)
                return choice
        raise CNIError(ErrorCode.TRY_AGAIN_LATER, f"could not reserve a subnet of {network} for node {node!r}",
                       f"{MAX_ATTEMPTS} transactions lost to concurrent writers")

    def _own_or_free(self, node: str, network: IPNetwork, subnet_len: int,
                     owners: Mapping[IPNetwork, str]) -> IPNetwork:
        """A subnet already owned by ``node`` (its node key was lost), else the first free one."""
        for subnet, owner in sorted(owners.items(), key=lambda item: int(item[0].network_address)):
            if owner == node and fits(subnet, network, subnet_len):
                return subnet
        free = first_free(network, subnet_len, owners)
        if free is None:
            raise CNIError(ErrorCode.TRY_AGAIN_LATER, f"no free /{subnet_len} subnet left in network {network}",
                           f"{len(owners)} subnets are reserved")
        return free

    def _commit(self, node: str, subnet: IPNetwork, node_kv: Optional[KeyValue], previous: Optional[IPNetwork],
                already_ours: bool = False) -> bool:
        """Write both keys atomically, if the node key and the subnet key are as we read them."""
        node_key, subnet_key = self.node_key(node), self.subnet_key(subnet)
        compare = [cmp_mod_revision(node_key, node_kv.mod_revision) if node_kv else cmp_absent(node_key)]
        if not already_ours:
            compare.append(cmp_absent(subnet_key))
        success = [op_put(subnet_key, json.dumps({"node": node})),
                   op_put(node_key, json.dumps({"subnet": str(subnet)}))]
        if previous is not None:
            success.append(op_delete(self.subnet_key(previous)))
        return self.client.txn(compare, success)

    def release(self, node: str) -> Optional[IPNetwork]:
        """Give the node's subnet back (for decommissioning); returns what was released."""
        current, node_kv = self.node_subnet(node)
        if node_kv is None:
            return None
        success = [op_delete(self.node_key(node))]
        if current is not None:
            success.append(op_delete(self.subnet_key(current)))
        self.client.txn([cmp_mod_revision(self.node_key(node), node_kv.mod_revision)], success)
        return current
