"""``vxlan agent --conf FILE``: keeps this node's liveness lease alive and its peers in step with the store.

One loop in the main thread owns the netlink socket: it renews the lease every ``leaseTTL / 3`` seconds and
reconciles peers whenever the watcher thread reports a change under ``<prefix>/alive/`` (a join, a leave, an
expired lease) and, as a safety net, every :data:`RESYNC_SECONDS`. Reconciling is level-based (list the live
nodes, diff against the kernel), so a missed or repeated event costs nothing. SIGTERM/SIGINT stop it; the
lease is left to expire on its own, so a quick restart (an upgrade) does not make peers drop this node.
"""

from __future__ import annotations

import argparse
import queue
import signal
import sys
import threading
import time
from typing import Optional

from .. import log as logs
from .. import netlink
from ..errors import CNIError
from . import config, node
from .etcd import EtcdClient

log = logs.get_logger(__name__)

RESYNC_SECONDS = 30.0
_BACKOFF_MAX = 30.0
_STOP = "stop"
_CHANGED = "changed"


class Watcher(threading.Thread):
    """Streams changes of the live-node prefix and posts ``changed`` on the queue; re-watches on errors."""

    def __init__(self, client: EtcdClient, prefix: str, revision: int, events: "queue.Queue[str]",
                 stop: threading.Event) -> None:
        super().__init__(name="vxlan-watch", daemon=True)
        self.client, self.prefix, self.revision = client, prefix, revision
        self.events, self.stop = events, stop

    def run(self) -> None:
        backoff = 1.0
        while not self.stop.is_set():
            try:
                for batch in self.client.watch_prefix(self.prefix, self.revision + 1, idle_timeout=RESYNC_SECONDS):
                    self.revision = max(self.revision, *(ev.revision for ev in batch))
                    log.info("store change: %s", ", ".join(f"{ev.kind} {ev.key}" for ev in batch))
                    self.events.put(_CHANGED)
                    backoff = 1.0
            except (CNIError, OSError, ValueError) as exc:
                if self.stop.is_set():
                    return
                if isinstance(exc, TimeoutError):
                    continue  # an idle stream: re-watch from the same revision
                log.warning("watch of %s interrupted: %s", self.prefix, exc)
                self.stop.wait(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX)
                try:  # changes may have been compacted away meanwhile: resync and watch from now
                    _, self.revision = self.client.get_prefix(self.prefix)
                    self.events.put(_CHANGED)
                except CNIError:
                    pass


class Agent:
    """The agent for one vxlan network config."""

    def __init__(self, conf: config.VxlanConf) -> None:
        self.conf = conf
        self.store = node.Store.open(conf)
        self.events: "queue.Queue[str]" = queue.Queue()
        self.stop = threading.Event()
        self.lease = 0

    def request_stop(self, *_: object) -> None:
        self.stop.set()
        self.events.put(_STOP)

    def _prepare(self, conn: netlink.Conn) -> Optional[node.NodeState]:
        """Retry until the store answers: an agent that starts before etcd must not give up."""
        backoff = 1.0
        while not self.stop.is_set():
            try:
                return node.prepare(conn, self.conf, self.store)
            except CNIError as exc:
                log.warning("node setup failed (retrying in %.0fs): %s", backoff, exc)
                self.stop.wait(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX)
        return None

    def _refresh(self, conn: netlink.Conn, state: node.NodeState) -> node.NodeState:
        """One attempt at the node setup (device deleted or changed by someone, underlay moved)."""
        try:
            return node.prepare(conn, self.conf, self.store)
        except CNIError as exc:
            log.warning("node setup check failed: %s", exc)
            return state

    def _renew(self, state: node.NodeState) -> None:
        assert self.store is not None
        try:
            if not self.lease or not self.store.liveness.renew(self.lease, state.me):
                self.lease = self.store.liveness.publish(state.me)
        except CNIError as exc:
            log.warning("liveness renewal failed: %s", exc)

    def _sync(self, conn: netlink.Conn, state: node.NodeState) -> None:
        try:
            live = self.store.liveness.live_peers()[0] if self.store is not None else []
            changes = node.sync(conn, self.conf, state, live)
            if not changes.empty():
                log.info("peers: %d programmed, %d routes removed", len(changes.add), len(changes.del_routes))
        except CNIError as exc:
            log.warning("peer reconciliation failed: %s", exc)

    def run(self) -> int:
        with netlink.open_conn() as conn:
            state = self._prepare(conn)
            if state is None:
                return 0
            log.info("node %s: subnet %s, underlay %s (%s), vtep %s", self.conf.node_name, state.subnet,
                     state.underlay.ip, state.underlay.name, state.me.vtep_mac)
            renew_every = self.conf.etcd.lease_ttl / 3 if self.conf.etcd else RESYNC_SECONDS
            if self.store is not None:
                self._renew(state)
                try:
                    _, revision = self.store.liveness.live_peers()
                except CNIError:
                    revision = -1  # watch from "now"; the periodic resync covers the gap
                watch_store = node.Store.open(self.conf)
                assert watch_store is not None
                Watcher(watch_store.client, self.store.liveness.prefix, revision, self.events, self.stop).start()
            self._sync(conn, state)
            next_renew = next_resync = time.monotonic()
            while not self.stop.is_set():
                now = time.monotonic()
                if self.store is not None and now >= next_renew:
                    self._renew(state)
                    next_renew = now + renew_every
                if now >= next_resync:
                    state = self._refresh(conn, state)
                    self._sync(conn, state)
                    next_resync = now + RESYNC_SECONDS
                try:
                    item = self.events.get(timeout=max(0.1, min(next_renew, next_resync) - time.monotonic()))
                except queue.Empty:
                    continue
                if item == _STOP:
                    break
                while not self.events.empty():  # coalesce a burst of changes into one reconcile
                    if self.events.get_nowait() == _STOP:
                        self.stop.set()
                self._sync(conn, state)
        log.info("agent stopped (the liveness lease is left to expire)")
        return 0


def run_cli(argv: list[str]) -> int:
    """Entry point of ``vxlan agent --conf FILE [--log-level LEVEL]``."""
    parser = argparse.ArgumentParser(prog="vxlan agent", description="vxlan overlay agent: liveness and peers")
    parser.add_argument("--conf", required=True, help="a conflist or a single config with a vxlan entry")
    parser.add_argument("--log-level", default="info", help="debug, info, warning, error (default info)")
    opts = parser.parse_args(argv)
    logs.configure(opts.log_level if opts.log_level.upper() in logs.LEVELS else "info", stderr=sys.stderr)
    try:
        _, conf = config.load_file(opts.conf)
        agent = Agent(conf)
    except CNIError as exc:
        log.error("%s", exc)
        return 1
    signal.signal(signal.SIGTERM, agent.request_stop)
    signal.signal(signal.SIGINT, agent.request_stop)
    return agent.run()
