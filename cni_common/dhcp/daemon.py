"""``dhcp daemon``: holds the DHCP leases of the node's containers and answers the dhcp plugin.

Upstream's flags (``-socketpath -broadcast -timeout -resendmax -resendtimeout -hostprefix -pidfile``, Go's flag
syntax: one or two dashes, ``-flag value`` or ``-flag=value``), plus ``-leasedir`` (where leases are kept on disk).
Where upstream errs, this daemon does not (docs/dhcp.md): leases survive a restart (re-acquired, the same
addresses); a stale socket (a crash, SIGKILL) does not stop the start, a live daemon on it does; requests for one
lease key are serialised (a lock per key), every wait is bounded; ``-broadcast`` is honoured.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import stat
import sys
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cni_common.config import get_key, valid_attachments
from cni_common.dhcp import wire
from cni_common.dhcp.options import client_id, settings
from cni_common.dhcp.store import DEFAULT_LEASE_DIR, LeaseStore
from cni_common.errors import CNIError, ErrorCode
from cni_common.log import configure, get_logger

if TYPE_CHECKING:
    from cni_common.dhcp.lease import LeaseKeeper

log = get_logger(__name__)

#: systemd socket activation: the first inherited fd.
SD_LISTEN_FDS_START = 3
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Go's ``time.ParseDuration`` (``10s``, ``1m30s``, ``500ms``) in seconds; ``0`` alone is allowed."""
    text = text.strip()
    if text == "0":
        return 0.0
    pos, total = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r} (e.g. 10s, 1m30s, 500ms)")
    return total


@dataclass
class DaemonConfig:
    socket_path: str = wire.DEFAULT_SOCKET_PATH
    pidfile: str = ""
    hostprefix: str = ""
    broadcast: bool = False
    timeout: float = 10.0
    resend_max: float = 62.0
    resend_timeout: float = 208.0
    lease_dir: str = DEFAULT_LEASE_DIR

    @property
    def listen_path(self) -> str:
        return self.hostprefix + self.socket_path


def parse_flags(argv: list[str]) -> DaemonConfig:
    parser = argparse.ArgumentParser(prog="dhcp daemon", description="keeps the DHCP leases of the dhcp IPAM plugin")
    parser.add_argument("-socketpath", "--socketpath", default=wire.DEFAULT_SOCKET_PATH,
                        help=f"the unix socket the plugin calls (default {wire.DEFAULT_SOCKET_PATH})")
    parser.add_argument("-pidfile", "--pidfile", default="", help="write the daemon's pid there (absolute path)")
    parser.add_argument("-hostprefix", "--hostprefix", default="",
                        help="the host's root as seen by the daemon (in a container): prefixed to the socket and "
                             "netns paths")
    parser.add_argument("-broadcast", "--broadcast", action="store_true",
                        help="set the broadcast flag in DISCOVER and REQUEST (the server broadcasts its answers)")
    parser.add_argument("-timeout", "--timeout", type=parse_duration, default=10.0,
                        help="how long to wait for a request from a plugin (default 10s)")
    parser.add_argument("-resendmax", "--resendmax", type=parse_duration, default=62.0,
                        help="the longest wait between resent DHCP packets (default 62s)")
    parser.add_argument("-resendtimeout", "--resendtimeout", type=parse_duration, default=208.0,
                        help="how long one acquisition may take (default 208s)")
    parser.add_argument("-leasedir", "--leasedir", default=DEFAULT_LEASE_DIR,
                        help=f"where leases are kept across restarts (default {DEFAULT_LEASE_DIR})")
    parser.add_argument("-loglevel", "--loglevel", default="info", help="debug, info, warning, error (default info)")
    opts = parser.parse_args(argv)
    if opts.pidfile and not os.path.isabs(opts.pidfile):
        parser.error(f"-pidfile must be an absolute path, not {opts.pidfile!r}")
    configure(opts.loglevel if opts.loglevel.upper() in ("DEBUG", "INFO", "WARNING", "ERROR") else "info")
    return DaemonConfig(socket_path=opts.socketpath, pidfile=opts.pidfile, hostprefix=opts.hostprefix.rstrip("/"),
                        broadcast=opts.broadcast, timeout=opts.timeout, resend_max=opts.resendmax,
                        resend_timeout=opts.resendtimeout, lease_dir=opts.leasedir)


