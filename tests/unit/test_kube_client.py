"""The installer's Kubernetes API client against a local TLS server that answers as the API does (127.0.0.1 only).

The server (tests/helpers/kube_api.py) returns the API's Node and Status objects; the client must verify TLS
against the service account's CA, send the token read from its file (again for each request), and tell an
answer of the server (401, 403, 404) from no usable answer (slow, cut mid-body, wrong CA): the installer retries
the second kind and refuses the first with a message naming what to fix.
"""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from cni_common import kubeapi, log
from plugins import install_node
from plugins.install_config import ConfigRefused, render, validate
from tests.helpers.kube_api import SERVICE_ACCOUNT_USER, KubeAPIServer, make_token, write_state
from tests.helpers.tls import Certs, make_certs

TOKEN = make_token()


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("kube-ca"))


@pytest.fixture
def state(tmp_path: Path) -> Path:
    path = tmp_path / "state.json"
    write_state(path, nodes={"node-1": ["10.244.1.0/24"]}, tokens={TOKEN: SERVICE_ACCOUNT_USER},
                allowed=[SERVICE_ACCOUNT_USER])
    return path


@pytest.fixture
def server(state: Path, certs: Certs) -> Iterator[KubeAPIServer]:
    srv = KubeAPIServer(state, certs.server_cert, certs.server_key)
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    """The installer's log lines (info and up)."""
    stream = io.StringIO()
    log.configure("info", stderr=stream)
    yield stream
    log.configure()


def account(folder: Path, ca: Path, token: str = TOKEN) -> Path:
    """The service account's files, as the kubelet mounts them."""
    folder.mkdir(exist_ok=True)
    (folder / "token").write_text(token)
    (folder / "ca.crt").write_bytes(ca.read_bytes())
    (folder / "namespace").write_text("kube-system")
    return folder


def env_for(server: KubeAPIServer, node: str = "node-1") -> dict[str, str]:
    return {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(server.port), "NODE_NAME": node}


def cluster(server: KubeAPIServer, folder: Path) -> kubeapi.InCluster:
    return kubeapi.in_cluster(env_for(server), str(folder))


def no_sleep(_delay: float) -> None:
    raise AssertionError("the client waited, but this answer must not be retried")


def test_200_single_stack(server, certs, tmp_path):
    node = kubeapi.get_node(cluster(server, account(tmp_path / "sa", certs.ca)), "node-1")
    assert node["spec"]["podCIDR"] == "10.244.1.0/24"
    assert install_node.node_variables(env_for(server), str(tmp_path / "sa"), no_sleep) == {
        "POD_CIDR": "10.244.1.0/24", "POD_CIDRS": "10.244.1.0/24", "POD_DEFAULT_ROUTES": "0.0.0.0/0"}
    assert server.requests()[-1] == {"path": "/api/v1/nodes/node-1", "token": TOKEN}


def test_200_dual_stack_gives_one_range_set_per_cidr(server, state, certs, tmp_path):
    write_state(state, nodes={"node-1": ["10.244.1.0/24", "fd00:10:244:1::/64"]}, tokens={TOKEN: SERVICE_ACCOUNT_USER},
                allowed=[SERVICE_ACCOUNT_USER])
    variables = install_node.node_variables(env_for(server), str(account(tmp_path / "sa", certs.ca)), no_sleep)
    template = {"cniVersion": "1.0.0", "name": "pods", "plugins": [{
        "type": "bridge", "bridge": "cni0", "isGateway": True,
        "ipam": {"type": "host-local", "ranges": [[{"subnet": "${POD_CIDRS}"}]],
                 "routes": [{"dst": "${POD_DEFAULT_ROUTES}"}]}}]}
    conflist = render(template, variables)
    assert conflist["plugins"][0]["ipam"]["ranges"] == [[{"subnet": "10.244.1.0/24"}],
                                                        [{"subnet": "fd00:10:244:1::/64"}]]
    assert conflist["plugins"][0]["ipam"]["routes"] == [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]
    assert validate(conflist) == ["bridge", "host-local"]


def test_node_gains_its_pod_cidr_later(server, state, certs, tmp_path, logs):
    write_state(state, nodes={"node-1": []}, tokens={TOKEN: SERVICE_ACCOUNT_USER}, allowed=[SERVICE_ACCOUNT_USER])
    waits: list[float] = []

    def sleep(delay: float) -> None:  # the controller assigns the range while the installer waits
        waits.append(delay)
        if len(waits) == 3:
            write_state(state, nodes={"node-1": ["10.244.7.0/24"]}, tokens={TOKEN: SERVICE_ACCOUNT_USER},
                        allowed=[SERVICE_ACCOUNT_USER])

    variables = install_node.node_variables(env_for(server), str(account(tmp_path / "sa", certs.ca)), sleep)
    assert variables["POD_CIDR"] == "10.244.7.0/24"
    assert waits == [0.5, 1.0, 2.0]  # back-off
    assert logs.getvalue().count("node node-1 has no spec.podCIDR yet") == 3


