"""The Kubernetes path: containerd's CRI plugin runs the conf-examples chain with our built plugins.

A private containerd 1.6 (tests/containerd) in the lab's host namespace, driven by the Python CRI client as
the kubelet drives it: RunPodSandbox with a hostPort and dns_config, traffic to the hostPort, then
StopPodSandbox. Its bin dir holds recording wrappers around our dist/ plugins only (`loopback` too: containerd
runs it for every pod).
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.containerd.cri import DnsConfig, PortMap
from tests.e2e_portmap.conftest import CONFS, example_conflist
from tests.helpers import net
from tests.helpers.netns import Netns
from tests.helpers.recorder import recorded_calls, recording_bin_dir


def allocated(data_dir: Path, network: str) -> list[str]:
    """Addresses host-local holds for ``network`` (one file per IP)."""
    net_dir = data_dir / network
    return sorted(p.name for p in net_dir.iterdir() if p.name[0].isdigit() or ":" in p.name) \
        if net_dir.is_dir() else []


def gateways(conf: dict[str, Any]) -> list[str]:
    """The bridge's first address of each range of the conflist (isGateway)."""
    ranges = conf["plugins"][0]["ipam"]["ranges"]
    return [str(ipaddress.ip_network(r[0]["subnet"])[1]) for r in ranges]


def wait_dad_done(host: Netns, address: str, limit: float = 10) -> None:
    """Wait (a readiness poll, not an assertion) until ``address`` has left IPv6 DAD: the first pod creates the
    bridge, and a tentative gateway address is not yet local, so nothing is DNATed to it."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        info = [a for dev in json.loads(host.ip("-j", "-6", "addr").stdout or "[]") for a in dev.get("addr_info", [])
                if a.get("local") == address]
        if info and not info[0].get("tentative"):
            return
        time.sleep(0.05)


def rules_naming(host: Netns, pod_id: str) -> list[str]:
    from cni_common.netfilter import names

    text = "\n".join([host.run(["iptables-save", "-t", "nat"]).stdout, host.run(["ip6tables-save", "-t", "nat"]).stdout,
                      host.run(["nft", "list", "ruleset"]).stdout])
    marks = (pod_id, names.dnat_chain("portmap-net", pod_id), names.dnat_chain("portmap-nft-net", pod_id))
    return [ln for ln in text.splitlines() if any(m in ln for m in marks)]


@pytest.mark.parametrize("backend", sorted(CONFS))
def test_cri_pod_hostport_through_our_chain(backend: str, make_containerd, cri_client, host_ns: Netns,
                                             netns_pool, plugin_dir: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "ipam"
    conf = example_conflist(backend, data_dir)
    calls_dir = tmp_path / "calls"
    bin_dir = recording_bin_dir(tmp_path / "bin", {n: plugin_dir / n for n in ("bridge", "host-local", "portmap",
                                                                             "loopback")}, calls_dir)
    cd = make_containerd(bin_dir, conf)
    cri = cri_client(cd)
    assert cri.status().get("NetworkReady") is True

    pod = cri.run_pod("web", namespace="shop", ports=[PortMap(18081, 8080), PortMap(18053, 53, "udp")],
                      dns=DnsConfig(servers=["10.96.0.10"], searches=["shop.svc.cluster.local"], options=["ndots:5"]))
    pod_ip = cri.pod_ip(pod)
    assert pod_ip in allocated(data_dir, conf["name"])
    assert rules_naming(host_ns, pod)

    add = next(c for c in recorded_calls(calls_dir) if c.command == "ADD" and c.conf["type"] == "portmap")
    assert add.conf["runtimeConfig"]["portMappings"] == [
        {"HostPort": 18081, "ContainerPort": 8080, "Protocol": "tcp", "HostIP": ""},
        {"HostPort": 18053, "ContainerPort": 53, "Protocol": "udp", "HostIP": ""}]
    cni_args = dict(kv.split("=", 1) for kv in add.env["CNI_ARGS"].split(";"))
    assert cni_args["K8S_POD_NAME"] == "web" and cni_args["K8S_POD_NAMESPACE"] == "shop"
    assert cni_args["K8S_POD_INFRA_CONTAINER_ID"] == pod == add.env["CNI_CONTAINERID"]

    # The pod's netns is pinned inside containerd's mount namespace: name it through the sandbox's PID.
    pod_ns = netns_pool.attach("pod", cri.pod_pid(pod))
    try:
        gw4, gw6 = gateways(conf)
        with net.serve(pod_ns, "tcp", 8080, bind="::", accepts=10), net.serve(pod_ns, "udp", 53, bind="::",
                                                                              accepts=10):
            assert net.tcp_connect(host_ns, gw4, 18081) is not None
            assert net.udp_connect(host_ns, gw4, 18053) is not None
            assert net.tcp_connect(host_ns, "127.0.0.1", 18081) is not None
            wait_dad_done(host_ns, gw6)
            assert net.tcp_connect(host_ns, gw6, 18081) is not None
    finally:  # drop the name only: the sandbox process must live on until StopPodSandbox
        subprocess.run(["ip", "netns", "del", pod_ns.name], capture_output=True)
        netns_pool.created.remove(pod_ns)

    cri.stop_pod(pod)
    assert allocated(data_dir, conf["name"]) == []
    assert rules_naming(host_ns, pod) == []
    assert net.tcp_connect(host_ns, gw4, 18081, timeout=1) is None
    delete = next(c for c in recorded_calls(calls_dir) if c.command == "DEL" and c.conf["type"] == "portmap")
    assert delete.env["CNI_CONTAINERID"] == pod
    cri.remove_pod(pod)
