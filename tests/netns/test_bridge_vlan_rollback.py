"""Issue 23, item 3: a failed first ADD with an access VLAN (``vlan``) removes the ``<bridge>.<vlan>`` gateway link
it made and then the bridge, so the node is as it was; ``<bridge>.<vlan>`` stays when another port of the bridge is
in that VLAN.

The failure is faked in the plugin's process after the gateway link was made (putting the gateway address on it
fails); everything else is the kernel's. Here, on any kernel, the VLAN programming is left out of the plugin's
process (no VLAN filtering needed): ``<bridge>.<vlan>`` is made, the ADD fails, both it and the bridge go. With
the kernel's bridge VLAN filtering, the same launcher runs in the kernel lane (Debian's own kernel under qemu):
tests/kernel_lane/test_vlan_rollback.py.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from tests.helpers.plugin import run_plugin
from tests.netns import test_bridge_plugin as bp

ipj, leases = bp.ipj, bp.leases
host, make_ctr, cni_bin = bp.host, bp.make_ctr, bp.cni_bin  # fixtures shared with test_bridge_plugin

VLAN = 10
GATEWAY_LINK = f"cntbr0.{VLAN}"

#: The plugin with the gateway address step failing (after ``<bridge>.<vlan>`` was made) unless ``works``; with
#: ``no_vlans`` also without bridge VLAN filtering and VLAN programming, for a kernel that has neither.
LAUNCHER = """#!{python}
import sys
sys.path.insert(0, {repo!r})
from cni_common.errors import CNIError, PluginCode
from cni_common.attach import bridge_port

def ensure_gateway_addr(host, link, addr, force):
    raise CNIError(PluginCode.LINK_FAILURE, "cannot add the gateway address (faked)")

if not {works}:
    bridge_port.ensure_gateway_addr = ensure_gateway_addr
if {no_vlans}:
    from cni_common import netlink
    real_ensure_bridge = netlink.ensure_bridge
    netlink.ensure_bridge = lambda conn, name, **kw: real_ensure_bridge(conn, name, **dict(kw, vlan_filtering=False))
    bridge_port._program_vlans = lambda *a, **k: None
from plugins.multicall import main
sys.exit(main(["bridge"]))
"""


def failing_bridge(cni_bin: Path, no_vlans: bool, works: bool = False) -> Path:
    name = f"bridge-{'works' if works else 'gw-fails'}{'-novlan' if no_vlans else ''}"
    return bp._script(cni_bin / name, LAUNCHER.format(python=sys.executable, repo=str(bp.REPO), no_vlans=no_vlans,
                                                      works=works))


def vlan_conf(tmp_path: Path) -> dict[str, Any]:
    return bp.conf(tmp_path, "1.1.0", isGateway=True, vlan=VLAN, ipMasq=False)


def host_links(host) -> list[str]:
    return sorted(link["ifname"] for link in ipj(host, "link", "show"))


def add(binary: Path, host, cfg: dict[str, Any], ctr, cid: str = "cnt-test-id"):
    return run_plugin(binary, "ADD", cfg, netns=ctr, in_netns=host, cni_path=binary.parent, container_id=cid)


def test_failed_first_add_removes_the_vlan_gateway_and_the_bridge_on_any_kernel(tmp_path, host, make_ctr, cni_bin):
    ctr = make_ctr()
    res = add(failing_bridge(cni_bin, no_vlans=True), host, vlan_conf(tmp_path), ctr)
    assert res.rc == 1 and "faked" in res.out["msg"], res
    assert host_links(host) == ["lo"]
    assert [link["ifname"] for link in ipj(ctr, "link", "show")] == ["lo"]
    assert leases(tmp_path) == []


def test_the_vlan_gateway_holds_the_address_and_its_peer_is_the_bridge_port(tmp_path, host, make_ctr, cni_bin):
    """The two ends of the ``<bridge>.<vlan>`` veth used to be swapped (the named end was made the port)."""
    res = add(failing_bridge(cni_bin, no_vlans=True, works=True), host, vlan_conf(tmp_path), make_ctr())
    assert res.rc == 0, res
    gateway = next(link for link in ipj(host, "-d", "addr", "show") if link["ifname"] == GATEWAY_LINK)
    assert "master" not in gateway and "10.88.0.1" in [a["local"] for a in gateway["addr_info"]]
    ports = [link["ifname"] for link in ipj(host, "link", "show", "master", "cntbr0")]
    assert GATEWAY_LINK not in ports and len(ports) == 2  # the container's veth and the gateway's peer


def test_failed_add_keeps_the_bridge_of_other_pods_but_removes_the_vlan_gateway_it_made(tmp_path, host, make_ctr,
                                                                                        cni_bin):
    """The bridge already has another pod (no VLAN here): only what this ADD made goes."""
    other_pod = bp.conf(tmp_path, "1.1.0", ipMasq=False)
    assert bp.bridge(cni_bin, host, "ADD", other_pod, make_ctr(), container_id="c1").rc == 0
    before = host_links(host)
    res = add(failing_bridge(cni_bin, no_vlans=True), host, vlan_conf(tmp_path), make_ctr(), cid="c2")
    assert res.rc == 1 and "faked" in res.out["msg"], res
    assert host_links(host) == before and "cntbr0" in before and GATEWAY_LINK not in before
