"""`ctr run --cni`: the plain-containerd path (ctr itself runs CNI through go-cni).

Pitfalls:
- ctr (not containerd) calls the plugins, with go-cni's fixed defaults:
  config from /etc/cni/net.d, binaries from /usr/lib/cni (Debian's patched
  default) and libcni's cache in /var/lib/cni. So ctr runs in the host netns
  inside a private mount namespace with the test folders mounted on those
  paths (mounts.py). The bin folder must hold real files, not symlinks into
  /usr/lib/cni, or the bind mount turns them into loops.
- go-cni in ctr adds no loopback network, and `--rm` runs CNI DEL with an
  empty netns path after the task has exited (plugins just release IPAM).
- runc's state would go to /run/containerd/runc/<ns> (ctr ignores the CRI
  runtime options): `--runc-root` keeps it in the test folder.
- The container cgroup defaults to /<ctr namespace>/<id>; we pass it
  explicitly so kill_cgroup_tree() can find it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.containerd.daemon import Containerd
from tests.containerd.mounts import private_mounts_argv


def ctr_run_cni(cd: Containerd, rootfs: Path, container_id: str, command: list[str], *, bin_dir: Path,
                conf_dir: Path, cache_dir: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """`ctr run --rm --cni --rootfs ROOTFS ID COMMAND...` in `cd`'s host netns; waits for the exit."""
    fifo_dir = cd.workdir / "fifo"
    fifo_dir.mkdir(exist_ok=True)
    cache_dir.mkdir(parents=True, exist_ok=True)
    ctr = ["ctr", "--address", str(cd.socket), "-n", cd.namespace, "run", "--rm", "--cni",
           "--fifo-dir", str(fifo_dir), "--runc-root", str(cd.workdir / "runc-ctr"), "--cgroup", f"/{cd.namespace}/{container_id}",
           "--rootfs", str(rootfs), container_id, *command]
    binds = {"/etc/cni/net.d": conf_dir, "/usr/lib/cni": bin_dir, "/var/lib/cni": cache_dir}
    argv = ["nsenter", f"--net={cd.host.path}", *private_mounts_argv(ctr, binds, cd.workdir / "ctr-mounts")]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
