"""Fixtures of the real-kernel tests: a per-test pool (``cnt-l<run>-…``) for the netlink, netns and bridge
tests, and the simulated vxlan cluster (:mod:`tests.helpers.vxlan_lab`) with its etcd."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from tests.helpers.etcd import EtcdServer
from tests.helpers.netns import NetnsPool, serve_pool
from tests.helpers.vxlan_lab import Cluster, Lab, source_bin_dir


@pytest.fixture
def pool() -> Iterator[NetnsPool]:
    """Namespaces named ``cnt-l<run>-<role><n>``, removed after the test; skips without namespace support."""
    yield from serve_pool(NetnsPool(tag="l"), strict=False)


@pytest.fixture
def lab(netns_pool: NetnsPool) -> Iterator[Lab]:
    """An empty underlay; add nodes with ``lab.add_node(n)``."""
    lab = Lab(netns_pool).up()
    yield lab
    lab.down()


@pytest.fixture
def etcd(lab: Lab) -> Iterator[EtcdServer]:
    """etcd listening on the underlay bridge (``.254``), reachable from every node."""
    server = EtcdServer(ns=lab.underlay, host=lab.bridge_address(254)).start()
    yield server
    server.stop()


@pytest.fixture
def cluster(lab: Lab, cnitool_bin: Path, tmp_path: Path, netns_pool: NetnsPool) -> Cluster:
    """Per-node libcni drivers over ``lab``: vxlan from the source tree, our built host-local (``tmp_path/bin``)."""
    return Cluster(lab, cnitool_bin, source_bin_dir(tmp_path / "bin"), tmp_path, netns_pool)
