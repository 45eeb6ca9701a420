"""The overlay's store over TLS with client certificates, and with a user and password, against a real etcd
started here with certificates made here (tests/helpers/tls.py). etcd listens on the machine's loopback on
random ports; nothing else changes."""

from __future__ import annotations

import ipaddress
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest

from cni_common.errors import CNIError
from cni_common.overlay import config, node
from cni_common.overlay.etcd import EtcdClient, StoreError, StoreUnreachable
from tests.helpers.etcd import EtcdServer
from tests.helpers.tls import Certs, make_certs

NET = ipaddress.ip_network("10.244.0.0/16")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def tls_etcd(certs: Certs) -> Iterator[EtcdServer]:
    server = EtcdServer(tls=certs).start()
    yield server
    server.stop()


def _conf(etcd: EtcdServer, **etcd_keys: Any) -> config.VxlanConf:
    return config.parse({"name": "cntx", "type": "vxlan", "network": str(NET), "nodeName": "n1",
                         "store": {"etcd": {"endpoints": [etcd.url], "prefix": "/cnt-x/tls", **etcd_keys}}})


def _etcdctl(etcd: EtcdServer, certs: Certs, *args: str) -> None:
    subprocess.run(["etcdctl", "--endpoints", etcd.url, "--cacert", str(certs.ca), "--cert", str(certs.client_cert),
                    "--key", str(certs.client_key), *args], check=True, capture_output=True, timeout=30,
                   env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"})


def test_client_certificate_reserves_a_subnet(tls_etcd: EtcdServer, certs: Certs) -> None:
    conf = _conf(tls_etcd, caFile=str(certs.ca), certFile=str(certs.client_cert), keyFile=str(certs.client_key))
    store = node.Store.open(conf)
    assert store is not None
    subnet = store.subnets.reserve("n1", NET, 24)
    assert store.subnets.reserve("n1", NET, 24) == subnet


def test_without_a_client_certificate_the_store_refuses(tls_etcd: EtcdServer, certs: Certs) -> None:
    with pytest.raises(StoreUnreachable) as err:  # the TLS handshake fails: no certificate to show
        EtcdClient([tls_etcd.url], timeout=3, ca_file=str(certs.ca)).get("/cnt-x/tls/x")
    assert tls_etcd.url in err.value.msg


def test_an_unknown_ca_is_refused(tls_etcd: EtcdServer, certs: Certs, tmp_path: Path) -> None:
    other = make_certs(tmp_path / "other")
    with pytest.raises(StoreUnreachable) as err:
        EtcdClient([tls_etcd.url], timeout=3, ca_file=str(other.ca), cert_file=str(certs.client_cert),
                   key_file=str(certs.client_key)).get("/x")
    assert "CERTIFICATE_VERIFY_FAILED" in err.value.details


def test_bad_tls_file_is_code_7(tls_etcd: EtcdServer, tmp_path: Path) -> None:
    with pytest.raises(CNIError) as err:
        node.Store.open(_conf(tls_etcd, caFile=str(tmp_path / "missing.crt")))
    assert err.value.code == 7 and "caFile" in err.value.msg


def test_user_and_password(tls_etcd: EtcdServer, certs: Certs, tmp_path: Path) -> None:
    """Auth enabled on the TLS etcd: a user with a role on the prefix; a password file; a wrong password."""
    _etcdctl(tls_etcd, certs, "user", "add", "root:rootpw")
    _etcdctl(tls_etcd, certs, "role", "add", "cni")
    _etcdctl(tls_etcd, certs, "role", "grant-permission", "cni", "--prefix=true", "readwrite", "/cnt-x/tls/")
    _etcdctl(tls_etcd, certs, "user", "add", "vx:s3cret")
    _etcdctl(tls_etcd, certs, "user", "grant-role", "vx", "cni")
    _etcdctl(tls_etcd, certs, "auth", "enable")
    try:
        tls = {"caFile": str(certs.ca), "certFile": str(certs.client_cert), "keyFile": str(certs.client_key)}
        secret = tmp_path / "password"
        secret.write_text("s3cret\n")
        store = node.Store.open(_conf(tls_etcd, username="vx", passwordFile=str(secret), **tls))
        assert store is not None
        subnet = store.subnets.reserve("n2", NET, 24)
        assert subnet.subnet_of(NET)
        store.client._token = "expired-or-forged"  # etcd answers "invalid auth token": the client logs in again
        assert store.subnets.reserve("n2", NET, 24) == subnet
        wrong = node.Store.open(_conf(tls_etcd, username="vx", password="nope", **tls))
        assert wrong is not None
        with pytest.raises(StoreError) as err:
            wrong.subnets.reserve("n3", NET, 24)
        assert "store.etcd.username" in err.value.msg
    finally:
        _etcdctl(tls_etcd, certs, "--user", "root:rootpw", "auth", "disable")


def test_credentials_are_validated() -> None:
    base = {"name": "n", "type": "vxlan", "network": str(NET), "store": {"etcd": {"endpoints": ["http://h:1"]}}}
    for keys, key in (({"username": "u"}, "store.etcd.username"),
                      ({"username": "u", "password": "p", "passwordFile": "/x"}, "store.etcd.password"),
                      ({"username": "u", "passwordFile": "/nonexistent/pw"}, "store.etcd.passwordFile")):
        conf = {**base, "store": {"etcd": {**base["store"]["etcd"], **keys}}}
        with pytest.raises(CNIError) as err:
            config.parse(conf)
        assert err.value.code == 7 and key in err.value.msg, err.value.msg