class Daemon:
    """The lease table and the requests on it; one lock per key, so concurrent calls for one lease queue."""

    def __init__(self, cfg: DaemonConfig) -> None:
        from cni_common.dhcp.lease import Timing

        self.cfg = cfg
        self.store = LeaseStore(cfg.lease_dir)
        self.timing = Timing(acquire_timeout=cfg.resend_timeout, resend_max=cfg.resend_max, broadcast=cfg.broadcast)
        self.keepers: dict[str, LeaseKeeper] = {}  # lease.py (pyroute2) loads here, not for --help
        self._table = threading.Lock()
        self._key_locks: dict[str, threading.Lock] = {}

    def _lock(self, key: str) -> threading.Lock:
        with self._table:
            return self._key_locks.setdefault(key, threading.Lock())

    def _keeper(self, key: str, request: dict[str, Any], stored_lease: dict[str, Any] | None = None
                ) -> LeaseKeeper:
        from cni_common.dhcp.lease import LeaseKeeper

        ipam = request["ipam"]
        client = settings(ipam, request["containerID"], request["network"], request["ifname"], request["args"])

        def on_lease(lease: dict[str, Any]) -> None:
            self.store.save(key, {"request": request, "lease": lease})

        def on_gone() -> None:
            with self._table:
                self.keepers.pop(key, None)
            self.store.remove(key)

        keeper = LeaseKeeper(key, self.cfg.hostprefix + request["netns"], request["ifname"], client, self.timing,
                             on_lease, on_gone, stored_lease)
        with self._table:
            self.keepers[key] = keeper
        keeper.start()
        return keeper

    # --- requests ----------------------------------------------------------------------------------------------
    def handle(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        if method == "status":
            return {}
        if method == "gc":
            return self.gc(args)
        request = _request(args)
        key = client_id(request["containerID"], request["network"], request["ifname"]).decode(errors="replace")
        with self._lock(key):
            if method == "allocate":
                return self.allocate(key, request)
            if method == "check":
                return self.check(key)
            if method == "release":
                self.release(key)
                return {}
        raise CNIError(ErrorCode.INVALID_ENV, f"unknown dhcp daemon method {method!r}")

    def allocate(self, key: str, request: dict[str, Any]) -> dict[str, Any]:
        """The lease of this key (an ADD repeated, or after a restart) or a new one; a failed one leaves nothing."""
        keeper = self.keepers.get(key)
        if keeper is not None and not keeper.ended and keeper.netns_path == self.cfg.hostprefix + request["netns"]:
            return keeper.current_result() or keeper.wait_bound(self.cfg.resend_timeout)
        if keeper is not None:
            keeper.stop(release=False)
        keeper = self._keeper(key, request)
        try:
            return keeper.wait_bound(self.cfg.resend_timeout)
        except CNIError:
            keeper.stop(release=False)
            with self._table:
                self.keepers.pop(key, None)
            self.store.remove(key)
            raise

    def check(self, key: str) -> dict[str, Any]:
        keeper = self.keepers.get(key)
        result = keeper.current_result() if keeper is not None else None
        if result is None:
            raise CNIError(ErrorCode.INVALID_ENV, f"{key}: the dhcp daemon holds no lease for it")
        return result

    def release(self, key: str) -> None:
        """Send DHCPRELEASE and forget the lease; an unknown key is success (DEL is idempotent)."""
        with self._table:
            keeper = self.keepers.pop(key, None)
        if keeper is not None:
            keeper.stop(release=True)
        self.store.remove(key)

    def gc(self, args: dict[str, Any]) -> dict[str, Any]:
        """Release this network's leases whose attachment ``cni.dev/valid-attachments`` does not list."""
        conf = _conf(args)
        valid = valid_attachments(conf)
        network = str(conf.get("name", ""))
        if valid is None:
            return {}
        keep = {client_id(cid, network, ifname).decode(errors="replace") for cid, ifname in valid}
        with self._table:
            stale = [key for key in self.keepers if key.split("/")[1:2] == [network] and key not in keep]
        for key in stale:
            with self._lock(key):
                self.release(key)
        return {"released": stale}

    # --- start -------------------------------------------------------------------------------------------------
    def adopt(self) -> None:
        """Keep the leases of the last run whose container still has its link (INIT-REBOOT: the same address);
        the others are forgotten (their container is gone, without a DEL)."""
        for record in self.store.load_all():
            key, request = record["key"], record["request"]
            try:
                _request(request)
                alive = _link_alive(self.cfg.hostprefix + request["netns"], request["ifname"])
            except (CNIError, KeyError, TypeError):
                alive = False
            if not alive:
                log.info("%s: container gone while the daemon was down: lease forgotten", key)
                self.store.remove(key)
                continue
            log.info("%s: keeping the lease of the last run (%s)", key, _leased_ip(record))
            self._keeper(key, request, record.get("lease"))


def _request(args: dict[str, Any]) -> dict[str, Any]:
    """The lease request a plugin sent: identity, netns, ifname, CNI_ARGS and the ``ipam`` block."""
    conf = _conf(args)
    for name in ("containerID", "netns", "ifname"):
        if not isinstance(args.get(name), str) or not args[name]:
            raise CNIError(ErrorCode.INVALID_ENV, f"dhcp daemon: request without {name}")
    ipam = get_key(conf, "ipam")
    return {"containerID": args["containerID"], "netns": args["netns"], "ifname": args["ifname"],
            "args": str(args.get("args", "")), "network": str(conf.get("name", "")),
            "ipam": ipam if isinstance(ipam, dict) else {}}


def _conf(args: dict[str, Any]) -> dict[str, Any]:
    import json

    try:
        conf = json.loads(args.get("stdin") or "{}")
    except ValueError as exc:
        raise CNIError(ErrorCode.DECODING_FAILURE, "dhcp daemon: the request's config is not JSON") from exc
    if not isinstance(conf, dict):
        raise CNIError(ErrorCode.DECODING_FAILURE, "dhcp daemon: the request's config is not a JSON object")
    return conf


def _leased_ip(record: dict[str, Any]) -> str:
    lease = record.get("lease")
    return str(lease.get("ack", {}).get("yiaddr", "?")) if isinstance(lease, dict) else "?"


def _link_alive(netns_path: str, ifname: str) -> bool:
    from cni_common.netns import NetNS

    with NetNS(netns_path) as netns, netns.entered():
        try:
            socket.if_nametoindex(ifname)
        except OSError:
            return False
    return True


# --- the socket --------------------------------------------------------------------------------------------------
def socket_activated() -> bool:
    """systemd passed the listening socket (and owns its file)."""
    return os.environ.get("LISTEN_PID") == str(os.getpid()) and bool(os.environ.get("LISTEN_FDS"))


def listen(path: str) -> socket.socket:
    """The daemon's socket: the one systemd passed, or a new one at ``path``.

    A socket file left by a daemon that died (nothing accepts on it) is removed; a live daemon on it, or a file
    that is not a socket, stops the start with a message (upstream fails on both: ``address already in use``).
    """
    if socket_activated():
        count = int(os.environ["LISTEN_FDS"])
        if count != 1:
            raise SystemExit(f"dhcp daemon: Too many ({count}) FDs passed through socket activation")
        return socket.socket(fileno=SD_LISTEN_FDS_START)
    os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        mode = None
    if mode is not None:
        if not stat.S_ISSOCK(mode):
            raise SystemExit(f"dhcp daemon: {path} exists and is not a socket: not removing it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        probe.settimeout(1.0)
        try:
            probe.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            log.info("removing the stale socket %s (nothing listens on it)", path)
            os.unlink(path)
        except OSError as exc:
            raise SystemExit(f"dhcp daemon: cannot tell whether a daemon serves {path}: {exc}") from exc
        else:
            raise SystemExit(f"dhcp daemon: another daemon is serving {path}")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    sock.bind(path)
    os.chmod(path, 0o660)
    sock.listen(64)
    return sock


def _serve_one(daemon: Daemon, conn: socket.socket) -> None:
    with conn:
        conn.settimeout(daemon.cfg.timeout)
        try:
            line = _read_request(conn)
        except (TimeoutError, OSError) as exc:
            log.warning("dropping a client: %s", exc)
            return
        if not line:  # a probe (a second daemon's start, a health check): nothing to answer
            return
        if wire.is_go_rpc(line):
            log.warning("a Go net/rpc client (upstream's dhcp plugin?) called: answered that we do not speak it")
            _send(conn, wire.GO_CLIENT_ANSWER)
            return
        try:
            method, args = wire.parse_request(line)
        except ValueError as exc:
            _send(conn, wire.encode_error(CNIError(ErrorCode.DECODING_FAILURE, f"dhcp daemon: {exc}")))
            return
        try:
            answer = wire.encode_result(daemon.handle(method, args))
        except CNIError as exc:
            answer = wire.encode_error(exc)
        except Exception as exc:  # noqa: BLE001 - one failed request answers an error, the daemon serves on
            log.error("%s failed: %s", method, exc)
            answer = wire.encode_error(CNIError(ErrorCode.INTERNAL, f"dhcp daemon: {method} failed: {exc}"))
        _send(conn, answer)


def _read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\n" not in data and len(data) < wire.MAX_LINE:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
        if data.startswith(b"CONNECT ") and b"\n\n" in data.replace(b"\r", b""):
            break
    return data


def _send(conn: socket.socket, data: bytes) -> None:
    try:
        conn.sendall(data)
    except OSError as exc:
        log.warning("the plugin left before the answer: %s", exc)


class _Stop(Exception):
    """SIGTERM or SIGINT: leave the accept loop and clean up."""


def _stop(signum: int, frame: object) -> None:
    raise _Stop(signum)


def run_cli(argv: list[str]) -> int:
    """Entry point of ``dhcp daemon [flags]``."""
    cfg = parse_flags(argv)
    daemon = Daemon(cfg)
    try:
        listener = listen(cfg.listen_path)
    except SystemExit as exc:
        log.error("%s", exc.code)
        return 1
    if cfg.pidfile:
        with open(cfg.pidfile, "w", encoding="ascii") as pidfile:
            pidfile.write(f"{os.getpid()}\n")
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    log.info("dhcp daemon listening on %s (leases in %s)", cfg.listen_path, cfg.lease_dir)
    try:
        daemon.adopt()
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=_serve_one, args=(daemon, conn), daemon=True).start()
    except _Stop:
        log.info("stopping: leases stay on disk and are kept by the next start")
    finally:
        listener.close()
        for path in ("" if socket_activated() else cfg.listen_path, cfg.pidfile):
            if path:
                try:
                    os.unlink(path)
                except OSError:
                    pass
        sys.stderr.flush()
    return 0
