"""The DaemonSet's path, driven through containerd's CRI plugin as the kubelet drives it.

1. The installer image (built here from the single file: no registry, no network) runs as the DaemonSet pod
   runs: a host-network sandbox, a container with no capabilities at all, a read-only root file system, the
   node's CNI bin and conf directories as hostPath volumes (the test containerd's own `bin_dir`/`conf_dir`), the
   template as a ConfigMap-like read-only volume, `/var/cache` as an emptyDir.
2. containerd picks the freshly written config up by itself; a pod then gets its network from it (ADD by the
   installed plugins) and answers ping and TCP from the node.
3. The DaemonSet is rolled to a second build while pods are created and removed: none fails.
4. The installer is stopped with `--remove-config-on-exit`: the config goes, the plugin files stay.
Everything lives in test folders, a test "host" netns and the test containerd; the plugins use a launcher cache of
their own (CNI_SUITE_CACHE_DIR in containerd's environment, which go-cni passes on).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from plugins.multicall import PLUGINS
from tests.containerd.cri import CriClient, HostMount
from tests.containerd.images import INSTALLER_IMAGE, installer_rootfs, oci_image_archive
from tests.helpers import net
from tests.helpers.builds import build_hash

POD_CIDR = "10.96.5.0/24"
TYPES = tuple(PLUGINS)  # every file of the suite, loopback included: the node needs nothing else


def configmap(folder: Path, data_dir: Path) -> Path:
    """The DaemonSet's ConfigMap, as kubelet would project it: a folder holding `conflist.json`."""
    folder.mkdir()
    (folder / "conflist.json").write_text(json.dumps({
        "cniVersion": "1.0.0", "name": "cnt-k8s",
        "plugins": [
            {"type": "bridge", "bridge": "cntds0", "isGateway": True, "ipMasq": True,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": "${POD_CIDR}"}]], "dataDir": str(data_dir)}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }))
    return folder


def wait_for(condition, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # readiness poll, not a timed assertion
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


class InstallerDaemonSet:
    """What the kubelet does for the DaemonSet's pod on this node, one pod at a time."""

    def __init__(self, cri: CriClient, tmp: Path, bin_dir: Path, conf_dir: Path, config: Path) -> None:
        self.cri, self.tmp, self.bin_dir, self.conf_dir, self.config = cri, tmp, bin_dir, conf_dir, config
        self.count = 0

    def run(self, image: str, *args: str) -> tuple[str, str, Path]:
        """Start an installer pod; returns (pod id, container id, its log file)."""
        self.count += 1
        name = f"cni-suite-{self.count}"
        logs = self.tmp / "logs" / name
        empty_dir = self.tmp / f"emptydir-{self.count}"
        empty_dir.mkdir(mode=0o777)
        empty_dir.chmod(0o777)  # as kubelet makes an emptyDir
        pod = self.cri.run_pod(name, namespace="kube-system", host_network=True, log_directory=str(logs))
        container = self.cri.run_container(
            pod, name, "install", image,
            ["/cni-suite", "install", "--conflist", "/etc/cni-suite/conflist.json", "--interval", "0.5", *args],
            env={"NODE_NAME": "node-1", "POD_CIDR": POD_CIDR},
            mounts=[HostMount("/host/opt/cni/bin", self.bin_dir), HostMount("/host/etc/cni/net.d", self.conf_dir),
                    HostMount("/etc/cni-suite", self.config, readonly=True), HostMount("/var/cache", empty_dir)],
            drop_all_capabilities=True, readonly_rootfs=True, host_network=True)
        return pod, container, logs / "install.log"

    def remove(self, pod: str) -> None:
        self.cri.stop_pod(pod)
        self.cri.remove_pod(pod)


def test_daemonset_installs_upgrades_and_removes_through_cri(make_containerd, cri_client, host_ns, netns_pool,
                                                             suite_builds, tmp_path: Path):
    first, second = suite_builds
    images = []
    for tag, build in (("a", first), ("b", second)):
        rootfs = installer_rootfs(build, tmp_path / f"rootfs-{tag}")
        images.append((INSTALLER_IMAGE.format(tag=tag), oci_image_archive(
            rootfs, tmp_path / f"installer-{tag}.tar", INSTALLER_IMAGE.format(tag=tag), ("/cni-suite", "install"))))
    bin_dir = tmp_path / "bin"  # a node whose CNI bin dir is empty: the DaemonSet brings every file, loopback too
    bin_dir.mkdir()
    plugin_cache = tmp_path / "plugin-cache"
    plugin_cache.mkdir(mode=0o700)
    cd = make_containerd(bin_dir, None, extra_env={"CNI_SUITE_CACHE_DIR": str(plugin_cache)})
    for _ref, tar in images:
        cd.ctr("images", "import", str(tar), namespace="k8s.io")
    cri = cri_client(cd)
    assert cri.status().get("NetworkReady") is False  # no network config on this node yet
    daemonset = InstallerDaemonSet(cri, tmp_path, bin_dir, cd.conf_dir, configmap(tmp_path / "configmap",
                                                                                      tmp_path / "ipam"))
    conflist = cd.conf_dir / "10-cni-suite.conflist"

    # 1. The DaemonSet's pod installs the plugins, then the config; containerd notices by itself.
    pod_a, installer_a, log_a = daemonset.run(images[0][0], "--watch")
    wait_for(conflist.exists, f"the config (installer log: {log_a})")
    assert {build_hash(bin_dir / t) for t in TYPES} == {build_hash(first)}
    assert f"installed {', '.join(TYPES)}" in log_a.read_text()  # by the container, not the test
    wait_for(lambda: cri.status().get("NetworkReady") is True, "NetworkReady")

    # 2. A pod gets its network from the installed plugins, with traffic into it.
    web = cri.run_pod("web")
    ip = cri.pod_ip(web)
    assert ip.startswith("10.96.5.")
    assert net.ping(host_ns, ip)
    pod_ns = netns_pool.attach("pod", cri.pod_pid(web))
    with net.serve(pod_ns, "tcp", 8080):
        assert net.tcp_connect(host_ns, ip, 8080) is not None
    netns_pool.forget(pod_ns)  # the name only: the pod's processes are containerd's

    # 3. Rolling update: the old pod stops (its config stays: pods keep working), the new build installs while
    #    pods come and go.
    cri.stop_container(installer_a)
    assert cri.container_status(installer_a).exit_code == 0
    assert conflist.exists()
    daemonset.remove(pod_a)
    errors: list[str] = []
    churned = [0]
    stop = threading.Event()

    def churn() -> None:
        client = CriClient(cd.socket, cd.namespace)
        try:
            while not stop.is_set():
                churned[0] += 1
                try:
                    pod = client.run_pod(f"churn-{churned[0]}")
                    if not client.pod_ip(pod).startswith("10.96.5."):
                        errors.append(f"churn-{churned[0]}: no address")
                    client.stop_pod(pod)
                    client.remove_pod(pod)
                except Exception as exc:  # noqa: BLE001 - every failure is reported by the assertion below
                    errors.append(f"churn-{churned[0]}: {exc}")
        finally:
            client.close()

    churner = threading.Thread(target=churn)
    churner.start()
    try:
        time.sleep(1)
        pod_b, installer_b, log_b = daemonset.run(images[1][0], "--watch", "--remove-config-on-exit")
        wait_for(lambda: {build_hash(bin_dir / t) for t in TYPES} == {build_hash(second)},
                 f"the second build (installer log: {log_b})")
        before = churned[0]
        wait_for(lambda: churned[0] >= before + 3 or bool(errors), "pods after the upgrade")
    finally:
        stop.set()
        churner.join()
    assert errors == []
    print(f"\n{churned[0]} pods created and removed during the rolling update")
    assert cri.pod_ip(web).startswith("10.96.5.")  # the first pod is untouched
    cri.stop_pod(web)  # DEL by the new build of a pod added by the old one
    cri.remove_pod(web)
    assert [p.name for p in (tmp_path / "ipam" / "cnt-k8s").iterdir() if p.name[0].isdigit()] == []
    builds_in_cache = {p.name for p in plugin_cache.iterdir() if len(p.name) == 64}
    assert builds_in_cache <= {build_hash(first), build_hash(second)}

    # 4. Removal: the DaemonSet is deleted; with --remove-config-on-exit the config goes, the binaries stay.
    cri.stop_container(installer_b)
    assert cri.container_status(installer_b).exit_code == 0
    assert not conflist.exists()
    assert all((bin_dir / t).exists() for t in TYPES)
    assert "removed" in log_b.read_text()
    daemonset.remove(pod_b)
    wait_for(lambda: cri.status().get("NetworkReady") is False, "NetworkReady to drop")
