"""containerd end to end with the Go reference plugins (ready for ours: swap the bin dir).

Two runtime paths: `ctr run --cni` (ctr runs go-cni itself) and CRI
RunPodSandbox/StopPodSandbox (containerd's CRI plugin runs libcni: kubelet's
path). Each stays well under 30 s on 2 cores.
"""

from __future__ import annotations

from pathlib import Path

from tests.containerd.conftest import go_bin_dir
from tests.containerd.cri import DnsConfig, PortMap
from tests.containerd.ctr_run import ctr_run_cni
from tests.helpers import net
from tests.helpers.paths import GO_PLUGIN_DIR
from tests.helpers.recorder import recorded_calls, recording_bin_dir


def conflist(data_dir: Path, subnet: str = "10.98.0.0/24") -> dict:
    return {
        "cniVersion": "1.0.0",
        "name": "cnt-cd",
        "plugins": [
            {"type": "bridge", "bridge": "cntcd0", "isGateway": True, "ipMasq": True,
             "ipam": {"type": "host-local", "subnet": subnet, "dataDir": str(data_dir)}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def allocated(data_dir: Path) -> list[str]:
    """Addresses host-local holds (one file per IP, plus lock/last_reserved_ip.N)."""
    net_dir = data_dir / "cnt-cd"
    return sorted(p.name for p in net_dir.iterdir() if p.name[0].isdigit()) if net_dir.is_dir() else []


def test_ctr_run_cni_pings_gateway(make_containerd, rootfs: Path, tmp_path: Path):
    data_dir = tmp_path / "ipam"
    conf = conflist(data_dir)
    cd = make_containerd(go_bin_dir(tmp_path / "bin"), conf)
    res = ctr_run_cni(cd, rootfs, "ping1", ["/bin/sh", "-c", "ip -4 addr show eth0; ping -c1 -W2 10.98.0.1"],
                      bin_dir=cd.bin_dir, conf_dir=cd.conf_dir, cache_dir=tmp_path / "ctr-cache")
    assert res.returncode == 0, (res.stdout, res.stderr, cd.log_tail())
    assert "inet 10.98.0." in res.stdout and "1 packets received" in res.stdout
    assert allocated(data_dir) == []  # --rm ran CNI DEL after the exit


def test_cri_pod_with_hostport(make_containerd, cri_client, host_ns, netns_pool, tmp_path: Path):
    data_dir = tmp_path / "ipam"
    calls_dir = tmp_path / "calls"
    bin_dir = recording_bin_dir(tmp_path / "bin", {n: GO_PLUGIN_DIR / n for n in (
        "bridge", "host-local", "portmap", "loopback")}, calls_dir)
    cd = make_containerd(bin_dir, conflist(data_dir))
    cri = cri_client(cd)
    assert cri.status().get("NetworkReady") is True

    pod = cri.run_pod("web", ports=[PortMap(host_port=18081, container_port=8080)],
                      dns=DnsConfig(servers=["10.98.0.53"], searches=["svc.test"]))
    pod_ip = cri.pod_ip(pod)
    assert pod_ip.startswith("10.98.0.") and allocated(data_dir) == [pod_ip]
    # The hostPort DNAT exists in the host netns (containerd sent HostPort keys).
    assert f"{pod_ip}:8080" in host_ns.run(["iptables-save", "-t", "nat"]).stdout
    assert net.ping(host_ns, pod_ip)
    pod_ns = netns_pool.attach("pod", cri.pod_pid(pod))
    with net.serve(pod_ns, "tcp", 8080):
        assert net.tcp_connect(host_ns, "10.98.0.1", 18081) is not None
    netns_pool.forget(pod_ns)  # the name only: the pod's processes are containerd's
    portmap_add = next(c for c in recorded_calls(calls_dir) if c.command == "ADD" and c.conf["type"] == "portmap")
    assert portmap_add.conf["runtimeConfig"]["portMappings"] == [
        {"HostPort": 18081, "ContainerPort": 8080, "Protocol": "tcp", "HostIP": ""}]
    assert "K8S_POD_NAME=web" in portmap_add.env["CNI_ARGS"].split(";")

    cri.stop_pod(pod)
    assert allocated(data_dir) == []
    assert f"{pod_ip}:8080" not in host_ns.run(["iptables-save", "-t", "nat"]).stdout
    cri.remove_pod(pod)
    assert list((cd.cni_cache_dir / "results").glob("*")) == []
