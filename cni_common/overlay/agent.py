"""``vxlan agent --conf FILE``: keeps this node's liveness lease alive and its peers in step with the store.

One loop in the main thread owns the netlink socket: it renews the lease every ``leaseTTL / 3`` seconds and
reconciles peers whenever the watcher thread reports a change under ``<prefix>/alive/`` (a join, a leave, an
expired lease) and, as a safety net, every :data:`RESYNC_SECONDS`. Reconciling is level-based (list the live
nodes, diff against the kernel), so a missed or repeated event costs nothing. SIGTERM/SIGINT stop it; the
lease is left to expire on its own, so a quick restart (an upgrade) does not make peers drop this node.

The store's troubles must never take the data path down (:class:`Contact`): a peer is withdrawn only once
etcd has been answering this agent without a break for ``leaseTTL`` seconds (the grace) and the peer's record is
still absent. After an outage that outlasted the leases, etcd deletes every record at once; every live agent
re-publishes within about a second of etcd's return (it probes every :data:`RETRY_SECONDS` while etcd does not
answer), well inside the grace, so no live peer's route is ever removed.
"""

from __future__ import annotations

import argparse
import queue
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Optional

from .. import log as logs
from .. import netlink
from ..errors import CNIError, ErrorCode
from . import config, node, presence
from .etcd import EtcdClient

if TYPE_CHECKING:
    from .metrics import AgentMetrics, Health

log = logs.get_logger(__name__)

RESYNC_SECONDS = 30.0
#: While etcd does not answer: how often the agent tries again, and the watch's longest back-off. Short, so
#: that agents re-publish and watch again within about a second of etcd's return.
RETRY_SECONDS = 1.0
#: One attempt on one endpoint (the agent's calls are small; a member that takes longer is treated as down).
STORE_TIMEOUT = 2.0
_STOP = "stop"
_CHANGED = "changed"


class Backoff:
    """Waits between attempts: ``first`` doubling up to ``cap``, back to ``first`` after a success (the watch:
    0.1 s to :data:`RETRY_SECONDS`; the node setup at start: 1 s to 30 s)."""

    def __init__(self, first: float = 0.1, cap: float = RETRY_SECONDS) -> None:
        self.first, self.cap, self.current = first, cap, first

    def next(self) -> float:
        wait, self.current = self.current, min(self.current * 2, self.cap)
        return wait

    def reset(self) -> None:
        self.current = self.first


class Contact:
    """When the agent last heard from etcd, and until when stale peers must be kept (the grace).

    An outage is any failed attempt, or a silence longer than ``gap`` (a call that hung, then was answered
    when a frozen etcd resumed, fails nothing). Leases can only have expired in an outage longer than
    ``2 x leaseTTL / 3``, and ``gap`` = renew interval + 1 s is shorter, so no lease-expiring outage goes
    unnoticed. A new agent does not know what happened before it started: it holds for the grace too.
    """

    def __init__(self, client: EtcdClient, grace: float, gap: float) -> None:
        self.client, self.grace, self.gap = client, grace, gap
        self._seen: Optional[float] = None  # the client's last_answer when last looked at
        self.hold_until = time.monotonic() + grace

    def update(self) -> bool:
        """Look at the client's last answer; True when it ends an outage (the grace starts again)."""
        answered, failed = self.client.last_answer, self.client.last_failure
        if answered is None or answered == self._seen:
            return False
        outage = (failed is not None and failed > (self._seen or 0.0)) or \
            (self._seen is not None and answered - self._seen > self.gap)
        self._seen = answered
        if outage:
            self.hold_until = max(self.hold_until, answered + self.grace)
        return outage

    def failing(self) -> bool:
        failed, answered = self.client.last_failure, self.client.last_answer
        return failed is not None and (answered is None or failed > answered)

    def holding(self) -> bool:
        """Whether removals must wait: etcd is not answering now, or has not been back for the grace."""
        return self.failing() or time.monotonic() < self.hold_until

    def since(self) -> float:
        return time.monotonic() - self.client.last_answer if self.client.last_answer is not None else -1.0


