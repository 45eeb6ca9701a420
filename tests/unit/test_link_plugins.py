"""Config handling of the link plugins (macvlan, ipvlan, vlan, dummy, tap), in-process, stopped at the kernel."""

from __future__ import annotations

import pytest

from cni_common.errors import CNIError
from cni_common.links import master
from cni_common.types import Interface, Result
from plugins import ipvlan, macvlan, tap
from tests.helpers import inprocess
from tests.helpers.verdicts import LINK_PLUGINS, apply, base

pytestmark = pytest.mark.usefixtures("no_kernel")


@pytest.mark.parametrize("plugin", LINK_PLUGINS)
@pytest.mark.parametrize("verb", ["ADD", "DEL"])
def test_base_configs_reach_the_kernel(plugin, verb, tmp_path):
    result = inprocess.call(plugin, verb, base(plugin, str(tmp_path)), {"CNI_PATH": "/usr/lib/cni"})
    assert result.reached_kernel, result.out


def test_ipvlan_unknown_mode_refused_by_add_not_by_del(tmp_path):
    conf = apply(base("ipvlan", str(tmp_path)), {"mode": "l4"})
    add = inprocess.call("ipvlan", "ADD", conf, {"CNI_PATH": "/usr/lib/cni"})
    assert add.rc == 1 and add.out["code"] == 7 and add.out["msg"] == 'unknown ipvlan mode: "l4"'
    assert inprocess.call("ipvlan", "DEL", conf, {"CNI_PATH": "/usr/lib/cni"}).reached_kernel


def test_ipvlan_without_ipam_needs_a_prev_result_with_ips(tmp_path):
    conf = apply(base("ipvlan", str(tmp_path)), {"ipam": {}})
    add = inprocess.call("ipvlan", "ADD", conf, {"CNI_PATH": "/usr/lib/cni"})
    assert add.rc == 1 and add.out["code"] == 7 and "no plugin name provided" in add.out["msg"]


def test_macvlan_mac_precedence():
    conf = {"name": "n", "type": "macvlan", "mac": "02:00:00:00:00:01"}
    assert macvlan.load_conf(conf, {}).mac == "02:00:00:00:00:01"
    assert macvlan.load_conf(conf, {"MAC": "02:00:00:00:00:02"}).mac == "02:00:00:00:00:02"
    with_rc = dict(conf, runtimeConfig={"mac": "02:00:00:00:00:03"})
    assert macvlan.load_conf(with_rc, {"MAC": "02:00:00:00:00:02"}).mac == "02:00:00:00:00:03"
    assert macvlan.load_conf(conf).mode == "bridge"


def test_tap_owner_and_group_are_optional_uint32():
    assert tap.load_conf({"name": "n", "type": "tap"}).owner is None
    assert tap.load_conf({"name": "n", "type": "tap", "owner": 0, "group": 2 ** 32 - 1}).group == 2 ** 32 - 1
    with pytest.raises(CNIError, match="owner"):
        tap.load_conf({"name": "n", "type": "tap", "owner": 2 ** 32})


def test_chained_master_is_the_prev_results_one_interface():
    assert master.chained_master(Result(interfaces=[Interface("net0")])) == "net0"
    for prev in (None, Result(), Result(interfaces=[Interface("a"), Interface("b")])):
        with pytest.raises(CNIError, match="PrevResult lacks a single named interface"):
            master.chained_master(prev)
    assert ipvlan.load_conf({"name": "n", "type": "ipvlan"}).prev is None
