"""Plugin calls inside another distribution's root filesystem, as that node's runtime would make them.

The root filesystems are made once by ``.ci/rootfs`` under ``build/rootfs/`` (Debian 11 by debootstrap; a
musl-only one). The plugins are installed into a root's ``/opt/cni/bin`` with ``./build.sh install``, and every
call runs ``chroot ROOT /opt/cni/bin/<type>`` with the CNI environment and stdin, so the plugin and everything
it runs (``iptables-restore``, ``nft``) are the root filesystem's, from its own ``PATH``.

Each call gets a mount namespace of its own (``unshare --mount --propagation slave``) in which ``/proc``,
``/sys``, ``/dev`` and ``/run/netns`` are bind-mounted into the root: the mounts vanish with the call's process,
even when a test fails or is killed, and none of them reaches the machine's mount table. With a ``host``
namespace the call runs under ``ip netns exec`` first, whose fresh ``/sys`` shows that namespace's links.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any, Optional

from tests.helpers import paths
from tests.helpers.netns import Netns
from tests.helpers.skip import skip_or_fail

ROOTFS_DIR = paths.REPO / "build" / "rootfs"
NODE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BIN_DIR = "/opt/cni/bin"

# Runs outside the root (the machine's sh, mount, chroot), inside the call's own mount namespace.
_ENTER = r"""
set -e
root=$1; shift
for dir in proc sys dev run/netns; do
    mkdir -p "$root/$dir"
    mount --rbind "/$dir" "$root/$dir"
done
exec chroot "$root" "$@"
"""


def rootfs(name: str) -> Path:
    """``build/rootfs/<name>``, made by ``.ci/rootfs``; skips (fails in CI) when it is missing."""
    root = ROOTFS_DIR / name
    if not (root / ".complete").exists():
        skip_or_fail(f"{root} missing: run bash .ci/rootfs (part of .ci/setup)")
    return root


def install_plugins(root: Path) -> None:
    """The built files into ``ROOT/opt/cni/bin`` as a node gets them, and no unpacked build left from before
    (the first call of the test unpacks, into the root's own ``/var/cache/cni-suite``)."""
    (root / "var" / "cache").mkdir(parents=True, exist_ok=True)
    shutil.rmtree(root / "var" / "cache" / "cni-suite", ignore_errors=True)
    subprocess.run([str(paths.REPO / "build.sh"), "install", str(root / BIN_DIR.lstrip("/"))], check=True,
                   capture_output=True, timeout=120)


def run_in_root(root: Path, argv: list[str], env: Optional[dict[str, str]] = None, stdin: str = "",
                host: Optional[Netns] = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``argv`` (paths inside the root) run chrooted, in ``host``'s network namespace when given."""
    command = ["unshare", "--mount", "--propagation", "slave", "sh", "-c", _ENTER, "enter", str(root), *argv]
    if host is not None:
        command = host.cmd(command)
    return subprocess.run(command, env={"PATH": NODE_PATH, **(env or {})}, input=stdin, capture_output=True,
                          text=True, timeout=timeout)


class Plugin:
    """CNI calls of one plugin type inside a root filesystem, the runtime's way: environment and stdin."""

    def __init__(self, root: Path, plugin_type: str, host: Optional[Netns] = None) -> None:
        self.root, self.type, self.host = root, plugin_type, host

    def call(self, verb: str, conf: dict[str, Any], container_id: str = "", netns: str = "",
             ifname: str = "eth0") -> tuple[int, Any, str]:
        env = {"CNI_COMMAND": verb, "CNI_CONTAINERID": container_id, "CNI_NETNS": netns, "CNI_IFNAME": ifname,
               "CNI_PATH": BIN_DIR}
        proc = run_in_root(self.root, [f"{BIN_DIR}/{self.type}"], env, json.dumps(conf), self.host)
        out = json.loads(proc.stdout) if proc.stdout.strip() else None
        return proc.returncode, out, proc.stderr
