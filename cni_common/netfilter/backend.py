"""The backend protocol (iptables or nftables) and its selection.

Plugins pick a backend once per call with :func:`select_backend` and hand it to the feature functions.
Teardown and GC do not take a backend: they always clean both layouts, because the attachment may have been
made by an older version, by the Go plugins, or under another configuration.
"""

from __future__ import annotations

from ..errors import CNIError, ErrorCode
from . import masquerade, portmap, runner
from .masquerade import IPInterface
from .portmap import PortMapSpec

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~4 ms per plugin process)
if TYPE_CHECKING:
    from typing import Any, Optional, Protocol
else:
    Protocol = object  # Backend is a protocol for type checkers only

IPTABLES = "iptables"
NFTABLES = "nftables"


class Backend(Protocol):
    """What a netfilter backend does for the plugins; one implementation per upstream layout."""

    @property
    def name(self) -> str: ...

    def setup_masq(self, network: str, container_id: str, ifname: str, ips: list[IPInterface]) -> None: ...

    def teardown_masq(self, network: str, container_id: str, ifname: str, ips: list[IPInterface]) -> None: ...

    def gc_masq(self, network: str, valid: set[tuple[str, str]]) -> None: ...

    def forward_ports(self, spec: PortMapSpec, ips: list[IPInterface]) -> None: ...

    def check_ports(self, spec: PortMapSpec, ips: list[IPInterface]) -> None: ...

    def unforward_ports(self, network: str, container_id: str) -> None: ...

    def gc_ports(self, network: str, valid_ids: set[str]) -> None: ...

    def usable(self) -> bool: ...


class IPTablesBackend:
    """The iptables layout (works with iptables-legacy and iptables-nft alike)."""

    name = IPTABLES

    def setup_masq(self, network: str, container_id: str, ifname: str, ips: list[IPInterface]) -> None:
        masquerade.ipt_setup(network, container_id, ips)

    def teardown_masq(self, network: str, container_id: str, ifname: str, ips: list[IPInterface]) -> None:
        masquerade.ipt_teardown(network, container_id, ips)

    def gc_masq(self, network: str, valid: set[tuple[str, str]]) -> None:
        masquerade.ipt_gc(network, {cid for cid, _ in valid})

    def forward_ports(self, spec: PortMapSpec, ips: list[IPInterface]) -> None:
        portmap.ipt_forward(spec, ips)

    def check_ports(self, spec: PortMapSpec, ips: list[IPInterface]) -> None:
        portmap.ipt_check(spec, ips)

    def unforward_ports(self, network: str, container_id: str) -> None:
        portmap.ipt_unforward(network, container_id)

    def gc_ports(self, network: str, valid_ids: set[str]) -> None:
        portmap.ipt_gc(network, valid_ids)

    def usable(self) -> bool:
        return runner.supports_iptables()


class NFTablesBackend:
    """The native nftables layout of newer upstream plugins."""

    name = NFTABLES

    def setup_masq(self, network: str, container_id: str, ifname: str, ips: list[IPInterface]) -> None:
        masquerade.nft_setup(network, container_id, ifname, ips)

    def teardown_masq(self, network: str, container_id: str, ifname: str, ips: list[IPInterface]) -> None:
        masquerade.nft_teardown(network, container_id, ifname)

    def gc_masq(self, network: str, valid: set[tuple[str, str]]) -> None:
        masquerade.nft_gc(network, valid)

    def forward_ports(self, spec: PortMapSpec, ips: list[IPInterface]) -> None:
        portmap.nft_forward(spec, ips)

    def check_ports(self, spec: PortMapSpec, ips: list[IPInterface]) -> None:
        portmap.nft_check(spec, ips)

    def unforward_ports(self, network: str, container_id: str) -> None:
        portmap.nft_unforward(container_id)

    def gc_ports(self, network: str, valid_ids: set[str]) -> None:
        """Not possible: upstream's nft portmap comments carry only the container ID, not the network, so
        rules of another network's containers cannot be told apart. DEL still removes them."""

    def usable(self) -> bool:
        return runner.supports_nftables()


class DefaultBackend:
    """Upstream's default, "iptables unless only nftables works", without running its probe on every call.

    Upstream execs ``iptables -S INPUT 1`` (and ``nft --check``) to choose before it writes anything: one or two
    processes more per ADD. Here iptables is used straight away; only if an iptables step fails are the probes
    run, and when they find iptables unusable and nft usable the step is done with nftables instead. A failed
    iptables step has changed nothing (a save only reads, a restore is one transaction), so the result is
    the probe's in every case.
    """

    def __init__(self) -> None:
        self._backend: Backend = IPTablesBackend()

    @property
    def name(self) -> str:
        return self._backend.name

    def _do(self, step: str, *args: Any) -> None:
        try:
            getattr(self._backend, step)(*args)
        except CNIError:
            if self.name == NFTABLES or runner.supports_iptables() or not runner.supports_nftables():
                raise
            self._backend = NFTablesBackend()
            getattr(self._backend, step)(*args)

    def setup_masq(self, network: str, container_id: str, ifname: str, ips: list[IPInterface]) -> None:
        self._do("setup_masq", network, container_id, ifname, ips)

    def teardown_masq(self, network: str, container_id: str, ifname: str, ips: list[IPInterface]) -> None:
        self._do("teardown_masq", network, container_id, ifname, ips)

    def gc_masq(self, network: str, valid: set[tuple[str, str]]) -> None:
        self._do("gc_masq", network, valid)

    def forward_ports(self, spec: PortMapSpec, ips: list[IPInterface]) -> None:
        self._do("forward_ports", spec, ips)

    def check_ports(self, spec: PortMapSpec, ips: list[IPInterface]) -> None:
        self._do("check_ports", spec, ips)

    def unforward_ports(self, network: str, container_id: str) -> None:
        self._do("unforward_ports", network, container_id)

    def gc_ports(self, network: str, valid_ids: set[str]) -> None:
        self._do("gc_ports", network, valid_ids)

    def usable(self) -> bool:
        return self._backend.usable()


def all_backends() -> list[Backend]:
    return [IPTablesBackend(), NFTablesBackend()]


def select_backend(preference: Optional[str] = None) -> Backend:
    """``"iptables"``, ``"nftables"``, or None for upstream's default: iptables unless only nft works."""
    if preference == IPTABLES:
        return IPTablesBackend()
    if preference == NFTABLES:
        return NFTablesBackend()
    if preference is not None:
        raise CNIError(ErrorCode.INVALID_CONFIG,
                       f"unknown netfilter backend {preference!r} (want {IPTABLES!r} or {NFTABLES!r})")
    if runner.on_path("iptables"):
        return DefaultBackend()
    if runner.supports_nftables():
        return NFTablesBackend()
    return IPTablesBackend()
