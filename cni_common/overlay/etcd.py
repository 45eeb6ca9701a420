"""A small etcd v3 client over etcd's JSON gateway (``/v3/...``), using nothing but the standard library.

Why not a PyPI client: the maintained ones speak gRPC, which costs a large import (and native wheels) in every
plugin exec, while the gateway that etcd serves on its client port offers the same KV, transaction, lease and
watch calls as JSON over HTTP. Keys and values travel base64-encoded and 64-bit numbers as strings; fields
with a zero value are left out of replies (proto3 JSON), so every read here has a default.

Endpoints are tried in order; the first that answers is remembered for the next call. A connection failure on
every endpoint raises :class:`StoreUnreachable`, whose message names the endpoints, so a mistyped address shows
up in the runtime's error. No consensus is done here: atomicity comes from etcd's own transactions.

Two bounds on waiting: ``timeout`` per attempt (one endpoint), and ``answer_within``, a budget for the store's
first answer shared by every endpoint (an ADD must not wait 3 x 5 s for a frozen cluster: it gets its answer,
or code 11, within that budget). With ``username``/``password`` the client takes a token from
``/v3/auth/authenticate`` and sends it on every call, taking a new one when etcd says it expired.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Iterator, Optional, Sequence

from ..errors import CNIError, ErrorCode, PluginCode
from ..record import record

DEFAULT_TIMEOUT = 5.0


class StoreError(CNIError):
    """etcd answered, but not with what we asked for (HTTP error, bad JSON, gRPC error in the body)."""

    def __init__(self, msg: str, details: str = "") -> None:
        super().__init__(PluginCode.STORE_FAILURE, msg, details)


class StoreUnreachable(CNIError):
    """No endpoint could be reached; code 11 (try again later), naming every endpoint tried."""

    def __init__(self, endpoints: Sequence[str], details: str) -> None:
        super().__init__(ErrorCode.TRY_AGAIN_LATER, f"etcd store unreachable at {', '.join(endpoints)}", details)


@record(frozen=True)
class KeyValue:
    """One key as etcd reports it."""

    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> KeyValue:
        return cls(key=_unb64(d.get("key", "")).decode(), value=_unb64(d.get("value", "")),
                   create_revision=int(d.get("create_revision", 0)), mod_revision=int(d.get("mod_revision", 0)),
                   version=int(d.get("version", 0)), lease=int(d.get("lease", 0)))


@record(frozen=True)
class WatchEvent:
    """A change under a watched range; ``kind`` is ``"PUT"`` or ``"DELETE"``."""

    kind: str
    key: str
    value: bytes
    revision: int


def _b64(data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode("ascii")


def _unb64(data: str) -> bytes:
    return base64.b64decode(data) if data else b""


def prefix_end(prefix: str) -> bytes:
    """The ``range_end`` that makes a range cover every key starting with ``prefix`` (last byte + 1)."""
    raw = bytearray(prefix.encode())
    while raw and raw[-1] == 0xFF:
        raw.pop()
    if not raw:
        return b"\0"
    raw[-1] += 1
    return bytes(raw)


# -- transaction building blocks (the gateway's JSON shapes) -------------------------------------------------

def cmp_absent(key: str) -> dict[str, Any]:
    """Compare: ``key`` does not exist (its create revision is 0)."""
    return {"key": _b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": "0"}


def cmp_mod_revision(key: str, revision: int) -> dict[str, Any]:
    """Compare: ``key`` was last written at ``revision`` (nobody changed it since we read it)."""
    return {"key": _b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": str(revision)}


def op_put(key: str, value: str | bytes, lease: int = 0) -> dict[str, Any]:
    body: dict[str, Any] = {"key": _b64(key), "value": _b64(value)}
    if lease:
        body["lease"] = str(lease)
    return {"request_put": body}


def op_delete(key: str) -> dict[str, Any]:
    return {"request_delete_range": {"key": _b64(key)}}


#: gRPC status codes etcd reports for a member that cannot serve right now (no leader, an election, a timeout
#: inside the cluster): UNAVAILABLE and DEADLINE_EXCEEDED. Such an answer counts as "unreachable" (code 11),
#: and the next endpoint is tried; found by the leader-kill fault test ("etcdserver: leader changed").
_TRANSIENT_GRPC_CODES = (4, 14)


def _transient(detail: str) -> bool:
    try:
        return int(json.loads(detail).get("code", 0)) in _TRANSIENT_GRPC_CODES
    except (ValueError, AttributeError, TypeError):
        return False


def validate_endpoint(endpoint: str) -> str:
    """An endpoint is ``http(s)://host:port``; anything else is a config error naming it (code 7)."""
    parsed = urllib.parse.urlsplit(endpoint)
    try:
        port = parsed.port
    except ValueError:
        port = None
    if parsed.scheme not in ("http", "https") or not parsed.hostname or port is None or parsed.path not in ("", "/"):
        raise CNIError(ErrorCode.INVALID_CONFIG, f"invalid etcd endpoint {endpoint!r}",
                       "expected http://host:port or https://host:port")
    return endpoint.rstrip("/")