def test_401_reads_the_token_again_then_refuses(server, state, certs, tmp_path):
    sa = account(tmp_path / "sa", certs.ca, token=make_token(serial=2))  # a token the server does not know
    with pytest.raises(ConfigRefused, match=r"refused the service account token of kube-system/cni-suite twice "
                                            r"\(401 Unauthorized"):
        install_node.node_variables(env_for(server), str(sa), no_sleep)
    assert len(server.requests()) == 2


def test_a_rotated_token_is_used_at_the_next_request(server, state, certs, tmp_path):
    sa = account(tmp_path / "sa", certs.ca)
    kube = cluster(server, sa)
    kubeapi.get_node(kube, "node-1")
    rotated = make_token(serial=3)
    write_state(state, nodes={"node-1": ["10.244.1.0/24"]}, tokens={rotated: SERVICE_ACCOUNT_USER},
                allowed=[SERVICE_ACCOUNT_USER])  # the old token expired
    (sa / "token").write_text(rotated)  # the kubelet rotates the projected token
    kubeapi.get_node(kube, "node-1")
    assert [r["token"] for r in server.requests()] == [TOKEN, rotated]


def test_403_names_the_service_account_and_cluster_role(server, state, certs, tmp_path):
    other = make_token("system:serviceaccount:kube-system:default")
    write_state(state, nodes={"node-1": ["10.244.1.0/24"]}, tokens={other: "system:serviceaccount:kube-system:default"},
                allowed=[])
    sa = account(tmp_path / "sa", certs.ca, token=other)
    with pytest.raises(kubeapi.APIError) as exc:
        kubeapi.get_node(cluster(server, sa), "node-1")
    assert (exc.value.code, exc.value.reason) == (403, "Forbidden")
    assert 'cannot get resource "nodes"' in exc.value.message  # the API's own words are kept
    with pytest.raises(ConfigRefused) as refused:
        install_node.node_variables(env_for(server), str(sa), no_sleep)
    assert "ServiceAccount kube-system/cni-suite needs the ClusterRole cni-suite (get on nodes)" in str(refused.value)
    assert "this pod runs as kube-system/default" in str(refused.value)


def test_404_names_the_node(server, certs, tmp_path):
    sa = account(tmp_path / "sa", certs.ca)
    with pytest.raises(ConfigRefused, match=r"no node 'node-9' \(404 NotFound: nodes \"node-9\" not found\).*"
                                            r"spec.nodeName"):
        install_node.node_variables(env_for(server, "node-9"), str(sa), no_sleep)


def test_a_slow_answer_is_unreachable_and_a_cut_one_retried(server, state, certs, tmp_path, logs):
    sa = account(tmp_path / "sa", certs.ca)
    write_state(state, nodes={"node-1": ["10.244.1.0/24"]}, tokens={TOKEN: SERVICE_ACCOUNT_USER},
                allowed=[SERVICE_ACCOUNT_USER], delay=1.0)
    with pytest.raises(kubeapi.Unreachable, match="no answer in time"):
        kubeapi.get_node(cluster(server, sa), "node-1", timeout=0.3)

    def sleep(_delay: float) -> None:  # the API recovers
        write_state(state, nodes={"node-1": ["10.244.1.0/24"]}, tokens={TOKEN: SERVICE_ACCOUNT_USER},
                    allowed=[SERVICE_ACCOUNT_USER])

    write_state(state, nodes={"node-1": ["10.244.1.0/24"]}, tokens={TOKEN: SERVICE_ACCOUNT_USER},
                allowed=[SERVICE_ACCOUNT_USER], cut=True)
    assert install_node.node_variables(env_for(server), str(sa), sleep)["POD_CIDR"] == "10.244.1.0/24"
    assert "the API is unreachable" in logs.getvalue()


def test_a_trickling_or_endless_answer_is_bounded_as_a_whole(server, state, certs, tmp_path, monkeypatch):
    """The timeout bounds the whole answer, not only each read; an answer beyond MAX_ANSWER is refused."""
    sa = account(tmp_path / "sa", certs.ca)
    write_state(state, nodes={"node-1": ["10.244.1.0/24"]}, tokens={TOKEN: SERVICE_ACCOUNT_USER},
                allowed=[SERVICE_ACCOUNT_USER], trickle=0.05)
    started = time.monotonic()
    with pytest.raises(kubeapi.Unreachable, match="the answer did not end in time"):
        kubeapi.get_node(cluster(server, sa), "node-1", timeout=0.5)
    assert time.monotonic() - started < 2
    monkeypatch.setattr(kubeapi, "MAX_ANSWER", 64 << 10)
    write_state(state, nodes={"node-1": ["10.244.1.0/24"]}, tokens={TOKEN: SERVICE_ACCOUNT_USER},
                allowed=[SERVICE_ACCOUNT_USER], pad=100)
    with pytest.raises(kubeapi.Unreachable, match="the answer is larger than 65536 bytes"):
        kubeapi.get_node(cluster(server, sa), "node-1")
    monkeypatch.setattr(kubeapi, "MAX_ANSWER", 1 << 20)
    assert kubeapi.get_node(cluster(server, sa), "node-1")["spec"]["podCIDR"] == "10.244.1.0/24"


