"""What the allocator needs from persistent state, so it can be unit-tested against memory.

Mirrors upstream's ``backend.Store`` interface, with two additions beyond it: ``reservations()`` (for GC and
STATUS) and ``release_ip()`` (so a failed ADD rolls back only what it reserved itself).
"""

from __future__ import annotations

from ..record import record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~4 ms per plugin process)
if TYPE_CHECKING:
    from contextlib import AbstractContextManager
    from typing import Iterable, Optional, Protocol

    from ..types import IPAddress
else:
    Protocol = object  # Store is a protocol for type checkers only


@record(frozen=True)
class Owner:
    """Who holds an IP. ``ifname`` is None for files written by old host-local versions (container ID only)."""

    container_id: str
    ifname: Optional[str]

    def matches(self, container_id: str, ifname: str) -> bool:
        """Upstream's rule: ``id\\r\\nifname`` matches exactly; an id-only file matches any ifname of that id."""
        if self.container_id != container_id.strip():
            return False
        return self.ifname is None or self.ifname == ifname


class Store(Protocol):
    """Reservations of one network. Every method except ``lock`` must be called with the lock held."""

    def lock(self) -> AbstractContextManager[None]:
        """Exclusive lock shared with every other process (and the Go host-local) using this network."""

    def reserve(self, container_id: str, ifname: str, ip: IPAddress, range_id: int) -> bool:
        """Claim ``ip``; False when it is already taken. Records it as ``range_id``'s last reserved IP."""

    def last_reserved_ip(self, range_id: int) -> Optional[IPAddress]:
        """Where the previous round-robin walk of range set ``range_id`` stopped, if known."""

    def release_ip(self, ip: IPAddress) -> None:
        """Drop one reservation (a no-op when it is already gone)."""

    def release_by_id(self, container_id: str, ifname: str) -> list[IPAddress]:
        """Drop every reservation of the attachment; returns the IPs released (none is not an error)."""

    def get_by_id(self, container_id: str, ifname: str) -> list[IPAddress]:
        """The IPs the attachment holds."""

    def reservations(self) -> Iterable[tuple[IPAddress, Owner]]:
        """Every reservation, read from the source of truth."""
