"""A small client of the Kubernetes API for a pod of the cluster: ``GET`` one object, over the standard library.

What a pod gets to reach the API server (the "in-cluster" configuration every client library reads):
``KUBERNETES_SERVICE_HOST`` and ``KUBERNETES_SERVICE_PORT`` in its environment, and the service account's files
in ``/var/run/secrets/kubernetes.io/serviceaccount``: ``token`` (a bearer token), ``ca.crt`` (the CA the API
server's certificate is signed by), ``namespace``.

- TLS is verified against that ``ca.crt`` (certificate chain and the server's name or IP), never switched off.
- The token and the CA are read again for every request: a projected token is rotated by the kubelet (about
  every hour), and a client that keeps the first one gets 401 after its expiry.
- Errors are of two kinds, because the caller acts differently on them: :class:`APIError` is an answer of the
  server (401, 403, 404...: with the ``Status`` object's reason and message, as the API returns them), and
  :class:`Unreachable` is no usable answer (connection refused or cut, timeout, TLS refused, a truncated or
  non-JSON body): worth retrying.

Why our own client and not the official ``kubernetes`` package: docs/kubernetes.md (measured: importing it costs
more than this whole module does, and it pulls ten packages into the single file for one GET).
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import time
from typing import Any, Mapping, NamedTuple
from urllib.parse import quote

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
#: The largest answer read: a Node object is tens of KiB (its image list included); beyond this it is not one.
MAX_ANSWER = 16 << 20
_CHUNK = 65536


class NotInCluster(Exception):
    """The in-cluster configuration is missing (no service host in the environment, no service account files)."""


class Unreachable(Exception):
    """No usable answer from the API server: retry later."""


class APIError(Exception):
    """The API server answered with an error status; ``reason`` and ``message`` come from its Status object."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(f"{code} {reason}: {message}" if message else f"{code} {reason}")
        self.code, self.reason, self.message = code, reason, message


class InCluster(NamedTuple):
    """Where the API server is and the service account files to reach it with."""

    host: str
    port: int
    token_file: str
    ca_file: str

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"


def in_cluster(env: Mapping[str, str], account_dir: str = SERVICE_ACCOUNT_DIR) -> InCluster:
    """The in-cluster configuration from ``env`` and ``account_dir``; :class:`NotInCluster` names what is missing."""
    host, port = env.get("KUBERNETES_SERVICE_HOST", ""), env.get("KUBERNETES_SERVICE_PORT", "443") or "443"
    if not host:
        raise NotInCluster("KUBERNETES_SERVICE_HOST is not set (the kubelet sets it in every pod)")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise NotInCluster(f"KUBERNETES_SERVICE_PORT: {port!r} is not a port number")
    token_file, ca_file = os.path.join(account_dir, "token"), os.path.join(account_dir, "ca.crt")
    for path in (token_file, ca_file):
        if not os.path.isfile(path):
            raise NotInCluster(f"{path} is missing: the pod has no service account token mounted "
                               f"(automountServiceAccountToken: false?)")
    return InCluster(host=host, port=int(port), token_file=token_file, ca_file=ca_file)


def service_account_name(token_file: str) -> str:
    """``namespace/name`` of the account a token belongs to, from the token's ``sub`` claim
    (``system:serviceaccount:NAMESPACE:NAME``), for error messages; "" when it cannot be read. The claim is
    only read, not verified: the API server does that."""
    import base64

    try:
        with open(token_file, encoding="ascii") as f:
            payload = f.read().strip().split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        prefix, _, account = str(claims.get("sub", "")).partition("system:serviceaccount:")
    except (OSError, IndexError, ValueError, AttributeError):
        return ""
    return account.replace(":", "/", 1) if not prefix and account else ""