class Watcher(threading.Thread):
    """Streams changes of the live-node prefix and posts ``changed`` on the queue; re-watches on errors."""

    def __init__(self, client: EtcdClient, prefix: str, revision: int, events: "queue.Queue[str]",
                 stop: threading.Event, metrics: Optional[AgentMetrics]) -> None:
        super().__init__(name="vxlan-watch", daemon=True)
        self.client, self.prefix, self.revision = client, prefix, revision
        self.events, self.stop, self.metrics = events, stop, metrics
        self.backoff = Backoff()

    def restart(self) -> None:
        """Open the watch again now (etcd is back: the old stream may sit on a connection that went dead)."""
        self.client.interrupt_watch()

    def run(self) -> None:
        quiet = False  # log the first failure of a series, not one line a second during an outage
        while not self.stop.is_set():
            try:
                for batch in self.client.watch_prefix(self.prefix, self.revision + 1, idle_timeout=RESYNC_SECONDS):
                    self.backoff.reset()
                    if quiet:
                        log.info("watch of %s open again", self.prefix)
                        quiet = False
                    if not batch:
                        continue
                    self.revision = max(self.revision, *(ev.revision for ev in batch))
                    log.info("store change: %s", ", ".join(f"{ev.kind} {ev.key}" for ev in batch))
                    self.events.put(_CHANGED)
                if self.stop.is_set():
                    return
                self._count()  # the stream ended (interrupted, or the member went away): watch again
            except (CNIError, OSError, ValueError) as exc:
                if self.stop.is_set():
                    return
                if isinstance(exc, TimeoutError):
                    continue  # an idle stream: re-watch from the same revision
                if not quiet:
                    log.warning("watch of %s interrupted: %s", self.prefix, exc)
                    quiet = True
                self._count()
                self.stop.wait(self.backoff.next())
                try:  # changes may have been compacted away meanwhile: resync and watch from now
                    _, self.revision = self.client.get_prefix(self.prefix)
                    self.events.put(_CHANGED)
                except CNIError:
                    pass

    def _count(self) -> None:
        if self.metrics is not None:
            self.metrics.watch_restarts.inc()


class Agent:
    """The agent for one vxlan network config."""

    def __init__(self, conf: config.VxlanConf, metrics: Optional[AgentMetrics] = None,
                 health: Optional[Health] = None) -> None:
        self.conf = conf
        self.store = node.Store.open(conf, timeout=STORE_TIMEOUT)
        self.events: "queue.Queue[str]" = queue.Queue()
        self.stop = threading.Event()
        self.lease = 0
        self.renew_every = conf.etcd.lease_ttl / 3 if conf.etcd else RESYNC_SECONDS
        grace = float(conf.etcd.lease_ttl) if conf.etcd else 0.0
        self.contact = Contact(self.store.client, grace, self.renew_every + 1.0) if self.store else None
        self.metrics, self.health = metrics, health
        self.watcher: Optional[Watcher] = None
        self.release_at: Optional[float] = None  # when the grace ends: reconcile then, removals allowed
        self.next_renew = 0.0

    def request_stop(self, *_: object) -> None:
        self.stop.set()
        self.events.put(_STOP)

    def seconds_since_contact(self) -> float:
        return self.contact.since() if self.contact is not None else -1.0

    def _error(self, kind: str) -> None:
        if self.metrics is not None:
            self.metrics.errors.labels(kind).inc()

    def _prepare(self, conn: netlink.Conn) -> Optional[node.NodeState]:
        """Retry until the store answers: an agent that starts before etcd must not give up."""
        backoff = Backoff(1.0, 30.0)
        while not self.stop.is_set():
            try:
                return node.prepare(conn, self.conf, self.store)
            except CNIError as exc:
                self._error("node_setup")
                wait = backoff.next()
                log.warning("node setup failed (retrying in %.0fs): %s", wait, exc)
                self.stop.wait(wait)
        return None

    def _refresh(self, conn: netlink.Conn, state: node.NodeState) -> node.NodeState:
        """One attempt at the node setup (device deleted or changed by someone, underlay moved)."""
        try:
            return node.prepare(conn, self.conf, self.store, offline_ok=True)
        except CNIError as exc:
            self._error("node_setup")
            log.warning("node setup check failed: %s", exc)
            return state

    def _renew(self, state: node.NodeState) -> bool:
        assert self.store is not None
        was_failing = self.contact is not None and self.contact.failing()
        try:
            if not self.lease or not self.store.liveness.renew(self.lease, state.me):
                self.lease = self.store.liveness.publish(state.me)
            return True
        except CNIError as exc:
            self._error("store")
            if not was_failing or exc.code != ErrorCode.TRY_AGAIN_LATER:  # one line per outage, not per second
                log.warning("liveness renewal failed: %s", exc)
            return False

    def _sync(self, conn: netlink.Conn, state: node.NodeState) -> None:
        start = time.monotonic()
        try:
            live = self.store.liveness.live_peers()[0] if self.store is not None else []
        except CNIError as exc:
            self._error("store")
            log.debug("peer listing failed: %s", exc)
            return
        self._note_contact()
        remove = self.contact is None or not self.contact.holding()
        try:
            changes = node.sync(conn, self.conf, state, live, remove=remove)
        except CNIError as exc:
            self._error("reconcile")
            log.warning("peer reconciliation failed: %s", exc)
            return
        if not changes.empty():
            log.info("peers: %d programmed, %d routes removed", len(changes.add), len(changes.del_routes))
        if changes.kept:
            log.info("keeping %d peers absent from the store until etcd has been back for %.0fs: %s",
                     len(changes.kept), self.contact.grace if self.contact else 0,
                     ", ".join(map(str, changes.kept)))
            if self.contact is not None:
                self.release_at = self.contact.hold_until
        if self.metrics is not None:
            self.metrics.reconcile.observe(time.monotonic() - start)
            self.metrics.withdrawn.inc(len(changes.del_routes))
            self.metrics.peers.set(len(node.wanted_peers(self.conf, state, live)) + len(changes.kept))
            self.metrics.peers_held.set(len(changes.kept))
        if self.health is not None:
            self.health.ready = True

    def _note_contact(self) -> None:
        """After a store call: when it ends an outage, re-publish, watch again and reconcile at once."""
        if self.contact is None or not self.contact.update():
            return
        log.info("etcd answers again; stale peers are kept for %.0fs (the grace)", self.contact.grace)
        if self.metrics is not None:
            self.metrics.outages.inc()
        self.next_renew = 0.0
        if self.watcher is not None:
            self.watcher.restart()
        self.events.put(_CHANGED)
        self.release_at = self.contact.hold_until

    def run(self) -> int:
        with netlink.open_conn() as conn:
            state = self._prepare(conn)
            if state is None:
                return 0
            log.info("node %s: subnet %s, underlay %s (%s), vtep %s", self.conf.node_name, state.subnet,
                     state.underlay.ip, state.underlay.name, state.me.vtep_mac)
            if self.store is not None:
                self._renew(state)
                try:
                    _, revision = self.store.liveness.live_peers()
                except CNIError:
                    revision = -1  # watch from "now"; the periodic resync covers the gap
                watch_store = node.Store.open(self.conf, timeout=STORE_TIMEOUT)
                assert watch_store is not None
                self.watcher = Watcher(watch_store.client, self.store.liveness.prefix, revision, self.events,
                                       self.stop, self.metrics)
                self.watcher.start()
            self._sync(conn, state)
            self._loop(conn, state)
        log.info("agent stopped (the liveness lease is left to expire)")
        return 0

    def _loop(self, conn: netlink.Conn, state: node.NodeState) -> None:
        self.next_renew = time.monotonic() + self.renew_every
        next_resync = time.monotonic() + RESYNC_SECONDS
        while not self.stop.is_set():
            if self.health is not None:
                self.health.beat()
            if self.store is not None and time.monotonic() >= self.next_renew:
                ok = self._renew(state)
                self._note_contact()
                self.next_renew = time.monotonic() + (self.renew_every if ok else RETRY_SECONDS)
            if time.monotonic() >= next_resync:
                state = self._refresh(conn, state)
                self._sync(conn, state)
                next_resync = time.monotonic() + RESYNC_SECONDS
            if self.release_at is not None and time.monotonic() >= self.release_at:
                self.release_at = None
                self._sync(conn, state)  # the grace is over: whatever is still absent is gone
            deadlines = [self.next_renew, next_resync] + ([self.release_at] if self.release_at else [])
            try:
                item = self.events.get(timeout=max(0.05, min(deadlines) - time.monotonic()))
            except queue.Empty:
                continue
            if item == _STOP:
                break
            while not self.events.empty():  # coalesce a burst of changes into one reconcile
                if self.events.get_nowait() == _STOP:
                    self.stop.set()
            self._sync(conn, state)


