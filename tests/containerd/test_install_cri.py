"""The DaemonSet's path, driven through containerd's CRI plugin as the kubelet drives it.

1. The installer image is the one `./build.sh image` makes (buildah, FROM scratch + the single file, a multi-arch
   OCI index), imported as an air-gapped node would (`ctr images import`), and runs bridge.yaml's installer
   command as the DaemonSet pod runs: a host-network sandbox, no capabilities at all, a read-only root file
   system, the node's CNI bin and conf directories as hostPath volumes (the test containerd's own
   `bin_dir`/`conf_dir`) and its launcher cache (the plugins' CNI_SUITE_CACHE_DIR, made 0755 as a hostPath of
   type DirectoryOrCreate makes it) as hostPath volumes, the template as a ConfigMap-like read-only volume,
   `/var/cache` as an emptyDir, the service account's token and CA at their standard path.
2. The Kubernetes API is a local TLS server answering as the API does (tests/helpers/kube_api.py), inside the test
   "host" netns on 127.0.0.1. The node has no pod CIDR at first: the installer waits and writes nothing; once the
   node gets one, the config holds it, containerd picks it up by itself, and a pod gets an address from it and
   answers ping and TCP from the node. That installer ran with `--warm on`: the cache folder is now 0700 and the
   pod's plugin calls went through a warm process (`inspect` on the node shows its calls).
   Before that, without the RBAC binding (the API answers 403), the installer exits 3 naming what to bind.
3. The DaemonSet is rolled to a second build while pods are created and removed: none fails. The API is down
   when the new pod starts: it retries, and meanwhile the node keeps the previous build and config. The new pod
   runs the manifest's `--warm=auto`: the switch changed with the rollout.
4. The installer is stopped with `--remove-config-on-exit`: the config goes, the plugin files stay.
Everything lives in test folders, a test "host" netns and the test containerd; the plugins use a launcher cache of
their own (CNI_SUITE_CACHE_DIR in containerd's environment, which go-cni passes on).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

from plugins.multicall import PLUGINS
from tests.containerd.cri import CriClient, HostMount
from tests.containerd.images import INSTALLER_IMAGE, suite_image
from tests.helpers import net, warm
from tests.helpers.builds import build_hash
from tests.helpers.kube_api import SERVICE_ACCOUNT_USER, make_token, write_state
from tests.helpers.netns import Netns
from tests.helpers.paths import DIST_DIR, REPO
from tests.helpers.tls import make_certs

POD_CIDR = "10.96.5.0/24"
ARM64_FILE = DIST_DIR / "linux-arm64" / "bridge"
ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def manifest_installer() -> dict:
    """The installer container of conf-examples/kubernetes/bridge.yaml: the test runs its command and mounts."""
    docs = yaml.safe_load_all((REPO / "conf-examples" / "kubernetes" / "bridge.yaml").read_text())
    daemonset = next(d for d in docs if d and d["kind"] == "DaemonSet")
    return next(c for c in daemonset["spec"]["template"]["spec"]["containers"] if c["name"] == "install")


MANIFEST = manifest_installer()
TYPES = tuple(PLUGINS)  # every file of the suite, loopback included: the node needs nothing else


def configmap(folder: Path, data_dir: Path) -> Path:
    """The DaemonSet's ConfigMap, as kubelet would project it: a folder holding `conflist.json`."""
    folder.mkdir()
    (folder / "conflist.json").write_text(json.dumps({
        "cniVersion": "1.0.0", "name": "cnt-k8s",
        "plugins": [
            {"type": "bridge", "bridge": "cntds0", "isGateway": True, "ipMasq": True,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": "${POD_CIDRS}"}]],
                      "routes": [{"dst": "${POD_DEFAULT_ROUTES}"}], "dataDir": str(data_dir)}},
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


class KubeAPI:
    """The API server stand-in, run in the test's host netns (where the host-network installer pod runs)."""

    def __init__(self, host_ns: Netns, folder: Path) -> None:
        folder.mkdir()
        self.host_ns, self.certs = host_ns, make_certs(folder / "ca")
        self.token = make_token()
        self.state, self.port = folder / "state.json", 0
        self.set_node([])
        self.proc: subprocess.Popen | None = None
        self.start()
        self.account = folder / "serviceaccount"  # what the kubelet mounts at ACCOUNT_DIR
        self.account.mkdir()
        (self.account / "token").write_text(self.token)
        (self.account / "ca.crt").write_bytes(self.certs.ca.read_bytes())
        (self.account / "namespace").write_text("kube-system")

    def start(self) -> None:
        """Listen (again on the same port, after an outage); returns once it listens."""
        self.proc = self.host_ns.popen([sys.executable, "-m", "tests.helpers.kube_api", str(self.state),
                                        str(self.certs.server_cert), str(self.certs.server_key), "127.0.0.1",
                                        str(self.port)], cwd=REPO, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())

    def set_node(self, cidrs: list[str], allowed: bool = True) -> None:
        """Node node-1 with these pod CIDRs; ``allowed=False``: the ClusterRoleBinding is missing."""
        write_state(self.state, nodes={"node-1": cidrs}, tokens={self.token: SERVICE_ACCOUNT_USER},
                    allowed=[SERVICE_ACCOUNT_USER] if allowed else [])

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


class InstallerDaemonSet:
    """What the kubelet does for the DaemonSet's pod on this node, one pod at a time."""

    def __init__(self, cri: CriClient, tmp: Path, bin_dir: Path, conf_dir: Path, config: Path, api: KubeAPI,
                 launcher_cache: Path) -> None:
        self.cri, self.tmp, self.bin_dir, self.conf_dir, self.config = cri, tmp, bin_dir, conf_dir, config
        self.api, self.launcher_cache = api, launcher_cache
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
        mounts = [HostMount("/host/opt/cni/bin", self.bin_dir), HostMount("/host/etc/cni/net.d", self.conf_dir),
                  HostMount("/etc/cni-suite", self.config, readonly=True), HostMount("/var/cache", empty_dir),
                  HostMount("/host/var/cache/cni-suite", self.launcher_cache),
                  HostMount(ACCOUNT_DIR, self.api.account, readonly=True)]  # the volumes, and the token's
        container = self.cri.run_container(
            pod, name, "install", image,
            [*MANIFEST["command"], "--interval", "0.5", *args],
            env={"NODE_NAME": "node-1", "KUBERNETES_SERVICE_HOST": "127.0.0.1",
                 "KUBERNETES_SERVICE_PORT": str(self.api.port)},
            mounts=mounts,
            drop_all_capabilities=True, readonly_rootfs=True, host_network=True)
        assert {m["mountPath"] for m in MANIFEST["volumeMounts"]} == {m.container_path for m in mounts[:5]}
        return pod, container, logs / "install.log"

    def remove(self, pod: str) -> None:
        self.cri.stop_pod(pod)
        self.cri.remove_pod(pod)


def test_daemonset_installs_upgrades_and_removes_through_cri(make_containerd, cri_client, host_ns, netns_pool,
                                                             suite_builds, tmp_path: Path, request):
    first, second = suite_builds
    images = []
    for tag, files in (("a", {"amd64": first, "arm64": ARM64_FILE}), ("b", {"amd64": second})):
        name = INSTALLER_IMAGE.format(tag=tag)
        images.append((name, suite_image(files, tmp_path / f"image-{tag}", name)))
    bin_dir = tmp_path / "bin"  # a node whose CNI bin dir is empty: the DaemonSet brings every file, loopback too
    bin_dir.mkdir()
    plugin_cache = tmp_path / "plugin-cache"  # the node's /var/cache/cni-suite
    plugin_cache.mkdir()
    plugin_cache.chmod(0o755)  # what a hostPath volume of type DirectoryOrCreate makes
    request.addfinalizer(lambda: warm.stop_warm_processes(str(plugin_cache)))
    # No CNI_SUITE_WARM (a run forcing it on or off would override the node's file): the installer's switch decides.
    cd = make_containerd(bin_dir, None, extra_env={"CNI_SUITE_CACHE_DIR": str(plugin_cache), "CNI_SUITE_WARM": ""})
    for _ref, tar in images:
        cd.ctr("images", "import", str(tar), namespace="k8s.io")
    cri = cri_client(cd)
    assert cri.status().get("NetworkReady") is False  # no network config on this node yet
    api = KubeAPI(host_ns, tmp_path / "api")
    request.addfinalizer(api.stop)
    daemonset = InstallerDaemonSet(cri, tmp_path, bin_dir, cd.conf_dir, configmap(tmp_path / "configmap",
                                                                                      tmp_path / "ipam"), api,
                                  plugin_cache)
    conflist = cd.conf_dir / "10-cni-suite.conflist"

    # 0. Without the ClusterRoleBinding the API forbids reading the node: the installer exits 3 with the fix in its
    #    message (`kubectl describe` shows it: FallbackToLogsOnError), and writes nothing.
    api.set_node([POD_CIDR], allowed=False)
    pod_0, installer_0, log_0 = daemonset.run(images[0][0])
    assert cri.wait_exited(installer_0) == 3
    assert "ServiceAccount kube-system/cni-suite needs the ClusterRole cni-suite" in log_0.read_text()
    assert not any(bin_dir.iterdir()) and not conflist.exists() and not (plugin_cache / "warm-mode").exists()
    daemonset.remove(pod_0)

    # 1. The DaemonSet's pod reads its node from the API: no pod CIDR yet, so it waits and writes no config; once
    #    the node IPAM controller (here: the test) assigns one, the config holds it; containerd notices by itself.
    api.set_node([])
    pod_a, installer_a, log_a = daemonset.run(images[0][0], "--warm=on")  # after the manifest's --warm=auto
    wait_for(lambda: log_a.exists() and "has no spec.podCIDR yet" in log_a.read_text(),
             f"the installer to wait for the pod CIDR (installer log: {log_a})")
    assert not conflist.exists()
    api.set_node([POD_CIDR])
    wait_for(conflist.exists, f"the config (installer log: {log_a})")
    ipam = json.loads(conflist.read_text())["plugins"][0]["ipam"]
    assert (ipam["ranges"], ipam["routes"]) == ([[{"subnet": POD_CIDR}]], [{"dst": "0.0.0.0/0"}])
    assert {build_hash(bin_dir / t) for t in TYPES} == {build_hash(first)}
    assert f"installed {', '.join(TYPES)}" in log_a.read_text()  # by the container, not the test
    assert (plugin_cache / "warm-mode").read_text().split()[0] == "on"
    assert plugin_cache.stat().st_mode & 0o7777 == 0o700  # made private as the launcher makes its cache
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
    # The pod's plugin calls (bridge, host-local, portmap) went through the warm process, as `inspect` on the node
    # shows (`on`: the first call started it and waited for it).
    inspect = subprocess.run([str(bin_dir / "bridge"), "inspect", "--format", "json", "--data-dir",
                              str(tmp_path / "ipam")], env={"CNI_SUITE_CACHE_DIR": str(plugin_cache)},
                             capture_output=True, timeout=60, check=True)
    served = [w for w in json.loads(inspect.stdout)["warm"] if w["state"] == "running"]
    assert served and sum(int(w["calls"]) for w in served) > 0, served

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
        # The API is down when the new pod starts: it retries, and the node keeps the old build and config.
        api.stop()
        config_before = conflist.read_bytes()
        pod_b, installer_b, log_b = daemonset.run(images[1][0], "--remove-config-on-exit")
        wait_for(lambda: log_b.exists() and log_b.read_text().count("the API is unreachable") >= 2,
                 f"the new installer to retry (installer log: {log_b})")
        assert conflist.read_bytes() == config_before
        assert {build_hash(bin_dir / t) for t in TYPES} == {build_hash(first)}
        api.start()
        wait_for(lambda: {build_hash(bin_dir / t) for t in TYPES} == {build_hash(second)},
                 f"the second build (installer log: {log_b})")
        assert (plugin_cache / "warm-mode").read_text().split()[0] == "auto"  # the manifest's, with the rollout
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
