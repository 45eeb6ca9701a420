"""Throwaway certificates for a TLS-enabled etcd, made with the ``openssl`` command line.

A CA, a server certificate for ``127.0.0.1`` (or the given address) and a client certificate, all signed by
that CA; EC P-256 keys (fast to make). The server certificate is good for client auth too: etcd's JSON gateway
dials etcd's own gRPC port with it, and with ``--client-cert-auth`` that connection needs a client certificate;
and neither certificate has a CommonName: with auth enabled, etcd (since 3.3, CVE-2018-16886) refuses a gateway
request whose client certificate has one ("CommonName of client sending a request against gateway will be
ignored"), so the user comes from the password alone. Nothing here is secret: the files live in the test's temp dir.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Certs:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def make_certs(dest: Path, server_ip: str = "127.0.0.1") -> Certs:
    dest.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=cnt test CA",
             cwd=dest)
    server_ext = f"subjectAltName=IP:{server_ip}\nextendedKeyUsage=serverAuth,clientAuth"
    for name, subj, ext in (("server", "/O=cnt etcd", server_ext),
                            ("client", "/O=cnt vxlan client", "extendedKeyUsage=clientAuth")):
        (dest / f"{name}.ext").write_text(ext + "\n")
        _openssl("req", "-new", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subj, cwd=dest)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext", cwd=dest)
    return Certs(ca=dest / "ca.crt", server_cert=dest / "server.crt", server_key=dest / "server.key",
                 client_cert=dest / "client.crt", client_key=dest / "client.key")
