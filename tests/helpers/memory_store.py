"""An in-memory :class:`cni_common.alloc.store.Store`: the allocator's unit tests run against it (upstream's
fake_store.go)."""

from __future__ import annotations

import contextlib
from typing import Iterable, Iterator, Optional

from cni_common.alloc.store import Owner
from cni_common.types import IPAddress


class MemoryStore:
    """Reservations in a dict; ``lock()`` is a no-op because one process owns the object."""

    def __init__(self, reserved: Optional[dict[IPAddress, Owner]] = None,
                 last_reserved: Optional[dict[int, IPAddress]] = None) -> None:
        self.reserved: dict[IPAddress, Owner] = dict(reserved or {})
        self.last: dict[int, IPAddress] = dict(last_reserved or {})

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        yield

    def reserve(self, container_id: str, ifname: str, ip: IPAddress, range_id: int) -> bool:
        if ip in self.reserved:
            return False
        self.reserved[ip] = Owner(container_id, ifname)
        self.last[range_id] = ip
        return True

    def last_reserved_ip(self, range_id: int) -> Optional[IPAddress]:
        return self.last.get(range_id)

    def release_ip(self, ip: IPAddress) -> None:
        self.reserved.pop(ip, None)

    def release_by_id(self, container_id: str, ifname: str) -> list[IPAddress]:
        gone = self.get_by_id(container_id, ifname)
        for ip in gone:
            del self.reserved[ip]
        return gone

    def get_by_id(self, container_id: str, ifname: str) -> list[IPAddress]:
        return [ip for ip, owner in self.reserved.items() if owner.matches(container_id, ifname)]

    def reservations(self) -> Iterable[tuple[IPAddress, Owner]]:
        return list(self.reserved.items())
