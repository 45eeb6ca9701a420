"""Fixtures for the bridge end-to-end suite: namespaces named `cnt-e<run>-*`, a bridge driver, VLAN probing.

The shared `netns_pool` is replaced by one with this suite's prefix, so every namespace (and the containerd
namespace/cgroup names derived from it) is recognisably ours; the shared fixtures (`host_ns`,
`make_container_ns`, `cnitool`, `go_cnitool`, `make_containerd`) all build on it.
"""

from __future__ import annotations

import functools
import secrets
import subprocess
from typing import Iterator

import pytest

from tests.containerd.conftest import (  # noqa: F401  (fixtures re-exported for test_containerd.py)
    containerd_tools, make_containerd, rootfs, sandbox_image_tar, workroot)
from tests.helpers.netns import TEST_PREFIX, Netns, NetnsPool, serve_pool


@pytest.fixture(scope="session")
def netns_pool() -> Iterator[NetnsPool]:
    """Namespaces named `cnt-e<run>-<role><n>`."""
    yield from serve_pool(NetnsPool(tag="e"), leftovers=True)


@pytest.fixture
def remote_ns(netns_pool: NetnsPool) -> Iterator[Netns]:
    """A namespace standing in for a machine beyond the node (see lab.make_remote)."""
    ns = netns_pool.create("remote", lo_up=True)
    yield ns
    netns_pool.remove(ns)


@functools.lru_cache(maxsize=1)
def bridge_vlan_unsupported() -> str | None:
    """Why this kernel cannot do bridge VLAN filtering (None when it can); probed once per run.

    Some kernels are built without CONFIG_BRIDGE_VLAN_FILTERING: creating a bridge with
    vlan_filtering=1 then fails with EOPNOTSUPP.
    """
    probe = f"{TEST_PREFIX}e{secrets.token_hex(3)}-vlanprobe"
    subprocess.run(["ip", "netns", "add", probe], check=True, capture_output=True)
    try:
        res = subprocess.run(["ip", "-n", probe, "link", "add", "cntevlan", "type", "bridge", "vlan_filtering", "1"],
                             capture_output=True, text=True)
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    if res.returncode != 0 and "Operation not supported" in res.stderr:
        return "this kernel has no bridge VLAN filtering (EOPNOTSUPP): kernel limit, vlan tests cannot run"
    return None
