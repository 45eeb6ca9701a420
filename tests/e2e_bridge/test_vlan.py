"""A bridge VLAN on a kernel without bridge VLAN filtering: a clear error and nothing left behind.

The VLANs themselves (access VLANs apart, a trunk carrying its VLANs, with traffic) are tested in the kernel
lane, on Debian's own kernel: tests/kernel_lane/test_bridge_vlan.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e_bridge import lab
from tests.e2e_bridge.conftest import bridge_vlan_unsupported
from tests.helpers import net

SUBNET = "10.86.0.0/24"


def _vlan_net(name: str, vlan: int, first: int, data_dir: Path) -> dict:
    """One network per VLAN, one shared subnet (disjoint ranges), so only the VLAN can keep them apart."""
    ipam = {"type": "host-local", "dataDir": str(data_dir),
            "ranges": [[{"subnet": SUBNET, "rangeStart": f"10.86.0.{first}", "rangeEnd": f"10.86.0.{first + 9}"}]]}
    return lab.bridge_conflist(name, "cnte8", data_dir, vlan=vlan, ipam=ipam)


def test_without_vlan_filtering_a_vlan_add_fails_cleanly(cnitool, host_ns, make_container_ns, tmp_path: Path):
    """The other side of the kernel limit: a clear error and nothing left behind (runs only on such kernels)."""
    if not bridge_vlan_unsupported():
        pytest.skip("this kernel has bridge VLAN filtering: covered by tests/kernel_lane/test_bridge_vlan.py")
    conf = _vlan_net("cnte-vlan10", 10, 10, tmp_path / "ipam")
    cnitool.write_conflist(conf)
    ctr = make_container_ns()
    add = cnitool.add("cnte-vlan10", ctr)
    assert add.rc == 1 and "Operation not supported" in add.out["error"], add
    assert lab.veths(host_ns) == [] and [lk["ifname"] for lk in net.links(ctr)] == ["lo"]
    assert lab.leases(tmp_path / "ipam", "cnte-vlan10") == []
