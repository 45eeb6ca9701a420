"""podman (Debian 12's 4.3, CNI backend) on a node whose CNI plugin directory holds only this suite's files.

podman writes its own conflist (``podman network create``: bridge, portmap, firewall, tuning). A container
with a published port, run from a busybox root (``--rootfs``: no image store), is reached from another
container and through the host port; ``podman rm`` and ``podman network rm`` leave nothing of it.

Confinement: podman runs inside a test "host" network namespace, and in a private mount namespace held open
by one process (every podman call enters both with nsenter), where /var/lib (libcni's cache and host-local's
store, /var/lib/cni) is the test's folder and /run/netns (podman's container namespaces) a tmpfs. Its storage,
run root, containers.conf, network config dir and events log are under the test's temp dir too; the D-Bus
system bus it would pass to firewall's backend auto-detection is a path that does not exist. The machine's
namespace, /var/lib/cni, /etc/cni/net.d and /run/netns are never touched. Known needs on these machines:
``--runtime runc`` (crun refuses the hybrid cgroup layout) and the ulimits below.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from tests.helpers.netns import Netns
from tests.helpers.skip import skip_or_fail

RUN_FLAGS = ["--runtime", "runc", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
PLUGINS = ("bridge", "host-local", "portmap", "firewall", "tuning")
SUBNET, GATEWAY = "10.99.20.0/24", "10.99.20.1"
BUSYBOX_APPLETS = ("sh", "nc", "sleep", "cat", "echo")
CONTAINERS_CONF = """[network]
network_backend = "cni"
cni_plugin_dirs = ["{bin}"]
network_config_dir = "{netd}"
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{tmp}/events.log"
tmp_dir = "{tmp}/libpod"
"""


class Podman:
    """podman with every path of its own, run inside ``host`` through a mount namespace held by a process."""

    def __init__(self, host: Netns, work: Path, plugin_dir: Path) -> None:
        self.host, self.work = host, work
        self.bin = work / "cni-bin"
        self.bin.mkdir(parents=True)
        for name in PLUGINS:
            shutil.copy2(plugin_dir / name, self.bin / name)
        (work / "net.d").mkdir()
        (work / "varlib").mkdir()
        self.rootfs = _busybox_root(work / "rootfs")
        (work / "containers.conf").write_text(CONTAINERS_CONF.format(bin=self.bin, netd=work / "net.d", tmp=work))
        self.holder = subprocess.Popen(
            ["nsenter", f"--net={host.path}", "unshare", "-m", "--propagation", "private", "sh", "-c",
             f"mount --bind {work / 'varlib'} /var/lib && mount -t tmpfs cnt-podman-netns /run/netns && "
             f"echo ready && exec sleep infinity"], stdout=subprocess.PIPE, text=True)
        assert self.holder.stdout is not None and self.holder.stdout.readline().strip() == "ready"

    def enter(self, argv: list[str]) -> list[str]:
        return ["nsenter", "-t", str(self.holder.pid), "-m", "-n", *argv]

    def run(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        argv = self.enter(["env", f"CONTAINERS_CONF={self.work / 'containers.conf'}",
                           f"DBUS_SYSTEM_BUS_ADDRESS=unix:path={self.work / 'no-bus'}", "podman",
                           "--root", str(self.work / "root"), "--runroot", str(self.work / "runroot"),
                           "--storage-driver", "vfs", *args])
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)}: {proc.stderr}")
        return proc

    def in_host(self, *argv: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.enter(list(argv)), capture_output=True, text=True, timeout=60, input=stdin)

    def close(self) -> None:
        self.run("rm", "-a", "-f", check=False)
        self.holder.kill()
        self.holder.wait()


def _busybox_root(root: Path) -> Path:
    busybox = shutil.which("busybox")
    if busybox is None:
        skip_or_fail("busybox-static is needed for the container root")
    (root / "bin").mkdir(parents=True)
    shutil.copy2(busybox, root / "bin" / "busybox")
    for applet in BUSYBOX_APPLETS:
        (root / "bin" / applet).symlink_to("busybox")
    for folder in ("proc", "sys", "dev", "etc", "tmp", "run"):
        (root / folder).mkdir()
    return root


@pytest.fixture
def podman(host_ns: Netns, plugin_dir: Path) -> Iterator[Podman]:
    for tool in ("podman", "runc", "nsenter", "unshare"):
        if shutil.which(tool) is None:
            skip_or_fail(f"{tool} is needed (.ci/setup installs podman)")
    work = Path(tempfile.mkdtemp(prefix="cnt-pod-"))  # short: podman refuses a run root over 50 characters
    try:
        p = Podman(host_ns, work, plugin_dir)
        yield p
        p.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_published_port_reached_from_a_container_and_the_host(podman: Podman):
    podman.run("network", "create", "--subnet", SUBNET, "cntpod")
    conflist = next((podman.work / "net.d").glob("*.conflist")).read_text()
    assert all(f'"type": "{t}"' in conflist for t in ("bridge", "portmap", "firewall", "tuning")), conflist
    podman.run("run", "-d", "--name", "cntweb", "--network", "cntpod", "-p", "18080:80", *RUN_FLAGS,
               "--rootfs", str(podman.rootfs), "sh", "-c", "while true; do echo hello-from-web | nc -l -p 80; done")
    ip = podman.run("inspect", "cntweb", "--format", "{{.NetworkSettings.Networks.cntpod.IPAddress}}").stdout.strip()
    filter_table = podman.in_host("iptables-save", "-t", "filter").stdout
    assert f"-A CNI-FORWARD -s {ip}/32 -j ACCEPT" in filter_table  # our firewall's rules

    client = podman.run("run", "--rm", "--network", "cntpod", *RUN_FLAGS, "--rootfs", str(podman.rootfs),
                        "nc", ip, "80")
    assert "hello-from-web" in client.stdout
    through_port = podman.in_host("timeout", "10", "busybox", "nc", GATEWAY, "18080", stdin="\n")
    assert "hello-from-web" in through_port.stdout, through_port

    podman.run("rm", "-f", "cntweb")
    podman.run("network", "rm", "cntpod")
    assert podman.run("ps", "-a", "-q").stdout.strip() == ""
    links = podman.in_host("ip", "-br", "link").stdout.split()
    assert "cni-podman1" not in links and not any(name.startswith("veth") for name in links)
    saved = podman.in_host("iptables-save").stdout
    assert ip not in saved and "CNI-DN-" not in saved
    store = podman.work / "varlib" / "cni" / "networks" / "cntpod"
    assert not [f for f in store.iterdir() if f.name[0].isdigit()] if store.exists() else True
    assert not any((podman.work / "varlib" / "cni" / "results").iterdir())
    assert not list((podman.work / "net.d").glob("*.conflist"))
