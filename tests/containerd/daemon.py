"""A private containerd 1.6 for one test, living inside a test "host" netns.

Pitfalls met:
- Start it with `nsenter --net=/run/netns/NAME`, never `ip netns exec`: the
  latter remounts /sys, which hides the cgroup mounts, and runc then fails
  with "no cgroup mount found in mountinfo".
- `restrict_oom_score_adj = true` is required for CRI pods here: root lacks
  CAP_SYS_RESOURCE and runc otherwise fails with "can't get final child's PID
  from pipe: EOF".
- root, state, socket and runc's Root live under a short temp folder (unix
  socket paths are limited to 108 bytes). The shims still put their sockets in
  /run/containerd/s/<hash> (hard-wired in 1.6; the hash includes our socket
  path, so they never collide with a system containerd).
- containerd 1.6 keeps libcni's result cache in /var/lib/cni with no setting;
  it runs in a private mount namespace where a test folder is mounted there
  (see mounts.py). Its own mounts (rootfs, netns pins, shm) stay in that
  namespace too, so nothing leaks into the machine's mount table.
- The conflist must exist before containerd starts, or CRI Status reports
  NetworkReady=false until its file watcher catches up.
- Killing containerd and its shims does not kill the containers: their
  processes live in their own netns, so teardown also kills whatever is left in
  the cgroups we assigned (`cgroup_parent`), then removes those cgroups.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.containerd.mounts import private_mounts_argv
from tests.helpers.netns import Netns

CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass
class Containerd:
    """A running private containerd: its folders, socket, host netns and process."""

    host: Netns
    workdir: Path
    bin_dir: Path
    conf_dir: Path
    namespace: str  # containerd namespace for ctr; also the cgroup parent name
    sandbox_image: str
    proc: subprocess.Popen | None = None
    #: Added to containerd's environment, which go-cni passes on to every plugin (e.g. CNI_SUITE_CACHE_DIR).
    extra_env: dict[str, str] = field(default_factory=dict)
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.workdir / "containerd.log"

    @property
    def socket(self) -> Path:
        return self.workdir / "containerd.sock"

    @property
    def cni_cache_dir(self) -> Path:
        """What containerd sees as /var/lib/cni (libcni results under results/)."""
        return self.workdir / "var-lib-cni"

    def config_toml(self) -> str:
        w = self.workdir
        return f"""version = 2
root = "{w}/root"
state = "{w}/state"
oom_score = 0
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "{self.socket}"
[ttrpc]
  address = "{self.socket}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{w}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{self.sandbox_image}"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{self.bin_dir}"
    conf_dir = "{self.conf_dir}"
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = "{w}/runc"
"""

    def start(self, ready_timeout: float = 20) -> None:
        """Write the config, start containerd in the host netns and wait for its socket."""
        self.cni_cache_dir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "config.toml"
        config.write_text(self.config_toml())
        argv = private_mounts_argv(["containerd", "--config", str(config), "--log-level", "info"],
                                   {"/var/lib/cni": self.cni_cache_dir}, self.workdir)
        log = self.log.open("wb")
        self.proc = subprocess.Popen(["nsenter", f"--net={self.host.path}", *argv], stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     env={**os.environ, **self.extra_env})
        deadline = time.monotonic() + ready_timeout
        while True:  # readiness wait (not a timed assertion): poll until ctr answers
            if self.proc.poll() is not None:
                raise RuntimeError(f"containerd exited with {self.proc.returncode}: {self.log_tail()}")
            if self.socket.exists() and self.ctr("version", check=False).returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"containerd not ready after {ready_timeout}s: {self.log_tail()}")
            time.sleep(0.05)

    def ctr(self, *args: str, namespace: str | None = None, check: bool = True,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """`ctr --address SOCK -n NS args...` from the test process (a pure socket client)."""
        argv = ["ctr", "--address", str(self.socket), "-n", namespace or self.namespace, *args]
        return subprocess.run(argv, check=check, capture_output=True, text=True, timeout=timeout)

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of containerd's log, for failure messages."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM containerd (SIGKILL if it lingers), then clear its cgroups and folders."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        # Shims outlive containerd by design; ours are the ones in our host netns.
        for pid in self.host.pids():
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/comm").read_text().startswith("containerd-shim"):
                    os.kill(pid, signal.SIGKILL)
        kill_cgroup_tree(self.namespace)
        # 1.6 creates the shim socket folder /run/containerd/s itself; drop it
        # (and /run/containerd) only if empty, i.e. only if nothing else uses them.
        for leftover in (Path("/run/containerd/s"), Path("/run/containerd")):
            with contextlib.suppress(OSError):
                leftover.rmdir()


def cgroup_dirs(name: str) -> list[Path]:
    """Every `<hierarchy>/<name>` folder (cgroup v1: one per controller; v2: one)."""
    if (CGROUP_ROOT / "cgroup.controllers").exists():
        return [CGROUP_ROOT / name] if (CGROUP_ROOT / name).is_dir() else []
    return [h / name for h in CGROUP_ROOT.iterdir() if not h.is_symlink() and (h / name).is_dir()]


def kill_cgroup_tree(name: str) -> None:
    """SIGKILL every process in the test cgroup `/<name>` and remove its folders (deepest first).

    Only cgroups named with the test prefix are touched; every process in them
    was started by the test (containers, sandboxes).
    """
    if not name.startswith("cnt-"):
        raise ValueError(f"refusing to clean cgroup {name!r} without the test prefix")
    for top in cgroup_dirs(name):
        for procs in top.rglob("cgroup.procs"):
            with contextlib.suppress(OSError):
                for pid in procs.read_text().split():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)
    for top in cgroup_dirs(name):
        for sub in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            _rmdir_retry(sub)
        _rmdir_retry(top)


def _rmdir_retry(path: Path) -> None:
    # A killed task leaves its cgroup a moment later; rmdir fails with EBUSY until then.
    for _ in range(50):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.02)
