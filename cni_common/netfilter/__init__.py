"""The one layer of the suite that talks to netfilter (iptables, ip6tables, nft).

Public API for the plugins:
- :func:`select_backend` / :class:`Backend`: iptables or nftables, chosen as upstream does.
- masquerading for bridge: :func:`setup_masquerade`, :func:`teardown_masquerade`, :func:`gc_masquerade`.
- macspoofchk for bridge: :func:`setup_macspoofchk`, :func:`teardown_macspoofchk`.
- port forwarding for portmap: :func:`forward_ports`, :func:`check_ports`, :func:`unforward_ports`,
  :func:`gc_ports`, :func:`flush_udp_conntrack`.

Everything acts on the calling process's network namespace: callers enter the host netns first. Names,
hashes and comments are the Go plugins' (see :mod:`.names`), so each suite cleans up after the other.
"""

from __future__ import annotations

from ..errors import CNIError
from . import macspoofchk
from .backend import IPTABLES, NFTABLES, Backend, all_backends, select_backend
from .masquerade import IPInterface
from .portmap import PortMapping, PortMapSpec, flush_udp_conntrack
from .runner import NetfilterError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~4 ms per plugin process)
if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["IPTABLES", "NFTABLES", "Backend", "IPInterface", "NetfilterError", "select_backend",
           "setup_masquerade", "teardown_masquerade", "gc_masquerade", "setup_macspoofchk",
           "teardown_macspoofchk", "PortMapping", "PortMapSpec", "forward_ports", "check_ports",
           "unforward_ports", "gc_ports", "flush_udp_conntrack"]


def _on_every_backend(what: str, action: Callable[[Backend], None]) -> None:
    """Run ``action`` on BOTH layouts: the attachment may have been made by another version or config.

    A backend that is not usable on this machine is skipped, as upstream does; other errors are collected
    so that one failing layout does not stop the other from being cleaned, and reported together.
    """
    errors: list[CNIError] = []
    for backend in all_backends():
        try:
            action(backend)
        except CNIError as exc:
            if backend.usable():
                errors.append(exc)
    if errors:
        raise NetfilterError(f"failed to {what}", "; ".join(str(e) for e in errors))


def setup_masquerade(backend: Backend, network: str, container_id: str, ifname: str,
                     ips: list[IPInterface]) -> None:
    """SNAT traffic from ``ips`` leaving their subnets (one transaction per family, idempotent)."""
    if ips:
        backend.setup_masq(network, container_id, ifname, ips)


def teardown_masquerade(network: str, container_id: str, ifname: str, ips: list[IPInterface] | None = None) -> None:
    """Remove this attachment's masquerading from BOTH layouts; works with no IPs at all (empty netns DEL)."""
    _on_every_backend(f"tear down masquerading of {container_id}/{ifname}",
                      lambda backend: backend.teardown_masq(network, container_id, ifname, list(ips or [])))


def gc_masquerade(network: str, valid: set[tuple[str, str]]) -> None:
    """Remove masquerading of ``network`` for every attachment not in ``valid`` {(containerID, ifname)}."""
    _on_every_backend(f"garbage-collect masquerading of {network!r}",
                      lambda backend: backend.gc_masq(network, valid))


def setup_macspoofchk(host_ifname: str, container_mac: str, container_id: str, ifname: str) -> None:
    """Drop frames from ``host_ifname`` whose source MAC is not ``container_mac`` (nft bridge family)."""
    macspoofchk.setup(host_ifname, container_mac, container_id, ifname)


def teardown_macspoofchk(container_id: str, ifname: str) -> None:
    """Remove this attachment's macspoofchk chains and jump; nothing there is fine."""
    macspoofchk.teardown(container_id, ifname)


def forward_ports(backend: Backend, spec: PortMapSpec, ips: list[IPInterface]) -> None:
    """Install (or replace) this container's port forwarding to ``ips`` (at most one per family)."""
    backend.forward_ports(spec, ips)


def check_ports(backend: Backend, spec: PortMapSpec, ips: list[IPInterface]) -> None:
    """Raise :class:`NetfilterError` when a rule of ``spec`` is missing."""
    backend.check_ports(spec, ips)


def unforward_ports(network: str, container_id: str) -> None:
    """Remove this container's port forwarding from BOTH layouts; needs no mappings."""
    _on_every_backend(f"remove port forwarding of {container_id}",
                      lambda backend: backend.unforward_ports(network, container_id))


def gc_ports(network: str, valid_ids: set[str]) -> None:
    """Remove port forwarding of ``network``'s containers not in ``valid_ids`` (iptables layout only)."""
    _on_every_backend(f"garbage-collect port forwarding of {network!r}",
                      lambda backend: backend.gc_ports(network, valid_ids))
