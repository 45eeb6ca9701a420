"""The Kubernetes path: a pod with the ``kubernetes.io/ingress-bandwidth`` and ``egress-bandwidth`` annotations,
run through containerd's CRI (as the kubelet runs it) with our bridge, host-local and bandwidth, gets shaped.

containerd turns the annotations into the ``bandwidth`` capability (``runtimeConfig.bandwidth``) with its own
burst of 2^32-1 bits; with upstream's arithmetic that gives a bucket of ~21 MB at 5 and 1 Mbit/s, which the
measurement's first seconds drain before the window it counts. containerd's bin dir holds our files and Go's
``loopback`` (which this suite does not ship yet).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from cni_common.shaping import Limit, ifb_name, tbf_for, tick_in_usec
from tests.helpers import throughput
from tests.helpers.netns import Netns
from tests.helpers.paths import GO_PLUGIN_DIR
from tests.helpers.recorder import recorded_calls, recording_bin_dir

INGRESS, EGRESS = 5_000_000, 1_000_000
ANNOTATIONS = {"kubernetes.io/ingress-bandwidth": "5M", "kubernetes.io/egress-bandwidth": "1M"}
NET, BRIDGE, GATEWAY = "cntbw-cri", "cntbwk0", "10.79.0.1"
CONTAINERD_BURST = 2 ** 32 - 1  # bits, whatever the annotation says


def bucket_bytes(rate: int) -> int:
    """What passes at full speed first: the token bucket containerd's burst gives at ``rate`` (~21.5 MB at
    both rates here, upstream's arithmetic), plus 256 KB of slack."""
    tbf = tbf_for(Limit(rate, CONTAINERD_BURST), tick_in_usec())
    return int(tbf.buffer / tick_in_usec() * tbf.rate / 1_000_000) + 256 * 1024


def conflist(data_dir: Path) -> dict:
    return {"cniVersion": "1.0.0", "name": NET, "plugins": [
        {"type": "bridge", "bridge": BRIDGE, "isGateway": True,
         "ipam": {"type": "host-local", "dataDir": str(data_dir), "ranges": [[{"subnet": "10.79.0.0/24"}]]}},
        {"type": "bandwidth", "capabilities": {"bandwidth": True}}]}


def tbf_rate(host: Netns, dev: str) -> int | None:
    qdiscs = json.loads(host.run(["tc", "-j", "qdisc", "show", "dev", dev]).stdout or "[]")
    return next((q["options"]["rate"] * 8 for q in qdiscs if q["kind"] == "tbf" and q.get("root")), None)


def test_cri_pod_with_bandwidth_annotations_is_shaped(make_containerd, cri_client, host_ns: Netns, netns_pool,
                                                     plugin_dir: Path, tmp_path: Path) -> None:
    calls_dir = tmp_path / "calls"
    bin_dir = recording_bin_dir(tmp_path / "bin", {
        **{n: plugin_dir / n for n in ("bridge", "host-local", "bandwidth")}, "loopback": GO_PLUGIN_DIR / "loopback"},
        calls_dir)
    cd = make_containerd(bin_dir, conflist(tmp_path / "ipam"))
    cri = cri_client(cd)
    assert cri.status().get("NetworkReady") is True
    pod = cri.run_pod("shaped", namespace="media", annotations=ANNOTATIONS)
    pod_ip = cri.pod_ip(pod)

    add = next(c for c in recorded_calls(calls_dir) if c.command == "ADD" and c.conf["type"] == "bandwidth")
    # go-cni's struct has no JSON tags: the keys arrive capitalised (matched case-insensitively, as Go does)
    assert add.conf["runtimeConfig"]["bandwidth"] == {"IngressRate": INGRESS, "IngressBurst": CONTAINERD_BURST,
                                                      "EgressRate": EGRESS, "EgressBurst": CONTAINERD_BURST}
    veth = next(i["name"] for i in add.conf["prevResult"]["interfaces"]
                if not i.get("sandbox") and i["name"].startswith("veth"))
    ifb = ifb_name(NET, pod)
    assert tbf_rate(host_ns, veth) == INGRESS and tbf_rate(host_ns, ifb) == EGRESS
    assert "ingress" in host_ns.run(["tc", "qdisc", "show", "dev", veth]).stdout

    pod_ns = netns_pool.attach("pod", cri.pod_pid(pod))
    try:
        to_pod = throughput.measure(host_ns, pod_ns, pod_ip, 5301, skip=2.0, skip_bytes=bucket_bytes(INGRESS))
        from_pod = throughput.measure(pod_ns, host_ns, GATEWAY, 5302, skip=2.0, skip_bytes=bucket_bytes(EGRESS))
    finally:  # drop the name only: the sandbox lives on until StopPodSandbox
        subprocess.run(["ip", "netns", "del", pod_ns.name], capture_output=True)
        netns_pool.created.remove(pod_ns)
    print(f"CRI pod: to it {to_pod}, from it {from_pod}")
    assert abs(to_pod["bits_per_s"] - INGRESS) <= 0.2 * INGRESS, to_pod
    assert abs(from_pod["bits_per_s"] - EGRESS) <= 0.2 * EGRESS, from_pod

    cri.stop_pod(pod)
    assert host_ns.ip("link", "show", ifb, check=False).returncode != 0
    assert host_ns.ip("link", "show", veth, check=False).returncode != 0
    assert [c for c in recorded_calls(calls_dir) if c.command == "DEL" and c.conf["type"] == "bandwidth"]
    cri.remove_pod(pod)
    host_ns.ip("link", "del", BRIDGE, check=False)
