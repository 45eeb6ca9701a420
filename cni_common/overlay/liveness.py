"""A node's liveness record: ``<prefix>/alive/<node>`` = ``{underlayIP, subnet, vtepMAC}`` on a lease.

Liveness is separate from the subnet reservation (:mod:`.subnets`): the reservation is permanent, the record
lives only while someone renews its lease (the agent, or each ADD). When it expires, etcd deletes the key and
every watching agent drops the node's FDB, neighbour and route entries.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Optional

from ..log import get_logger
from .etcd import EtcdClient
from .peers import Peer
from .vtep import normalize_mac

log = get_logger(__name__)


def alive_prefix(prefix: str) -> str:
    return f"{prefix.rstrip('/')}/alive/"


def encode(peer: Peer) -> str:
    return json.dumps({"node": peer.node, "underlayIP": str(peer.underlay_ip), "subnet": str(peer.subnet),
                       "vtepMAC": peer.vtep_mac}, sort_keys=True)


def decode(key: str, value: bytes) -> Optional[Peer]:
    """The peer a record describes; None (logged) for a malformed one, which must not stop the others."""
    try:
        d = json.loads(value)
        return Peer(underlay_ip=ipaddress.ip_address(d["underlayIP"]), subnet=ipaddress.ip_network(d["subnet"]),
                    vtep_mac=normalize_mac(d["vtepMAC"]), node=str(d.get("node") or key.rsplit("/", 1)[-1]))
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring malformed liveness record %s: %s", key, exc)
        return None


class Liveness:
    """Publishes this node's record and lists the live ones."""

    def __init__(self, client: EtcdClient, prefix: str, ttl: int) -> None:
        self.client = client
        self.prefix = alive_prefix(prefix)
        self.ttl = ttl

    def key(self, node: str) -> str:
        return self.prefix + node

    def publish(self, me: Peer) -> int:
        """Make sure the record is there and its lease renewed; returns the lease ID.

        An existing record with the same content keeps its lease (one keep-alive); otherwise a new lease is
        granted and the record written on it (the old lease, if any, just runs out).
        """
        value = encode(me)
        kv = self.client.get(self.key(me.node))
        if kv is not None and kv.lease and kv.value.decode(errors="replace") == value:
            if self.client.keepalive(kv.lease) > 0:
                return kv.lease
        lease = self.client.grant(self.ttl)
        self.client.put(self.key(me.node), value, lease)
        log.info("published liveness of node %s (lease %x, ttl %ss)", me.node, lease, self.ttl)
        return lease

    def renew(self, lease: int, me: Peer) -> bool:
        """One keep-alive, then a check that our record is still written on that lease.

        False (the caller publishes again) when the lease is gone (expired while etcd was unreachable) or the
        record now sits on another lease: an ADD on this node that published while the agent did, each with a
        lease of its own, may have written last. Its lease is renewed by nobody, so the record would expire
        and every other node would drop this one, while the agent kept renewing a lease that holds nothing.
        """
        if self.client.keepalive(lease) <= 0:
            return False
        kv = self.client.get(self.key(me.node))
        return kv is not None and kv.lease == lease and kv.value.decode(errors="replace") == encode(me)

    def live_peers(self) -> tuple[list[Peer], int]:
        """The nodes whose record exists now, and the revision of that read."""
        kvs, revision = self.client.get_prefix(self.prefix)
        peers = [p for p in (decode(kv.key, kv.value) for kv in kvs) if p is not None]
        return peers, revision
