"""A plugin killed with SIGKILL in the middle of ADD: nothing in temporary folders, and DEL still cleans up.

The runtime kills plugins that time out, and a node can lose power mid-call. The single-file build never
unpacks into /tmp (see docs/packaging.md), and DEL must remove whatever the interrupted ADD had made: the
container's veth, its address reservation and its masquerade rules.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import net

NET = "cnt-kill"
# From "before the plugin's Python starts" to "after the veth and the reservation exist".
KILL_DELAYS_S = (0.005, 0.03, 0.06, 0.09, 0.12, 0.18)


def _conf(data_dir: Path) -> dict:
    return {"cniVersion": "1.0.0", "name": NET, "type": "bridge", "bridge": "cntkill0", "isGateway": True,
            "ipMasq": True, "ipam": {"type": "host-local", "dataDir": str(data_dir),
                                     "ranges": [[{"subnet": "10.79.0.0/24"}]]}}


def _env(plugin_dir: Path, container, container_id: str, command: str) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "CNI_COMMAND": command,
            "CNI_CONTAINERID": container_id, "CNI_NETNS": container.path, "CNI_IFNAME": "eth0",
            "CNI_PATH": str(plugin_dir)}


def _tmp_leftovers() -> set[str]:
    return {n for n in os.listdir("/tmp") if n.startswith(("_MEI", "cni-suite"))}


@pytest.mark.parametrize("delay", KILL_DELAYS_S)
def test_killed_add_leaves_no_temp_files_and_del_cleans_up(delay, host_ns, make_container_ns, plugin_dir,
                                                           tmp_path):
    import json

    container = make_container_ns()
    container_id = f"kill{int(delay * 1000)}"
    conf = json.dumps(_conf(tmp_path / "ipam")).encode()
    before = _tmp_leftovers()

    proc = subprocess.Popen(host_ns.cmd([str(plugin_dir / "bridge")]), stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=_env(plugin_dir, container, container_id, "ADD"))
    proc.stdin.write(conf)
    proc.stdin.close()
    time.sleep(delay)
    _kill_tree(proc)

    assert _tmp_leftovers() == before
    done = host_ns.run([str(plugin_dir / "bridge")], check=False, input=conf.decode(),
                       env=_env(plugin_dir, container, container_id, "DEL"))
    assert done.returncode == 0, done.stdout + done.stderr

    assert net.link(container, "eth0") is None
    assert not [link for link in net.links(host_ns) if link["ifname"].startswith("veth")]
    reservations = tmp_path / "ipam" / NET
    if reservations.exists():
        assert not [p for p in reservations.iterdir() if p.name.startswith("10.79.")]
    rules = host_ns.run(["iptables-save", "-t", "nat"]).stdout
    assert container_id not in rules


def _kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL the plugin: `ip netns exec` execs it, so the Popen pid is the plugin's own process."""
    try:
        proc.send_signal(signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
