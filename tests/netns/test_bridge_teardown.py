"""Issue 12, defects 6 and 7: a failed first ADD removes the bridge it created (and only that), and DEL finds
the container's addresses from every source it has (the interface, ``prevResult``, the IPAM's records), so
that a removed or replaced address, an empty ``CNI_NETNS`` or a missing cache entry leaks no rule and no lease.

The plugins run from the sources (tests/netns/test_bridge_plugin.py's ``cni_bin``) inside a "host" namespace.
"""

from __future__ import annotations

import shutil
import sys

import pytest

from tests.helpers.plugin import run_plugin
from tests.netns import test_bridge_plugin as bp

bridge, conf, ipj, leases, masq_rules = bp.bridge, bp.conf, bp.ipj, bp.leases, bp.masq_rules
host, make_ctr, cni_bin = bp.host, bp.make_ctr, bp.cni_bin  # fixtures shared with test_bridge_plugin


def host_links(host) -> list[str]:
    return [link["ifname"] for link in ipj(host, "link", "show")]


@pytest.mark.parametrize("how", ["bad-ipam-config", "cni-args-ip-outside-the-range", "unknown-ipam-type"])
def test_a_failed_first_add_removes_the_bridge_it_created(how, tmp_path, host, make_ctr, cni_bin):
    cfg, cni_args = conf(tmp_path, "1.1.0"), ""
    if how == "bad-ipam-config":
        cfg["ipam"]["ranges"] = [[{"subnet": "10.88.0.0/24", "rangeStart": "10.99.0.9"}]]
    elif how == "cni-args-ip-outside-the-range":
        cni_args = "IP=10.77.0.5"
    else:
        cfg["ipam"]["type"] = "cnt-no-such-ipam"
    ctr = make_ctr()
    add = bridge(cni_bin, host, "ADD", cfg, ctr, cni_args=cni_args)
    assert add.rc == 1 and add.out["code"] != 999, add
    assert host_links(host) == ["lo"]
    assert [link["ifname"] for link in ipj(ctr, "link", "show")] == ["lo"]
    assert leases(tmp_path) == [] and masq_rules(host) == []


def test_a_failure_inside_the_bridge_setup_removes_the_bridge_it_created(tmp_path, host, make_ctr, cni_bin):
    """The kernel made the bridge, then setting it up failed (faked in the plugin's process: its IPv6 settings,
    the last step of the bridge's setup, since the kernel creates it up): the bridge goes too, not only what was
    made after it."""
    failing = bp._script(cni_bin / "bridge-up-fails", f"""#!{sys.executable}
import sys
sys.path.insert(0, {str(bp.REPO)!r})
from cni_common import sysctl
from cni_common.errors import CNIError, PluginCode

def write_best_effort(value, *parts):
    if parts == ("ipv6", "conf", "cntbr0", "accept_ra"):
        raise CNIError(PluginCode.LINK_FAILURE, "cannot set up the bridge (faked)")

sysctl.write_best_effort = write_best_effort
from plugins.bridge import main
sys.exit(main())
""")
    ctr = make_ctr()
    add = run_plugin(failing, "ADD", conf(tmp_path, "1.1.0"), netns=ctr, in_netns=host, cni_path=cni_bin)
    assert add.rc == 1 and "faked" in add.out["msg"], add
    assert host_links(host) == ["lo"]
    assert leases(tmp_path) == []


def test_a_failed_add_keeps_the_bridge_another_pod_uses(tmp_path, host, make_ctr, cni_bin):
    cfg = conf(tmp_path, "1.1.0")
    assert bridge(cni_bin, host, "ADD", cfg, make_ctr(), container_id="cid1").rc == 0
    add = bridge(cni_bin, host, "ADD", cfg, make_ctr(), container_id="cid2", cni_args="IP=10.77.0.5")
    assert add.rc == 1
    assert "cntbr0" in host_links(host) and len(leases(tmp_path)) == 2  # cid1's two addresses


def _replace_address(ctr) -> None:
    """The container's IPv4 address removed from its interface and another one put there (by a workload
    with NET_ADMIN, or an operator)."""
    ctr.ip("addr", "del", "10.88.0.2/24", "dev", "eth0")
    ctr.ip("addr", "add", "10.88.0.200/24", "dev", "eth0")


@pytest.mark.parametrize("with_prev_result", [True, False], ids=["prevResult", "no-cache-entry"])
def test_del_after_the_address_was_replaced_leaks_nothing(with_prev_result, tmp_path, host, make_ctr, cni_bin):
    cfg = conf(tmp_path, "1.1.0")
    ctr = make_ctr()
    add = bridge(cni_bin, host, "ADD", cfg, ctr)
    assert add.rc == 0 and len(masq_rules(host)) == 3, add  # IPv4: a chain, its 2 rules, the jump
    _replace_address(ctr)
    dele = bridge(cni_bin, host, "DEL", {**cfg, "prevResult": add.out} if with_prev_result else cfg, ctr)
    assert dele.rc == 0, dele
    assert masq_rules(host) == [] and leases(tmp_path) == []


def test_del_with_empty_netns_and_lost_ipam_records_uses_prev_result(tmp_path, host, make_ctr, cni_bin):
    cfg = conf(tmp_path, "1.1.0")
    ctr = make_ctr()
    add = bridge(cni_bin, host, "ADD", cfg, ctr)
    assert add.rc == 0, add
    _replace_address(ctr)
    shutil.rmtree(tmp_path / "ipam")  # the IPAM's records are gone (a wiped /var/lib/cni)
    assert bridge(cni_bin, host, "DEL", {**cfg, "prevResult": add.out}, "").rc == 0
    assert masq_rules(host) == []
