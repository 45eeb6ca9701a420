"""The bridge plugin's config: validation errors (code 7, upstream's messages), defaults, CNI_ARGS, and every
bridge conflist shipped in conf-examples/."""

from __future__ import annotations

import json

import pytest

from plugins.bridge import load_conf
from tests.helpers.paths import REPO


@pytest.mark.parametrize("extra, msg", [
    ({"hairpinMode": True, "promiscMode": True}, "cannot set hairpin mode and promiscuous mode at the same time"),
    ({"vlan": 5000}, "invalid VLAN ID 5000 (must be between 0 and 4094)"),
    ({"vlan": 5, "vlanTrunk": [{"id": 6}]}, "cannot set vlan and vlanTrunk at the same time"),
    ({"vlanTrunk": [{"minID": 0, "maxID": 5}]}, "incorrect trunk minID parameter"),
    ({"vlanTrunk": [{"minID": 9, "maxID": 5}]}, "minID is greater than maxID in trunk parameter"),
    ({"vlanTrunk": [{"id": 4095}]}, "incorrect trunk id parameter"),
    ({"disableContainerInterface": True, "ipam": {"type": "host-local"}},
     "cannot use IPAM when disableContainerInterface flag is set"),
    ({"mtu": "1400"}, "invalid config: mtu must be"),
])
def test_invalid_configs(extra, msg):
    with pytest.raises(Exception) as info:
        load_conf({"name": "n", "type": "bridge", **extra}, {})
    assert info.value.code == 7 and info.value.msg.startswith(msg)


def test_defaults_and_trunk_normalisation():
    c = load_conf({"name": "n", "isDefaultGateway": True, "vlanTrunk": [{"id": 7}, {"minID": 3, "maxID": 5},
                                                                        {"id": 4}]}, {})
    assert c.bridge == "cni0" and c.is_gateway and c.vlan_trunk == [3, 4, 5, 7] and c.vlan_filtering


def test_unknown_cni_args_are_ignored_with_or_without_ignore_unknown():
    for cni_args in ({"K8S_POD_NAME": "x", "IP": "10.0.0.5"}, {"FOO": "1", "IgnoreUnknown": "1"}):
        assert load_conf({"name": "n"}, {**cni_args, "MAC": "0A:58:00:00:00:09"}).mac == "0a:58:00:00:00:09"


@pytest.mark.parametrize("path", sorted((REPO / "conf-examples").glob("*bridge*")), ids=lambda p: p.name)
def test_conf_examples_load(path):
    plugins = json.loads(path.read_text())["plugins"]
    entry = next(p for p in plugins if p["type"] == "bridge")
    c = load_conf({"name": "x", **entry}, {})
    assert c.bridge == entry.get("bridge", "cni0")
