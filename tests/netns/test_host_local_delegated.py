"""Our host-local as the IPAM of the Go bridge, in throwaway namespaces (prefix ``cnt-i``).

This is how host-local really runs: a main plugin finds it in CNI_PATH and execs it with the same env and
stdin. The Go bridge must get our addresses onto the container interface, and its DEL must release them.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.helpers import net, paths
from tests.helpers.netns import Netns, netns_unavailable_reason


@pytest.fixture
def namespaces() -> Iterator[tuple[Netns, Netns]]:
    """A host and a container namespace, both removed afterwards whatever happens."""
    reason = netns_unavailable_reason()
    if reason:
        if paths.in_ci():
            pytest.fail(f"{reason} (CI=true: not skipping)")
        pytest.skip(reason)
    tag = secrets.token_hex(3)
    made: list[Netns] = []
    try:
        for role in ("h", "c"):
            ns = Netns(f"cnt-i{tag}-{role}")
            subprocess.run(["ip", "netns", "add", ns.name], check=True, capture_output=True)
            made.append(ns)
            ns.ip("link", "set", "lo", "up")
        yield made[0], made[1]
    finally:
        for ns in reversed(made):
            subprocess.run(["ip", "netns", "del", ns.name], capture_output=True)


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    """CNI_PATH holding the Go bridge and our host-local (the built binary, else a wrapper around -m)."""
    go_bridge = paths.GO_PLUGIN_DIR / "bridge"
    if not os.access(go_bridge, os.X_OK):
        pytest.skip(f"{go_bridge} not installed")
    d = tmp_path / "bin"
    d.mkdir()
    (d / "bridge").symlink_to(go_bridge)
    built = paths.DIST_DIR / "host-local"
    if os.access(built, os.X_OK):
        (d / "host-local").symlink_to(built)
    else:
        wrapper = d / "host-local"
        wrapper.write_text(f"#!/bin/sh\nPYTHONPATH={paths.REPO} exec {paths.REPO}/.venv/bin/python "
                           "-m ipam.host_local\n")
        wrapper.chmod(0o755)
    return d


def bridge(host: Netns, verb: str, conf: dict[str, Any], container: Netns, bin_dir: Path) -> tuple[int, Any]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "CNI_COMMAND": verb, "CNI_CONTAINERID": "cnt-i-ctr",
           "CNI_NETNS": container.path, "CNI_IFNAME": "eth0", "CNI_PATH": str(bin_dir)}
    proc = host.run([str(bin_dir / "bridge")], check=False, env=env, input=json.dumps(conf))
    return proc.returncode, (json.loads(proc.stdout) if proc.stdout.strip() else proc.stderr)


def test_go_bridge_with_our_host_local(namespaces, bin_dir, tmp_path):
    host, container = namespaces
    data_dir = tmp_path / "ipam"
    conf = {"cniVersion": "1.0.0", "name": "cnt-i-net", "type": "bridge", "bridge": "cntibr0", "isGateway": True,
            "ipam": {"type": "host-local", "dataDir": str(data_dir),
                     "ranges": [[{"subnet": "10.78.0.0/24"}], [{"subnet": "fd78::/64"}]],
                     "routes": [{"dst": "0.0.0.0/0"}]}}
    rc, out = bridge(host, "ADD", conf, container, bin_dir)
    assert rc == 0, out
    assert [ip["address"] for ip in out["ips"]] == ["10.78.0.2/24", "fd78::2/64"]
    assert "10.78.0.2/24" in net.ip_addresses(container, "eth0")
    assert net.ping(container, "10.78.0.1")
    assert (data_dir / "cnt-i-net" / "10.78.0.2").read_bytes() == b"cnt-i-ctr\r\neth0"
    rc, check = bridge(host, "CHECK", {**conf, "prevResult": out}, container, bin_dir)
    assert rc == 0, check
    rc, out = bridge(host, "DEL", conf, container, bin_dir)
    assert rc == 0, out
    left = {p.name for p in (data_dir / "cnt-i-net").iterdir()}
    assert not {"10.78.0.2", "fd78::2"} & left
    assert net.link(container, "eth0") is None