def test_connection_cut_mid_body(server, state, certs, tmp_path):
    write_state(state, nodes={"node-1": ["10.244.1.0/24"]}, tokens={TOKEN: SERVICE_ACCOUNT_USER},
                allowed=[SERVICE_ACCOUNT_USER], cut=True)
    with pytest.raises(kubeapi.Unreachable, match=r"the connection was cut after \d+ bytes"):
        kubeapi.get_node(cluster(server, account(tmp_path / "sa", certs.ca)), "node-1")


def test_a_wrong_ca_is_refused_before_the_token_is_sent(server, certs, tmp_path):
    other_ca = make_certs(tmp_path / "other-ca").ca
    sa = account(tmp_path / "sa", other_ca)
    with pytest.raises(kubeapi.Unreachable, match="TLS refused.*certificate"):
        kubeapi.get_node(cluster(server, sa), "node-1")
    assert server.requests() == []  # no request (no token) ever reached the server


def test_nothing_listening(certs, tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        kube = kubeapi.InCluster("127.0.0.1", port, str(account(tmp_path / "sa", certs.ca) / "token"),
                                 str(tmp_path / "sa" / "ca.crt"))
        with pytest.raises(kubeapi.Unreachable, match="refused"):
            kubeapi.get_node(kube, "node-1")


def test_not_in_cluster(tmp_path):
    with pytest.raises(ConfigRefused, match="KUBERNETES_SERVICE_HOST is not set"):
        install_node.node_variables({"NODE_NAME": "node-1"}, str(tmp_path))
    with pytest.raises(ConfigRefused, match="token is missing.*automountServiceAccountToken"):
        install_node.node_variables({"NODE_NAME": "n", "KUBERNETES_SERVICE_HOST": "10.96.0.1"}, str(tmp_path))
    with pytest.raises(ConfigRefused, match="needs the environment variable NODE_NAME"):
        install_node.node_variables({}, str(tmp_path))


def test_pod_cidrs_of_node_objects():
    assert install_node.pod_cidrs({"spec": {}}) == []
    assert install_node.pod_cidrs({"spec": {"podCIDR": "10.1.0.0/24"}}) == ["10.1.0.0/24"]  # older API servers
    with pytest.raises(ConfigRefused, match="not a network"):
        install_node.pod_cidrs({"spec": {"podCIDRs": ["10.1.0.1/24"]}})


def test_the_service_account_name_is_read_from_the_token(tmp_path):
    (tmp_path / "token").write_text(make_token("system:serviceaccount:kube-system:cni-suite"))
    assert kubeapi.service_account_name(str(tmp_path / "token")) == "kube-system/cni-suite"
    (tmp_path / "token").write_text("not-a-jwt")
    assert kubeapi.service_account_name(str(tmp_path / "token")) == ""


def test_an_ipv6_service_address(state, tmp_path):
    """On an IPv6 (or IPv6-first dual-stack) cluster KUBERNETES_SERVICE_HOST is an IPv6 address."""
    certs = make_certs(tmp_path / "ca6", server_ip="::1")
    srv = KubeAPIServer(state, certs.server_cert, certs.server_key, "::1")
    threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True).start()
    try:
        env = {"KUBERNETES_SERVICE_HOST": "::1", "KUBERNETES_SERVICE_PORT": str(srv.port), "NODE_NAME": "node-1"}
        kube = kubeapi.in_cluster(env, str(account(tmp_path / "sa", certs.ca)))
        assert kube.address == f"https://[::1]:{srv.port}"
        assert kubeapi.get_node(kube, "node-1")["spec"]["podCIDRs"] == ["10.244.1.0/24"]
    finally:
        srv.shutdown()
        srv.server_close()


def test_an_empty_or_garbled_token_file_is_not_sent(server, certs, tmp_path):
    for garbage in ("", "line\nbreak", "tök"):
        sa = account(tmp_path / "sa", certs.ca, token=garbage)
        with pytest.raises(kubeapi.Unreachable, match="holds no bearer token"):
            kubeapi.get_node(cluster(server, sa), "node-1")
    assert server.requests() == []
