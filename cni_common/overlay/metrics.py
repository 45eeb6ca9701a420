"""The agent's HTTP endpoint: ``/healthz`` (liveness), ``/readyz`` (readiness) and ``/metrics`` (Prometheus).

Only the agent imports this module (and with it ``prometheus_client``): the plugin's call path never does, so
the library's import cost (~30 ms) is paid once per agent start, not per exec. The server is the standard
library's threading HTTP server; the exposition format comes from ``prometheus_client``, which also adds the
process metrics (CPU seconds, resident memory, open files) the bench reads.
"""

from __future__ import annotations

import http.server
import socket
import threading
import time
from typing import Callable, Optional

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest

from ..log import get_logger

log = get_logger(__name__)

DEFAULT_LISTEN = "127.0.0.1:9651"


class AgentMetrics:
    """The agent's metrics, registered once per process (``prometheus_client`` keeps a global registry)."""

    def __init__(self, since_contact: Callable[[], float]) -> None:
        self.peers = Gauge("cni_vxlan_agent_peers_programmed", "Remote nodes programmed on the VXLAN device")
        self.peers_held = Gauge("cni_vxlan_agent_peers_held",
                                "Peers absent from the store but kept while etcd has not been back for the grace")
        self.since_contact = Gauge("cni_vxlan_agent_seconds_since_store_contact",
                                   "Seconds since etcd last answered the agent (-1 before the first answer)")
        self.since_contact.set_function(since_contact)
        self.watch_restarts = Counter("cni_vxlan_agent_watch_restarts",
                                      "Watches of the live-node prefix opened again after an error or an outage")
        self.outages = Counter("cni_vxlan_agent_store_outages", "Times the agent lost contact with etcd")
        self.reconcile = Histogram("cni_vxlan_agent_reconcile_duration_seconds",
                                   "Time to list the live nodes and reconcile the device's peer entries",
                                   buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.withdrawn = Counter("cni_vxlan_agent_peer_routes_withdrawn", "Routes of departed peers removed")
        self.errors = Counter("cni_vxlan_agent_errors", "Failed steps, by kind", ["kind"])
        for kind in ("store", "reconcile", "node_setup"):
            self.errors.labels(kind)


class Health:
    """What the probes answer: alive while the main loop turns, ready once the node's data path is set up."""

    def __init__(self, stale_after: float) -> None:
        self.stale_after = stale_after
        self.heartbeat = time.monotonic()
        self.ready = False

    def beat(self) -> None:
        self.heartbeat = time.monotonic()

    def alive(self) -> bool:
        return time.monotonic() - self.heartbeat < self.stale_after


def parse_listen(value: str) -> Optional[tuple[str, int]]:
    """``HOST:PORT`` (``[v6]:PORT``) -> (host, port); ``off`` or empty -> None. ValueError when malformed."""
    if value in ("", "off"):
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def serve(listen: tuple[str, int], health: Health) -> http.server.ThreadingHTTPServer:
    """Serve the three paths on ``listen`` from a daemon thread; returns the server (``server_address``)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._reply(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
            elif path in ("/healthz", "/livez"):
                ok = health.alive()
                self._reply(200 if ok else 503, b"ok\n" if ok else b"main loop stalled\n")
            elif path == "/readyz":
                ok = health.ready and health.alive()
                self._reply(200 if ok else 503, b"ok\n" if ok else b"node not set up yet\n")
            else:
                self._reply(404, b"try /metrics, /healthz or /readyz\n")

        def _reply(self, code: int, body: bytes, ctype: str = "text/plain; charset=utf-8") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:  # probes every few seconds: keep stderr for what matters
            pass

    class Server(http.server.ThreadingHTTPServer):
        daemon_threads = True
        address_family = socket.AF_INET6 if ":" in listen[0] else socket.AF_INET

    server = Server(listen, Handler)
    threading.Thread(target=server.serve_forever, name="vxlan-http", daemon=True).start()
    log.info("health and metrics on http://%s:%d/ (/healthz, /readyz, /metrics)", *server.server_address[:2])
    return server