def get(cluster: InCluster, path: str, timeout: float = 10.0) -> Any:
    """``GET path`` (e.g. ``/api/v1/nodes/node-1``): the decoded JSON object of a 200 answer. ``timeout`` bounds
    each wait for the server and the whole answer; an answer over :data:`MAX_ANSWER` bytes is refused."""
    try:
        with open(cluster.token_file, encoding="utf-8") as f:
            token = f.read().strip()
        context = ssl.create_default_context(cafile=cluster.ca_file)
    except (OSError, ssl.SSLError, UnicodeDecodeError) as exc:
        raise Unreachable(f"service account files: {exc}") from exc
    if not token or not token.isascii() or not token.isprintable():  # (being rotated; or no token at all)
        raise Unreachable(f"{cluster.token_file} holds no bearer token")
    start = time.monotonic()
    connection = http.client.HTTPSConnection(cluster.host, cluster.port, context=context, timeout=timeout)
    try:
        connection.request("GET", path, headers={"Authorization": f"Bearer {token}", "Accept": "application/json",
                                                 "User-Agent": "cni-suite"})
        response = connection.getresponse()
        body = _read_body(response, start + timeout)
    except ssl.SSLCertVerificationError as exc:
        raise Unreachable(f"{cluster.address}: TLS refused, the server's certificate does not verify against "
                          f"{cluster.ca_file}: {exc.verify_message}") from exc
    except (OSError, http.client.HTTPException) as exc:  # refused, reset, timeout, cut mid-body, bad HTTP
        raise Unreachable(f"{cluster.address}{path}: {_describe(exc)}") from exc
    finally:
        connection.close()
    if response.status != 200:
        raise _api_error(response.status, response.reason, body)
    try:
        return json.loads(body)
    except ValueError as exc:
        raise Unreachable(f"{cluster.address}{path}: the answer is not JSON ({exc})") from exc


def get_node(cluster: InCluster, name: str, timeout: float = 10.0) -> dict[str, Any]:
    """The Node object ``name`` (``GET /api/v1/nodes/NAME``; RBAC: ``get`` on ``nodes``)."""
    node = get(cluster, f"/api/v1/nodes/{quote(name, safe='')}", timeout)
    if not isinstance(node, dict) or node.get("kind", "Node") != "Node":
        raise Unreachable(f"GET /api/v1/nodes/{name}: the answer is not a Node object")
    return node


def _api_error(code: int, http_reason: str, body: bytes) -> APIError:
    """An error answer as the API server words it: a ``Status`` object (``reason``, ``message``)."""
    try:
        status = json.loads(body)
    except ValueError:
        status = None
    if isinstance(status, dict) and status.get("kind") == "Status":
        return APIError(code, str(status.get("reason") or http_reason), str(status.get("message") or ""))
    return APIError(code, http_reason, body[:200].decode("utf-8", "replace").strip())


class _AnswerTooLarge(http.client.HTTPException):
    def __str__(self) -> str:
        return f"the answer is larger than {MAX_ANSWER} bytes"


class _AnswerTooSlow(http.client.HTTPException):
    def __str__(self) -> str:
        return "the answer did not end in time"


def _read_body(response: http.client.HTTPResponse, deadline: float) -> bytes:
    """The answer's body, bounded as a whole: ``timeout`` bounds each read of the socket, so a server that sends
    a byte now and then, or an endless body, would otherwise hold the caller (an installer's start) for ever."""
    chunks: list[bytes] = []
    size = 0
    while True:
        if time.monotonic() > deadline:
            raise _AnswerTooSlow()
        chunk = response.read1(_CHUNK)  # what has arrived (read() would wait for the whole chunk)
        if not chunk:
            if response.length:  # the connection ended before the Content-Length did
                raise http.client.IncompleteRead(b"".join(chunks), response.length)
            return b"".join(chunks)
        size += len(chunk)
        if size > MAX_ANSWER:
            raise _AnswerTooLarge()
        chunks.append(chunk)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, http.client.IncompleteRead):
        return f"the connection was cut after {len(exc.partial)} bytes of the answer"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "no answer in time"
    if isinstance(exc, http.client.RemoteDisconnected):
        return "the server closed the connection without an answer"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
