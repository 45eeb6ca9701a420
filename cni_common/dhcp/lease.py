"""One lease, kept for as long as its container lives: pyroute2's DHCP client, in a thread inside the netns.

pyroute2 (already the suite's netlink library) ships an asyncio DHCPv4 client: raw packet socket with a BPF
filter, DISCOVER/OFFER/REQUEST/ACK, the renew (T1) and rebind (T2) timers, a REQUEST for a remembered lease after
a restart (INIT-REBOOT), and a RELEASE sent from the leased address to the server (what dnsmasq wants, #1278). We
wrap it; we do not write DHCP packets by hand. Measured against a hand-written client in docs/dhcp.md.

Each lease has its own OS thread, which enters the container's network namespace (``setns`` moves only the
calling thread) and runs an event loop; every socket the client opens is therefore made in that namespace.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

from cni_common.dhcp.options import ClientSettings
from cni_common.dhcp.routes import lease_routes
from cni_common.errors import CNIError, ErrorCode
from cni_common.log import get_logger
from cni_common.netlink.pyroute2_light import register_package
from cni_common.netns import NetNS

register_package()  # pyroute2's __init__ imports every subsystem; the single file carries only what we use

from pyroute2.dhcp.client import AsyncDHCPClient, ClientConfig, randomized_increasing_backoff  # type: ignore[import-untyped]  # noqa: E402
from pyroute2.dhcp.enums import bootp, dhcp  # type: ignore[import-untyped]  # noqa: E402
from pyroute2.dhcp.fsm import State  # type: ignore[import-untyped]  # noqa: E402
from pyroute2.dhcp.leases import Lease, MissingOptionError  # type: ignore[import-untyped]  # noqa: E402

log = get_logger(__name__)

#: How often a kept lease checks that its link still exists (a container gone without DEL).
LINK_CHECK_INTERVAL = 5.0
#: How long a link just set up may take to get its carrier before the first DISCOVER.
CARRIER_WAIT = 3.0


@dataclass
class Timing:
    """The daemon's flags that shape every lease."""

    acquire_timeout: float = 208.0  # upstream's -resendtimeout default
    resend_max: float = 62.0
    broadcast: bool = False


class _Client(AsyncDHCPClient):
    """pyroute2's client with upstream's ``-broadcast``: without it, DISCOVER and REQUEST go out with flags 0
    (the server unicasts its answer), as the v1.1.1 daemon did; pyroute2 always sets the broadcast bit."""

    def __init__(self, config: ClientConfig, broadcast: bool) -> None:
        super().__init__(config)
        self._broadcast = broadcast

    async def _send_message(self, msg: Any) -> None:
        if msg.message_type != dhcp.MessageType.RELEASE and msg.dhcp["flags"] == bootp.Flag.BROADCAST:
            msg.dhcp["flags"] = bootp.Flag.BROADCAST if self._broadcast else bootp.Flag.UNICAST
        await super()._send_message(msg)


