"""One IP per range set, round-robin, the way upstream's allocator.go hands them out.

The walk starts just after ``last_reserved_ip.<N>`` (when that IP is still in the set), crosses into the next
range of the set, wraps around and ends where it began; gateways are skipped. A partial ADD is rolled back
IP by IP, so it never releases reservations the attachment held before this call (upstream releases by ID and
would drop those too).
"""

from __future__ import annotations

import ipaddress

from ..errors import CNIError, ErrorCode, PluginCode
from ..types import IPAddress, IPConfig
from .config import Range, RangeSet

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~4 ms per plugin process)
if TYPE_CHECKING:
    from typing import Iterator, Optional, Sequence

    from .store import Store


class Allocator:
    """Allocates from one range set (index ``range_id``) through a store whose lock the caller holds."""

    def __init__(self, range_set: RangeSet, store: Store, range_id: int) -> None:
        self.range_set = range_set
        self.store = store
        self.range_id = range_id

    def walk(self) -> Iterator[tuple[IPAddress, Range]]:
        """Every allocatable IP once, in round-robin order, with the range it belongs to."""
        ranges = self.range_set.ranges
        last = self.store.last_reserved_ip(self.range_id)
        first = next((i for i, r in enumerate(ranges) if last is not None and r.contains(last)), None)
        if last is None or first is None:
            segments = [(r, int(r.start), int(r.end)) for r in ranges]
        else:
            head = ranges[first]
            order = list(ranges[first + 1:]) + list(ranges[:first])
            segments = [(head, int(last) + 1, int(head.end))]
            segments += [(r, int(r.start), int(r.end)) for r in order]
            segments.append((head, int(head.start), int(last)))
        for rng, lo, hi in segments:
            make = type(rng.start)
            for value in range(lo, hi + 1):
                ip = make(value)
                if ip != rng.gateway:
                    yield ip, rng

    def get(self, container_id: str, ifname: str, requested: Optional[IPAddress] = None) -> IPConfig:
        """Reserve ``requested`` (when given) or the next free IP; raise a CNIError naming the problem."""
        if requested is not None:
            return self._get_requested(container_id, ifname, requested)
        for held in self.store.get_by_id(container_id, ifname):
            if self.range_set.contains(held):
                raise CNIError(PluginCode.ADDRESS_UNAVAILABLE,
                               f"{held} has been allocated to {container_id}, duplicate allocation is not allowed",
                               f"interface {ifname!r} already holds an IP of range set {self.range_id}")
        for ip, rng in self.walk():
            if self.store.reserve(container_id, ifname, ip, self.range_id):
                return _ip_config(ip, rng)
        raise CNIError(PluginCode.IPAM_EXHAUSTED,
                       f"no IP addresses available in range set {self.range_id}: {self.range_set}",
                       "release stale reservations (DEL or GC) or widen the range")

    def _get_requested(self, container_id: str, ifname: str, ip: IPAddress) -> IPConfig:
        rng = self.range_set.range_for(ip)
        if rng is None:
            raise CNIError(ErrorCode.INVALID_CONFIG, f"requested IP {ip} is not in range set {self.range_set}")
        if ip == rng.gateway:
            raise CNIError(PluginCode.ADDRESS_UNAVAILABLE, f"requested IP {ip} is the gateway of range {rng}")
        if not self.store.reserve(container_id, ifname, ip, self.range_id):
            raise CNIError(PluginCode.ADDRESS_UNAVAILABLE,
                           f"requested IP address {ip} is not available in range set {self.range_set}",
                           "it is reserved by another attachment")
        return _ip_config(ip, rng)


def _ip_config(ip: IPAddress, rng: Range) -> IPConfig:
    """The address with its range's prefix length, built from the integer and the prefix length: formatting it
    as text only for ``ip_interface`` to parse it back cost a dozen ``ipaddress`` calls per ADD."""
    interface = ipaddress.IPv4Interface if ip.version == 4 else ipaddress.IPv6Interface
    return IPConfig(address=interface((int(ip), rng.subnet.prefixlen)), gateway=rng.gateway)


def allocate(range_sets: Sequence[RangeSet], store: Store, container_id: str, ifname: str,
             requested: Sequence[IPAddress] = ()) -> list[IPConfig]:
    """One IP per range set, honouring requested IPs; all-or-nothing. The caller holds the store's lock.

    Each requested IP goes to the first range set containing it (one per set). A requested IP that no set
    contains, or a second one for the same set, is refused before anything is reserved.
    """
    pending = list(requested)
    per_set: list[Optional[IPAddress]] = []
    for rs in range_sets:
        pick = next((ip for ip in pending if rs.contains(ip)), None)
        if pick is not None:
            pending.remove(pick)
        per_set.append(pick)
    if pending:
        sets = "; ".join(str(rs) for rs in range_sets)
        unused = ", ".join(str(ip) for ip in pending)
        raise CNIError(ErrorCode.INVALID_CONFIG, f"failed to allocate all requested IPs: {unused}",
                       f"each needs a range set of its own that contains it; range sets: {sets}")
    done: list[IPConfig] = []
    try:
        for idx, (rs, want) in enumerate(zip(range_sets, per_set, strict=True)):
            try:
                done.append(Allocator(rs, store, idx).get(container_id, ifname, want))
            except CNIError as exc:
                raise CNIError(exc.code, f"failed to allocate for range {idx}: {exc.msg}", exc.details) from exc
    except BaseException:
        for cfg in done:
            store.release_ip(cfg.address.ip)
        raise
    return done
