"""The protocol between the dhcp plugin and its daemon: one JSON line each way over a unix stream socket.

Upstream's plugin and daemon speak Go's net/rpc (gob over an HTTP ``CONNECT``), which no Python library
implements; ours is a line of JSON that names itself (``"cniSuiteDhcp": 1``). A mismatch is told apart, never
waited on: Go's daemon answers our line with an HTTP error (its request parser refuses it), and our daemon answers
Go's ``CONNECT /_goRPC_`` with an HTTP error the Go plugin prints. Every wait is bounded.
"""

from __future__ import annotations

import errno
import json
import socket

from cni_common.errors import CNIError, ErrorCode

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

#: Upstream's default, so the same ``daemonSocketPath`` (and the upstream systemd socket unit) keeps working.
DEFAULT_SOCKET_PATH = "/run/cni/dhcp.sock"
PROTOCOL_KEY = "cniSuiteDhcp"
PROTOCOL_VERSION = 1
#: A request or answer longer than this is refused (a CNI config is a few kilobytes).
MAX_LINE = 1 << 20
#: What our daemon answers a Go client (``CONNECT /_goRPC_ HTTP/1.0``): Go's rpc.DialHTTP prints the status.
GO_CLIENT_ANSWER = (b"HTTP/1.0 501 this is cni-suite's dhcp daemon: it does not speak Go net/rpc; "
                    b"use cni-suite's dhcp plugin with it\r\n\r\n")

CONNECT_TIMEOUT = 2.0


class DaemonUnreachable(CNIError):
    """Nothing (or nothing alive) listens on the socket: the plugin's DEL may go on without the daemon."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(ErrorCode.TRY_AGAIN_LATER, f"error dialing DHCP daemon: {path}: {reason}",
                         "is 'dhcp daemon' running? (see docs/dhcp.md)")


def call(path: str, method: str, args: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Send one request and return the daemon's ``result``; its ``error`` is raised as that CNIError.

    ``timeout`` bounds the whole exchange after connecting (connecting itself is bounded apart).
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.settimeout(CONNECT_TIMEOUT)
        try:
            sock.connect(path)
        except FileNotFoundError as exc:
            raise DaemonUnreachable(path, "no such file or directory") from exc
        except ConnectionRefusedError as exc:
            raise DaemonUnreachable(path, "connection refused (a stale socket: the daemon is gone)") from exc
        except TimeoutError as exc:
            raise DaemonUnreachable(path, "connect timed out (the daemon does not accept)") from exc
        except OSError as exc:
            raise DaemonUnreachable(path, exc.strerror or str(exc)) from exc
        sock.settimeout(timeout)
        request = {PROTOCOL_KEY: PROTOCOL_VERSION, "method": method, "args": args}
        try:
            sock.sendall(json.dumps(request).encode() + b"\n")
            line = _read_line(sock)
        except TimeoutError as exc:
            raise CNIError(ErrorCode.TRY_AGAIN_LATER,
                           f"DHCP daemon at {path} did not answer {method} within {timeout:g}s") from exc
        except OSError as exc:
            if exc.errno in (errno.EPIPE, errno.ECONNRESET):
                raise DaemonUnreachable(path, "connection closed by the daemon") from exc
            raise
    finally:
        sock.close()
    return _answer(path, method, line)


def _read_line(sock: socket.socket) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if b"\n" in chunk or size > MAX_LINE:
            break
    return b"".join(chunks)


def _answer(path: str, method: str, line: bytes) -> dict[str, Any]:
    if line.startswith(b"HTTP/"):
        status = line.split(b"\r\n", 1)[0].decode(errors="replace")
        raise CNIError(ErrorCode.INVALID_ENV,
                       f"the daemon at {path} is not cni-suite's dhcp daemon: it answered {status!r} "
                       "(upstream's Go dhcp daemon speaks Go net/rpc)",
                       "run this suite's 'dhcp daemon', or point daemonSocketPath at it")
    if not line:
        raise DaemonUnreachable(path, f"the daemon closed the connection without answering {method}")
    try:
        answer = json.loads(line)
    except ValueError as exc:
        raise CNIError(ErrorCode.INVALID_ENV, f"the daemon at {path} sent an answer that is not ours",
                       repr(line[:120])) from exc
    if not isinstance(answer, dict):
        raise CNIError(ErrorCode.INVALID_ENV, f"the daemon at {path} sent an answer that is not ours",
                       repr(line[:120]))
    error = answer.get("error")
    if isinstance(error, dict):
        raise CNIError(int(error.get("code", ErrorCode.INTERNAL)), str(error.get("msg", "")),
                       str(error.get("details", "")))
    result = answer.get("result")
    return result if isinstance(result, dict) else {}


def parse_request(line: bytes) -> tuple[str, dict[str, Any]]:
    """The method and arguments of one request line (the daemon's side); ValueError when it is not ours."""
    request = json.loads(line)
    if not isinstance(request, dict) or request.get(PROTOCOL_KEY) != PROTOCOL_VERSION:
        raise ValueError("not a cni-suite dhcp request (protocol version missing or unknown)")
    method, args = request.get("method"), request.get("args")
    if not isinstance(method, str) or not isinstance(args, dict):
        raise ValueError("request without a method or arguments")
    return method, args


def encode_result(result: dict[str, Any]) -> bytes:
    return json.dumps({"result": result}).encode() + b"\n"


def encode_error(err: CNIError) -> bytes:
    return json.dumps({"error": {"code": err.code, "msg": err.msg, "details": err.details}}).encode() + b"\n"


def is_go_rpc(line: bytes) -> bool:
    """Go's net/rpc client opens with an HTTP CONNECT (the plugin of upstream's suite)."""
    return line.startswith(b"CONNECT ") or line.startswith(b"GET ") or line.startswith(b"POST ")
