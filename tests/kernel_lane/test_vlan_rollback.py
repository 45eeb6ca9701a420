"""Issue 23, item 3, in the kernel lane (real bridge VLAN filtering; this machine's kernel has none): a failed first
ADD with an access VLAN leaves no ``<bridge>.<vlan>`` and no bridge; the gateway link stays when another port of
the bridge is in its VLAN. The same rollback without VLAN filtering runs everywhere:
tests/netns/test_bridge_vlan_rollback.py, whose launcher (the bridge plugin with the gateway address step failing,
after ``<bridge>.<vlan>`` was made) this module puts in the case's ``CNI_PATH``.
"""

from __future__ import annotations

import sys

import pytest

from tests.helpers import paths

kernel_lane = pytest.importorskip("tests.helpers.kernel_lane", reason="the kernel lane (tests/kernel_lane) is absent")

from tests.e2e_bridge import lab  # noqa: E402
from tests.netns.test_bridge_vlan_rollback import LAUNCHER  # noqa: E402

BRIDGE = "cntl8"
NET = "cntl-vlanfail"

FIRST_ADD = """
CNI_PATH=$PWD/bin
mkns cnt-v1
fact add cni add cntl-vlanfail cnt-v1
fact links inns $HOST ip -j link show
fact ctr-links inns cnt-v1 ip -j link show
fact leases sh -c 'ls /run/cnt-ipam/cntl-vlanfail | grep "^10\\." || true'
"""

ANOTHER_PORT_IN_THE_VLAN = """
CNI_PATH=$PWD/bin
inns $HOST ip link add cntl8 type bridge vlan_filtering 1
inns $HOST ip link set cntl8 up
inns $HOST ip link add cntlother type veth peer name cntlother1
inns $HOST ip link set cntlother master cntl8 up
inns $HOST bridge vlan add vid 10 dev cntlother pvid untagged
mkns cnt-v2
fact add cni add cntl-vlanfail cnt-v2
fact links inns $HOST ip -j link show
fact ports inns $HOST ip -j link show master cntl8
fact vlans inns $HOST bridge -j vlan show
"""


def _conflist() -> dict:
    ipam = {"type": "host-local", "dataDir": "/run/cnt-ipam", "ranges": [[{"subnet": "10.87.0.0/24"}]]}
    return lab.bridge_conflist(NET, BRIDGE, None, vlan=10, isGateway=True, ipam=ipam)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def lane(lane_batch) -> dict:
    batch = lane_batch()
    for name, script in (("first-add", FIRST_ADD), ("another-port", ANOTHER_PORT_IN_THE_VLAN)):
        case = batch.case(name, script, conflists=[_conflist()])
        (case / "bin").mkdir()
        (case / "bin" / "host-local").symlink_to(paths.REPO / "dist" / "host-local")
        launcher = case / "bin" / "bridge"
        launcher.write_text(LAUNCHER.format(python=sys.executable, repo=str(paths.REPO), no_vlans=False, works=False))
        launcher.chmod(0o755)
    return batch.run()


def test_a_failed_first_add_with_an_access_vlan_leaves_nothing(lane) -> None:
    case = lane["first-add"]
    add = case.fact("add")
    assert add.rc != 0 and "faked" in add.out, case
    assert [link["ifname"] for link in case.fact("links").json()] == ["lo"], case
    assert [link["ifname"] for link in case.fact("ctr-links").json()] == ["lo"], case
    assert case.fact("leases").out.split() == [], case


def test_the_vlan_gateway_stays_when_another_port_is_in_its_vlan(lane) -> None:
    case = lane["another-port"]
    assert case.fact("add").rc != 0, case
    names = [link["ifname"] for link in case.fact("links").json()]
    assert f"{BRIDGE}.10" in names and BRIDGE in names and "cntlother" in names, case
    ports = [link["ifname"] for link in case.fact("ports").json()]
    assert len(ports) == 2 and "cntlother" in ports, case  # the container's veth went, the gateway's peer stayed
    peer = next(name for name in ports if name != "cntlother")
    vlans = {entry["ifname"]: [v["vlan"] for v in entry["vlans"]] for entry in case.fact("vlans").json()}
    assert vlans[peer] == [10], case  # still the VLAN's port