class LeaseKeeper:
    """Acquires one lease and keeps it (renew, rebind) until :meth:`stop`.

    ``on_lease`` is called (in the keeper's thread) with each lease the server grants, as a JSON-able dict, so
    the daemon can persist it; ``on_gone`` when the link disappeared and the keeper ended by itself.
    """

    def __init__(self, key: str, netns_path: str, ifname: str, settings: ClientSettings, timing: Timing,
                 on_lease: Callable[[dict[str, Any]], None], on_gone: Callable[[], None],
                 stored_lease: dict[str, Any] | None = None) -> None:
        self.key = key
        self.netns_path = netns_path
        self.ifname = ifname
        self.settings = settings
        self.timing = timing
        self._on_lease = on_lease
        self._on_gone = on_gone
        self._stored_lease = stored_lease
        self._client: _Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._release = True
        self._bound = threading.Event()
        self._ended = threading.Event()
        self._error: CNIError | None = None
        self._thread = threading.Thread(target=self._run, name=f"dhcp {key}", daemon=True)

    # --- the daemon's side -------------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    def wait_bound(self, timeout: float) -> dict[str, Any]:
        """The CNI result of the lease, waiting up to ``timeout`` for the first ACK."""
        deadline = time.monotonic() + timeout
        while not self._bound.is_set() and not self._ended.is_set() and time.monotonic() < deadline:
            self._bound.wait(min(0.2, max(0.0, deadline - time.monotonic())))
        if self._error is not None:
            raise self._error
        lease = self._client.lease if self._client is not None else None
        if not self._bound.is_set() or lease is None:
            raise CNIError(ErrorCode.TRY_AGAIN_LATER,
                           f"{self.key}: no DHCP lease on {self.ifname!r} within {timeout:g}s",
                           "no DHCP server answered on that link (see the daemon's log)")
        return lease_result(lease, self.settings)

    def current_result(self) -> dict[str, Any] | None:
        """The result of the lease held now, or None (not yet bound, or ended)."""
        lease = self._client.lease if self._client is not None and not self.ended else None
        return lease_result(lease, self.settings) if lease is not None and self._bound.is_set() else None

    def stop(self, release: bool, timeout: float = 5.0) -> None:
        """End the keeper; with ``release``, a DHCPRELEASE goes to the server first."""
        self._release = release
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not self.ended:
            try:
                loop.call_soon_threadsafe(stop.set)
            except RuntimeError:  # the loop closed meanwhile
                pass
        self._thread.join(timeout)

    # --- the keeper's thread -----------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            with NetNS(self.netns_path) as netns, netns.entered():
                _set_up(self.ifname)  # pyroute2's synchronous IPRoute: before the event loop runs
                asyncio.run(self._keep())
        except CNIError as exc:
            self._error = exc
        except Exception as exc:  # noqa: BLE001 - a keeper reports its failure, it never kills the daemon
            log.error("%s: %s", self.key, exc)
            self._error = CNIError(ErrorCode.INTERNAL, f"{self.key}: DHCP client failed: {exc}")
        finally:
            self._ended.set()

    async def _keep(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        config = ClientConfig(interface=self.ifname, lease_type=self._lease_type(), client_id=self.settings.client_id,
                              requested_parameters=self.settings.requested,
                              handle_signals=False, host_name=self.settings.host_name,
                              vendor_id=self.settings.vendor_id,
                              retransmission=lambda: randomized_increasing_backoff(wait_first=2.0,
                                                                                    wait_max=self.timing.resend_max))
        self._client = client = _Client(config, self.timing.broadcast)
        log.info("%s: acquiring lease on %s in %s", self.key, self.ifname, self.netns_path)
        async with client:
            await client.bootstrap()
            if await self._until_bound(client):
                self._bound.set()
                log.info("%s: lease acquired: %s", self.key, client.lease.ip if client.lease else "?")
                await self._until_stopped()
            client.config.release = self._release
            if self._release and client.lease is not None:
                log.info("%s: releasing lease %s", self.key, client.lease.ip)

    async def _until_bound(self, client: _Client) -> bool:
        assert self._stop is not None
        bound = asyncio.ensure_future(client.wait_for_state(State.BOUND))
        stop = asyncio.ensure_future(self._stop.wait())
        done, _ = await asyncio.wait({bound, stop}, timeout=self.timing.acquire_timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
        for task in (bound, stop):
            task.cancel()
        if bound in done and not bound.cancelled() and bound.exception() is None:
            return True
        if stop not in done:
            self._release = False  # nothing bound: a remembered lease is not ours to release
        return False

    async def _until_stopped(self) -> None:
        assert self._stop is not None
        while True:
            try:
                await asyncio.wait_for(self._stop.wait(), LINK_CHECK_INTERVAL)
                return
            except asyncio.TimeoutError:
                if not _link_exists(self.ifname):
                    log.info("%s: %s is gone: the lease is no longer kept", self.key, self.ifname)
                    self._release = False
                    self._on_gone()
                    return

    def _lease_type(self) -> type[Lease]:
        keeper = self

        class KeptLease(Lease):
            """A lease the daemon persists (through ``on_lease``) and may start from (after a restart)."""

            def dump(self) -> None:
                keeper._on_lease(asdict(self))

            @classmethod
            def load(cls, interface: str) -> Lease | None:
                stored = keeper._stored_lease
                return cls(**stored) if stored else None

        return KeptLease


def lease_result(lease: Lease, settings: ClientSettings) -> dict[str, Any]:
    """The CNI 1.1.0 result of a lease: its address (needs the subnet mask), the first router as gateway, the
    routes of options 121, or 33 and 3 (:mod:`.routes`), and DNS when it was requested (upstream drops option 6
    even then)."""
    try:
        prefix = lease.prefixlen
    except MissingOptionError as exc:
        raise CNIError(ErrorCode.INTERNAL, "DHCP option Subnet Mask not found in DHCPACK") from exc
    ip: dict[str, Any] = {"address": f"{lease.ip}/{prefix}"}
    result: dict[str, Any] = {"cniVersion": "1.1.0", "ips": [ip]}
    routers = lease.ack["options"].get("router") or []
    if routers:
        ip["gateway"] = routers[0]
    routes = lease_routes(lease.ack["options"], routers[0] if routers else None)
    if routes:
        result["routes"] = routes
    servers = lease.ack["options"].get("name_server") or []
    if settings.wants_dns and servers:
        dns: dict[str, Any] = {"nameservers": list(servers)}
        if lease.ack["options"].get("domain_name"):
            dns["domain"] = lease.ack["options"]["domain_name"]
        result["dns"] = dns
    return result


def _set_up(ifname: str) -> None:
    """Set the link up (upstream does, before the first packet) and wait briefly for its carrier."""
    from pyroute2.iproute.linux import IPRoute  # type: ignore[import-untyped]

    with IPRoute() as ipr:
        try:
            index = ipr.link_lookup(ifname=ifname)
        except Exception as exc:
            raise CNIError(ErrorCode.INVALID_ENV, f"error looking up {ifname!r}: {exc}") from exc
        if not index:
            raise CNIError(ErrorCode.INVALID_ENV, f"error looking up {ifname!r}: Link not found")
        ipr.link("set", index=index[0], state="up")
        deadline = time.monotonic() + CARRIER_WAIT
        while time.monotonic() < deadline:
            link = ipr.link("get", index=index[0])[0]
            if link.get_attr("IFLA_OPERSTATE") in ("UP", "UNKNOWN"):
                return
            time.sleep(0.02)


def _link_exists(ifname: str) -> bool:
    try:
        socket.if_nametoindex(ifname)
    except OSError:
        return False
    return True
