"""containerd's CRI plugin (the kubelet's path) on a node whose CNI bin dir holds nothing but this suite's files,
as `./build.sh install` leaves it: containerd runs our `loopback` for every pod's `lo`, then the network's chain.
A pod gets its network and answers (ping and TCP from the node); StopPodSandbox leaves nothing behind.
Two networks: bridge + portmap (the usual one) and ptp (routed, no bridge).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from plugins.multicall import PLUGINS
from tests.helpers import net
from tests.helpers.paths import REPO

POD_SUBNET = "10.96.7.0/24"


def conflist(kind: str, data_dir: Path) -> dict[str, Any]:
    ipam = {"type": "host-local", "ranges": [[{"subnet": POD_SUBNET}]], "routes": [{"dst": "0.0.0.0/0"}],
            "dataDir": str(data_dir)}
    if kind == "bridge":
        plugins = [{"type": "bridge", "bridge": "cntso0", "isGateway": True, "ipMasq": True, "ipam": ipam},
                   {"type": "portmap", "capabilities": {"portMappings": True}}]
    else:
        plugins = [{"type": "ptp", "ipMasq": True, "mtu": 1400, "ipam": ipam}]
    return {"cniVersion": "1.0.0", "name": f"cnt-so-{kind}", "plugins": plugins}


def suite_bin_dir(dest: Path) -> Path:
    """`./build.sh install dest`: every type of the suite, hard links to one file, and nothing else."""
    subprocess.run([str(REPO / "build.sh"), "install", str(dest)], check=True, capture_output=True, text=True,
                   timeout=300)
    assert sorted(p.name for p in dest.iterdir()) == sorted(PLUGINS)
    return dest


@pytest.mark.parametrize("kind", ["bridge", "ptp"])
def test_a_pod_gets_its_network_from_our_files_alone(kind, make_containerd, cri_client, host_ns, netns_pool,
                                                    plugin_dir: Path, tmp_path: Path):
    data_dir = tmp_path / "ipam"
    conf = conflist(kind, data_dir)
    cd = make_containerd(suite_bin_dir(tmp_path / "bin"), conf)
    cri = cri_client(cd)
    assert cri.status().get("NetworkReady") is True

    pod = cri.run_pod("web")
    ip = cri.pod_ip(pod)
    assert ip.startswith("10.96.7.")
    pod_ns = netns_pool.attach("pod", cri.pod_pid(pod))
    lo = net.link(pod_ns, "lo")
    assert lo is not None and "UP" in lo["flags"] and "127.0.0.1/8" in net.ip_addresses(pod_ns, "lo", scope="host")
    assert net.ping(host_ns, ip)
    with net.serve(pod_ns, "tcp", 8080):
        assert net.tcp_connect(host_ns, ip, 8080) is not None
    netns_pool.forget(pod_ns)  # the name only: the pod's processes are containerd's

    cri.stop_pod(pod)
    cri.remove_pod(pod)
    assert [p.name for p in (data_dir / conf["name"]).iterdir() if p.name[0].isdigit()] == []
    assert [link["ifname"] for link in net.links(host_ns) if link["ifname"].startswith("veth")] == []
    nat = host_ns.run(["iptables-save", "-t", "nat"]).stdout
    assert ip not in nat and "CNI-" not in "".join(line for line in nat.splitlines() if line.startswith("-A"))
