"""A stand-in for kube-apiserver that answers ``GET /api/v1/nodes/NAME`` exactly as the API does, over TLS.

No kube-apiserver can be had on these machines; the installer's client only ever sends that one request, so this
server answers it with the API's own objects (Node, and Status for errors, as in the API reference): 200 with
``spec.podCIDR``/``spec.podCIDRs``, 401 ``Unauthorized`` for an unknown token, 403 ``Forbidden`` naming the
service account user as the authorizer does, 404 ``NotFound``. It can also answer slowly or cut the connection
in the middle of the body.

Its state is a JSON file read again for every request, so a test (or this process run in a test netns with
``python -m tests.helpers.kube_api STATE CERT KEY ADDRESS PORT``) changes the cluster by rewriting it, e.g. a
node gaining its pod CIDR. Every request is appended to ``STATE.requests`` (path and token) for the tests.

State keys: ``nodes`` {name: [pod CIDRs]}; ``tokens`` {token: user}; ``allowed`` [users who may get nodes];
``delay`` seconds before answering; ``cut`` true: send half the body of a 200 then close.
"""

from __future__ import annotations

import base64
import json
import socket
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

SERVICE_ACCOUNT_USER = "system:serviceaccount:kube-system:cni-suite"


def make_token(user: str = SERVICE_ACCOUNT_USER, serial: int = 1) -> str:
    """A token shaped like a projected service account token (a JWT; the signature is not checked here)."""
    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    return ".".join((part({"alg": "RS256", "kid": "cnt"}), part({"sub": user, "jti": serial}), "c2lnbmF0dXJl"))


def node_object(name: str, cidrs: list[str]) -> dict[str, Any]:
    spec: dict[str, Any] = {"providerID": f"cnt://{name}"}
    if cidrs:  # the API omits both fields until the node IPAM controller has assigned a range
        spec.update(podCIDR=cidrs[0], podCIDRs=cidrs)
    return {
        "kind": "Node", "apiVersion": "v1",
        "metadata": {"name": name, "uid": "5f2b1a9e-3c6d-4e8f-9a0b-1c2d3e4f5a6b", "resourceVersion": "4711",
                     "creationTimestamp": "2026-12-07T04:00:00Z",
                     "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}},
        "spec": spec,
        "status": {"conditions": [{"type": "Ready", "status": "False", "reason": "KubeletNotReady",
                                   "message": "container runtime network not ready: NetworkReady=false"}],
                   "addresses": [{"type": "Hostname", "address": name}]},
    }


def status_object(code: int, reason: str, message: str, name: str = "") -> dict[str, Any]:
    status: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                              "message": message, "reason": reason, "code": code}
    if name:
        status["details"] = {"name": name, "kind": "nodes"}
    return status


class _Handler(BaseHTTPRequestHandler):
    server: "KubeAPIServer"
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        state = json.loads(self.server.state_file.read_text())
        scheme, _, token = self.headers.get("Authorization", "").partition(" ")
        token = token.strip() if scheme.lower() == "bearer" else ""  # the scheme is case-insensitive (RFC 7235)
        with self.server.lock, open(f"{self.server.state_file}.requests", "a") as log:
            log.write(json.dumps({"path": self.path, "token": token}) + "\n")
        time.sleep(float(state.get("delay", 0)))
        user = state.get("tokens", {}).get(token)
        name = self.path.removeprefix("/api/v1/nodes/")
        if user is None:
            return self._send(401, status_object(401, "Unauthorized", "Unauthorized"))
        if name == self.path or "/" in name:
            return self._send(404, status_object(404, "NotFound", "the server could not find the requested resource"))
        if user not in state.get("allowed", []):
            return self._send(403, status_object(403, "Forbidden", f'nodes "{name}" is forbidden: User "{user}" '
                                                 f'cannot get resource "nodes" in API group "" at the cluster scope',
                                                 name))
        if name not in state.get("nodes", {}):
            return self._send(404, status_object(404, "NotFound", f'nodes "{name}" not found', name))
        node = node_object(name, state["nodes"][name])
        if state.get("pad"):  # a larger object (as a node with a long image list)
            node["status"] = {"images": [{"names": ["x" * 1000]}] * int(state["pad"])}
        self._send(200, node, cut=bool(state.get("cut")), trickle=float(state.get("trickle", 0)))

    def _send(self, code: int, obj: dict[str, Any], cut: bool = False, trickle: float = 0) -> None:
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Audit-Id", "cnt")
        self.end_headers()
        if trickle:  # a byte now and then, each within the client's timeout
            try:
                for i in range(len(body)):
                    self.wfile.write(body[i:i + 1])
                    self.wfile.flush()
                    time.sleep(trickle)
            except OSError:  # the client gave up
                self.close_connection = True
            return
        self.wfile.write(body[: len(body) // 2] if cut else body)
        self.wfile.flush()
        if cut:
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass


class KubeAPIServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state_file: Path, cert: Path, key: Path, address: str = "127.0.0.1", port: int = 0) -> None:
        self.address_family = socket.AF_INET6 if ":" in address else socket.AF_INET
        super().__init__((address, port), _Handler)
        self.state_file, self.lock = state_file, threading.Lock()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.socket = context.wrap_socket(self.socket, server_side=True)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def requests(self) -> list[dict[str, str]]:
        log = Path(f"{self.state_file}.requests")
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def write_state(path: Path, **state: Any) -> None:
    """Replace the server's state (by rename: the server never reads half a file)."""
    temp = path.with_suffix(".tmp")
    temp.write_text(json.dumps(state))
    temp.rename(path)


def main(argv: list[str]) -> None:
    """Serve in this process until killed; prints the port once listening (PORT 0: any free port)."""
    state, cert, key, address, port = argv
    server = KubeAPIServer(Path(state), Path(cert), Path(key), address, int(port))
    print(server.port, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
