"""Keys of the wrong JSON type are refused as the Go plugins refuse them (issue 12, defect 3), with code 7 (or
6 for what the skel decodes) and a message naming the key; nothing reaches the kernel or the data dir.

tests/netns/test_go_verdicts.py runs the same table against the Go binaries.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import inprocess
from tests.helpers.verdicts import CASES, apply, base

pytestmark = pytest.mark.usefixtures("no_kernel")


@pytest.mark.parametrize("case", CASES, ids=[f"{c.plugin}-{c.label}" for c in CASES])
def test_wrong_types_are_refused_naming_the_key(case, tmp_path: Path):
    conf = apply(base(case.plugin, str(tmp_path / "data")), case.patch)
    for verb in case.verbs:
        result = inprocess.call(case.plugin, verb, conf, {"CNI_PATH": "/usr/lib/cni"})
        assert result.rc == 1 and not result.reached_kernel, (verb, result.out)
        assert result.out["code"] in (6, 7), (verb, result.out)
        assert case.key in result.out["msg"], (verb, result.out["msg"])
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists() or not os.listdir(tmp_path / "data" / "cntv")


def test_the_base_configs_are_valid(tmp_path: Path):
    """The table means something only if the configs it patches pass validation."""
    for plugin in ("bridge", "portmap"):
        assert inprocess.call(plugin, "ADD", dict(base(plugin), prevResult={"cniVersion": "1.0.0"}),
                              {"CNI_PATH": "/usr/lib/cni"}).reached_kernel or plugin == "portmap"
    result = inprocess.call("host-local", "ADD", base("host-local", str(tmp_path)))
    assert result.rc == 0, result.out


@pytest.mark.parametrize("verb", ["ADD", "DEL"])
def test_absurd_mtu_is_a_config_error_not_a_crash(verb):
    """Defect 1: a huge mtu crashed in the netlink encoder (code 999 with a traceback in the log)."""
    result = inprocess.call("bridge", verb, dict(base("bridge"), mtu=10 ** 6), {"CNI_PATH": "/usr/lib/cni"})
    assert result.rc == 1 and result.out["code"] == 7 and "mtu" in result.out["msg"]


def test_missing_cni_path_is_the_environments_fault_before_any_change():
    """Defect 2: code 4 (Go's), found before the bridge is created (DEL: tests/netns/test_go_verdicts.py)."""
    result = inprocess.call("bridge", "ADD", base("bridge"), {"CNI_PATH": None})
    assert result.rc == 1 and result.out["code"] == 4 and "CNI_PATH" in result.out["msg"], result.out


def test_unknown_ipam_type_is_found_before_any_change():
    result = inprocess.call("bridge", "ADD", apply(base("bridge"), {"ipam.type": "cnt-no-such-ipam"}),
                            {"CNI_PATH": "/usr/lib/cni"})
    assert result.rc == 1 and result.out["code"] == 104 and "cnt-no-such-ipam" in result.out["msg"]
    assert not result.reached_kernel


def test_vxlan_finds_its_ipam_before_any_change():
    conf = {"cniVersion": "1.1.0", "name": "cntv", "type": "vxlan", "network": "10.98.0.0/16", "peers": []}
    result = inprocess.call("vxlan", "ADD", conf, {"CNI_PATH": None})
    assert result.rc == 1 and result.out["code"] == 4 and "CNI_PATH" in result.out["msg"], result.out
    result = inprocess.call("vxlan", "ADD", dict(conf, ipam={"type": "cnt-no-such-ipam"}), {"CNI_PATH": "/usr/lib/cni"})
    assert result.rc == 1 and result.out["code"] == 104 and not result.reached_kernel, result.out