def run_cli(argv: list[str]) -> int:
    """Entry point of ``vxlan agent --conf FILE [--log-level LEVEL] [--listen HOST:PORT]``."""
    from . import metrics

    parser = argparse.ArgumentParser(prog="vxlan agent", description="vxlan overlay agent: liveness and peers")
    parser.add_argument("--conf", required=True, help="a conflist or a single config with a vxlan entry")
    parser.add_argument("--log-level", default="info", help="debug, info, warning, error (default info)")
    parser.add_argument("--listen", default=metrics.DEFAULT_LISTEN,
                        help=f"HOST:PORT of /healthz, /readyz and /metrics (default {metrics.DEFAULT_LISTEN}; "
                             "'off' disables them)")
    opts = parser.parse_args(argv)
    logs.configure(opts.log_level if opts.log_level.upper() in logs.LEVELS else "info", stderr=sys.stderr)
    try:
        listen = metrics.parse_listen(opts.listen)
        _, conf = config.load_file(opts.conf)
        claim = presence.claim(conf)
    except ValueError as exc:
        log.error("--listen: %s", exc)
        return 2
    except OSError as exc:
        log.error("another vxlan agent runs for this network on this node: %s", exc)
        return 1
    except CNIError as exc:
        log.error("%s", exc)
        return 1
    health = metrics.Health(stale_after=max(60.0, 3 * (conf.etcd.lease_ttl if conf.etcd else RESYNC_SECONDS)))
    try:
        agent = Agent(conf, health=health)
        agent.metrics = metrics.AgentMetrics(agent.seconds_since_contact)
        if listen is not None:
            metrics.serve(listen, health)
    except CNIError as exc:
        log.error("%s", exc)
        return 1
    except OSError as exc:
        log.error("cannot serve health and metrics on %s: %s", opts.listen, exc)
        return 1
    signal.signal(signal.SIGTERM, agent.request_stop)
    signal.signal(signal.SIGINT, agent.request_stop)
    with claim:
        return agent.run()