class EtcdClient:
    """Blocking etcd v3 calls over the JSON gateway; one instance per thread.

    ``last_answer`` and ``last_failure`` (monotonic times of the last answered call and the last failed
    attempt on any endpoint) tell the agent when it last heard from the store and whether it had trouble since.
    """

    def __init__(self, endpoints: Sequence[str], *, timeout: float = DEFAULT_TIMEOUT,
                 answer_within: Optional[float] = None, ca_file: str = "", cert_file: str = "", key_file: str = "",
                 username: str = "", password: str = "") -> None:
        if not endpoints:
            raise CNIError(ErrorCode.INVALID_CONFIG, "invalid config: store.etcd.endpoints is empty")
        self.endpoints = [validate_endpoint(e) for e in endpoints]
        self.timeout = timeout
        self._first_answer_by = time.monotonic() + answer_within if answer_within is not None else None
        self._ssl = self._ssl_context(ca_file, cert_file, key_file)
        self._preferred = 0
        self._username, self._password = username, password
        self._token = ""
        self.last_answer: Optional[float] = None
        self.last_failure: Optional[float] = None
        # The open watch's connection, for interrupt_watch() from another thread. One reference stored and read
        # whole (atomic in CPython): no lock, and no threading import on the plugin's call path (~1 ms per ADD).
        self._watch_conn: Optional[http.client.HTTPConnection] = None

    @staticmethod
    def _ssl_context(ca_file: str, cert_file: str, key_file: str) -> Optional[ssl.SSLContext]:
        if not (ca_file or cert_file or key_file):
            return None
        try:
            ctx = ssl.create_default_context(cafile=ca_file or None)
            if cert_file:
                ctx.load_cert_chain(cert_file, key_file or None)
        except (OSError, ssl.SSLError) as exc:
            raise CNIError(ErrorCode.INVALID_CONFIG, "invalid etcd TLS files (store.etcd caFile/certFile/keyFile)",
                           str(exc)) from exc
        return ctx

    # -- transport ----------------------------------------------------------------------------------------

    def _order(self) -> list[int]:
        n = len(self.endpoints)
        return [(self._preferred + i) % n for i in range(n)]

    def _attempt_timeout(self, endpoints_left: int) -> float:
        """``timeout``, or until the first answer: an equal share of what is left of ``answer_within``."""
        if self._first_answer_by is None or self.last_answer is not None:
            return self.timeout
        left = self._first_answer_by - time.monotonic()
        return min(self.timeout, left / endpoints_left) if left > 0 else 0.0

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self._token:
            headers["Authorization"] = self._token
        return headers

    def _open(self, path: str, body: dict[str, Any], timeout: Optional[float], stream: bool = False) -> Any:
        """POST ``body`` to the first endpoint that answers; returns the open HTTP response.

        ``timeout`` None means "the attempt timeout" (see :meth:`_attempt_timeout`); a stream (a watch) opens its
        own connection (:meth:`_open_stream`) so another thread can end it.
        """
        data = json.dumps(body).encode()
        failures: list[str] = []
        order = self._order()
        for n, index in enumerate(order):
            attempt = self._attempt_timeout(len(order) - n)
            if attempt <= 0:
                failures.append(f"{self.endpoints[index]}: no answer within the time allowed")
                continue
            try:
                if stream:
                    resp = self._open_stream(self.endpoints[index], path, data, attempt, timeout)
                else:
                    req = urllib.request.Request(self.endpoints[index] + path, data=data, headers=self._headers())
                    resp = urllib.request.urlopen(req, timeout=timeout or attempt, context=self._ssl)
            except urllib.error.HTTPError as exc:
                detail = exc.read().decode(errors="replace")[:500]
                if _transient(detail):  # "leader changed", "request timed out": this member cannot serve now
                    failures.append(f"{self.endpoints[index]}: {detail}")
                    self.last_failure = time.monotonic()
                    continue
                self.last_answer = time.monotonic()
                raise StoreError(f"etcd at {self.endpoints[index]} refused {path}", detail) from exc
            except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
                reason = getattr(exc, "reason", exc)
                failures.append(f"{self.endpoints[index]}: {reason}")
                self.last_failure = time.monotonic()
                continue
            self._preferred = index
            return resp
        raise StoreUnreachable(self.endpoints, "; ".join(failures))

    def _open_stream(self, endpoint: str, path: str, data: bytes, attempt: float,
                     idle_timeout: Optional[float]) -> Any:
        """A streamed POST on a connection of its own: connected within ``attempt`` seconds, then each read
        bounded by ``idle_timeout``; :meth:`interrupt_watch` can shut it down from another thread."""
        parts = urllib.parse.urlsplit(endpoint)
        conn: http.client.HTTPConnection
        if parts.scheme == "https":
            conn = http.client.HTTPSConnection(parts.hostname or "", parts.port, timeout=attempt,
                                               context=self._ssl or ssl.create_default_context())
        else:
            conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=attempt)
        try:
            conn.request("POST", path, body=data, headers=self._headers())
            resp = conn.getresponse()
        except BaseException:
            conn.close()
            raise
        if resp.status >= 400:
            detail = resp.read().decode(errors="replace")[:500]
            conn.close()
            raise StoreError(f"etcd at {endpoint} refused {path} (HTTP {resp.status})", detail)
        if conn.sock is not None:
            conn.sock.settimeout(idle_timeout)
        self._watch_conn = conn
        return resp

    def interrupt_watch(self) -> None:
        """End the current watch stream from another thread (its reader sees the stream end)."""
        sock = getattr(self._watch_conn, "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """One unary gateway call, e.g. ``call("/v3/kv/range", {...})``; authenticates first if configured."""
        if self._username and not self._token:
            self._authenticate()
        try:
            return self._call(path, body)
        except StoreError as exc:
            if not (self._username and "auth token" in exc.details):
                raise
            self._authenticate()  # the token expired (etcd's --auth-token-ttl): one more try with a new one
            return self._call(path, body)

    def _call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        with self._open(path, body, None) as resp:
            try:
                raw = resp.read()
            except (OSError, http.client.HTTPException) as exc:  # the member died or froze mid-answer
                self.last_failure = time.monotonic()
                raise StoreUnreachable([self.endpoints[self._preferred]], f"answer cut short: {exc!r}") from exc
        self.last_answer = time.monotonic()
        try:
            reply = json.loads(raw)
        except ValueError as exc:
            raise StoreError(f"etcd replied to {path} with something that is not JSON", raw[:200].decode(
                errors="replace")) from exc
        if isinstance(reply, dict) and "error" in reply and "header" not in reply:
            raise StoreError(f"etcd error on {path}", str(reply.get("error")))
        return reply

    def _authenticate(self) -> None:
        self._token = ""
        try:
            reply = self._call("/v3/auth/authenticate", {"name": self._username, "password": self._password})
        except StoreError as exc:
            raise StoreError(f"etcd refused user {self._username!r} (store.etcd.username/password)",
                             exc.details) from exc
        self._token = str(reply.get("token", ""))

    # -- KV ---------------------------------------------------------------------------------------------

    def get(self, key: str) -> Optional[KeyValue]:
        kvs = self.call("/v3/kv/range", {"key": _b64(key)}).get("kvs", [])
        return KeyValue.from_json(kvs[0]) if kvs else None

    def get_prefix(self, prefix: str) -> tuple[list[KeyValue], int]:
        """Every key under ``prefix`` and the store revision the read saw (to start a watch after it)."""
        reply = self.call("/v3/kv/range", {"key": _b64(prefix), "range_end": _b64(prefix_end(prefix))})
        revision = int(reply.get("header", {}).get("revision", 0))
        return [KeyValue.from_json(kv) for kv in reply.get("kvs", [])], revision

    def put(self, key: str, value: str | bytes, lease: int = 0) -> None:
        self.call("/v3/kv/put", op_put(key, value, lease)["request_put"])

    def delete(self, key: str) -> None:
        self.call("/v3/kv/deleterange", {"key": _b64(key)})

    def txn(self, compare: list[dict[str, Any]], success: list[dict[str, Any]],
            failure: Optional[list[dict[str, Any]]] = None) -> bool:
        """An atomic If/Then/Else; True when every comparison held and ``success`` was applied."""
        reply = self.call("/v3/kv/txn", {"compare": compare, "success": success, "failure": failure or []})
        return bool(reply.get("succeeded", False))

    # -- leases -----------------------------------------------------------------------------------------

    def grant(self, ttl: int) -> int:
        reply = self.call("/v3/lease/grant", {"TTL": str(ttl)})
        if reply.get("error"):
            raise StoreError("etcd refused a lease", str(reply["error"]))
        return int(reply["ID"])

    def keepalive(self, lease: int) -> int:
        """Renew ``lease`` once; returns its new TTL, 0 when the lease no longer exists."""
        reply = self.call("/v3/lease/keepalive", {"ID": str(lease)})
        return int(reply.get("result", {}).get("TTL", 0))

    # -- watch ------------------------------------------------------------------------------------------

    def watch_prefix(self, prefix: str, start_revision: int, idle_timeout: Optional[float] = None
                     ) -> Iterator[list[WatchEvent]]:
        """Yield batches of changes under ``prefix`` from ``start_revision`` on, until the stream ends.

        The first batch is empty: etcd confirmed the watch (the caller knows the store is back).
        ``idle_timeout`` bounds the wait for one batch (a socket timeout then ends the iteration with an
        ``OSError``); the caller re-watches from the last revision it saw, so nothing is lost in between.
        """
        body = {"create_request": {"key": _b64(prefix), "range_end": _b64(prefix_end(prefix)),
                                   "start_revision": str(start_revision)}}
        if self._username and not self._token:
            self._authenticate()
        resp = self._open("/v3/watch", body, idle_timeout, stream=True)
        conn = self._watch_conn
        assert conn is not None  # set by _open_stream
        with resp, contextlib.closing(conn):
            try:
                yield from self._watch_events(resp)
            except http.client.HTTPException as exc:  # a chunk cut short (interrupted, member gone)
                raise StoreError("the watch stream broke", repr(exc)) from exc

    @staticmethod
    def _watch_events(resp: Any) -> Iterator[list[WatchEvent]]:
        """The batches of one open watch stream (one JSON message per line)."""
        for line in resp:
            if not line.strip():
                continue
            message = json.loads(line)
            if "error" in message:
                raise StoreError("etcd ended the watch", str(message["error"]))
            result = message.get("result", {})
            if result.get("canceled"):
                raise StoreError("etcd cancelled the watch", str(result.get("cancel_reason", "")))
            events = [WatchEvent(kind=str(ev.get("type", "PUT")), key=_unb64(ev["kv"].get("key", "")).decode(),
                                 value=_unb64(ev["kv"].get("value", "")),
                                 revision=int(ev["kv"].get("mod_revision", 0)))
                      for ev in result.get("events", [])]
            if events or result.get("created"):
                yield events
