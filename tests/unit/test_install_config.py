"""The installer's config template: substitution, node subnets, validation by the plugins' own parsers."""

from __future__ import annotations

import copy

import pytest

from plugins.install_config import ConfigRefused, node_subnet, render, validate

BRIDGE = {
    "cniVersion": "1.0.0", "name": "pods",
    "plugins": [
        {"type": "bridge", "bridge": "cni0", "isGateway": True,
         "ipam": {"type": "host-local", "ranges": [[{"subnet": "${POD_CIDR}"}]]}},
        {"type": "portmap", "capabilities": {"portMappings": True}},
    ],
}
VXLAN = {
    "cniVersion": "1.1.0", "name": "pods",
    "plugins": [{"type": "vxlan", "network": "10.244.0.0/16", "nodeName": "${NODE_NAME}",
                 "store": {"etcd": {"endpoints": ["https://10.0.0.10:2379"]}}},
                {"type": "portmap", "capabilities": {"portMappings": True}}],
}


def test_render_replaces_variables_in_string_values_only():
    out = render(BRIDGE, {"POD_CIDR": "10.244.3.0/24"})
    assert out["plugins"][0]["ipam"]["ranges"] == [[{"subnet": "10.244.3.0/24"}]]
    assert out["plugins"][0]["isGateway"] is True
    assert BRIDGE["plugins"][0]["ipam"]["ranges"][0][0]["subnet"] == "${POD_CIDR}"  # the template is unchanged
    assert render({"a": "$HOME ${X}-$"}, {"X": "1"}) == {"a": "$HOME 1-$"}  # only ${NAME} is special


def test_render_refuses_an_unset_variable_naming_the_key():
    with pytest.raises(ConfigRefused, match=r"plugins\[0\]\.ipam\.ranges\[0\]\[0\]\.subnet: \$\{POD_CIDR\}"):
        render(BRIDGE, {})


def test_value_with_quotes_cannot_break_the_json():
    out = render({"nodeName": "${NODE_NAME}"}, {"NODE_NAME": 'a", "x": "y'})
    assert out == {"nodeName": 'a", "x": "y'}


def test_node_subnet_lines():
    text = "# node  subnet\nnode-a 10.244.1.0/24\n\nnode-b 10.244.2.0/24  # second\n"
    assert node_subnet(text, "node-b") == "10.244.2.0/24"
    with pytest.raises(ConfigRefused, match="no line for node 'node-c'"):
        node_subnet(text, "node-c")
    with pytest.raises(ConfigRefused, match="line 1"):
        node_subnet("node-a", "node-a")


def test_valid_lists_return_the_types_they_need():
    assert validate(render(BRIDGE, {"POD_CIDR": "10.244.3.0/24"})) == ["bridge", "host-local", "portmap"]
    assert validate(render(VXLAN, {"NODE_NAME": "n1"})) == ["vxlan", "host-local", "portmap"]


@pytest.mark.parametrize("path, value, message", [
    (("cniVersion",), "9.9.9", "cniVersion: '9.9.9'"),
    (("name",), "", "name:"),
    (("plugins",), [], "plugins:"),
    (("plugins", 0, "vlan"), 5000, r"plugins\[0\] \(bridge\): invalid VLAN ID 5000"),
    (("plugins", 0, "mtu"), "1500", r"plugins\[0\] \(bridge\): invalid config: mtu must be an integer"),
    (("plugins", 0, "ipam", "ranges"), [[{"subnet": "10.1.0.0/33"}]], r"plugins\[0\] \(bridge\): .*10\.1\.0\.0/33"),
    (("plugins", 0, "ipam", "ranges"), [], r"plugins\[0\] \(bridge\): no IP ranges specified"),
    (("plugins", 1, "markMasqBit"), 40, r"plugins\[1\] \(portmap\): MasqMarkBit must be between 0 and 31"),
    (("plugins", 1, "type"), "", r"plugins\[1\]\.type"),
])
def test_bad_bridge_configs_are_refused_naming_the_key(path, value, message):
    conf = render(BRIDGE, {"POD_CIDR": "10.244.3.0/24"})
    target = conf
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(ConfigRefused, match=message):
        validate(conf)


def test_runtime_supplied_ranges_are_accepted_with_the_ip_ranges_capability():
    conf = render(BRIDGE, {"POD_CIDR": "x"})
    conf["plugins"][0]["ipam"]["ranges"] = []
    conf["plugins"][0]["capabilities"] = {"ipRanges": True}
    assert validate(conf)[0] == "bridge"


@pytest.mark.parametrize("key, value, message", [
    ("network", "10.244.0.1/16", "network"),
    ("vni", 0, "vni must be in"),
    ("store", {"etcd": {"endpoints": ["https://10.0.0.10:2379"], "leaseTTL": 1}}, "leaseTTL"),
])
def test_bad_vxlan_configs_are_refused(key, value, message):
    conf = copy.deepcopy(render(VXLAN, {"NODE_NAME": "n1"}))
    conf["plugins"][0][key] = value
    with pytest.raises(ConfigRefused, match=rf"plugins\[0\] \(vxlan\): .*{message}"):
        validate(conf)


def test_foreign_plugin_types_are_not_parsed_but_listed():
    conf = render(BRIDGE, {"POD_CIDR": "10.244.3.0/24"})
    conf["plugins"].append({"type": "tuning", "sysctl": {"net.core.somaxconn": "500"}})
    assert validate(conf)[-1] == "tuning"



def test_a_list_variable_repeats_the_outermost_list_element_inside_a_plugin():
    template = {"cniVersion": "1.0.0", "name": "pods", "plugins": [
        {"type": "bridge", "ipam": {"type": "host-local", "ranges": [[{"subnet": "${POD_CIDRS}"}]],
                                    "routes": [{"dst": "${POD_DEFAULT_ROUTES}"}, {"dst": "10.0.0.0/8"}]}}]}
    single = render(template, {"POD_CIDRS": "10.244.1.0/24", "POD_DEFAULT_ROUTES": "0.0.0.0/0"})
    assert len(single["plugins"]) == 1  # the plugins list itself is never repeated
    assert single["plugins"][0]["ipam"]["ranges"] == [[{"subnet": "10.244.1.0/24"}]]
    dual = render(template, {"POD_CIDRS": "10.244.1.0/24,fd00::/64", "POD_DEFAULT_ROUTES": "0.0.0.0/0,::/0"})
    assert dual["plugins"][0]["ipam"]["ranges"] == [[{"subnet": "10.244.1.0/24"}], [{"subnet": "fd00::/64"}]]
    assert dual["plugins"][0]["ipam"]["routes"] == [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}, {"dst": "10.0.0.0/8"}]
    with pytest.raises(ConfigRefused, match=r"ranges\[0\]\[0\]\.subnet: \$\{POD_CIDRS\} is used but"):
        render(template, {"POD_DEFAULT_ROUTES": "0.0.0.0/0"})
    with pytest.raises(ConfigRefused, match=r"x\[0\]: uses both"):
        render({"x": [{"a": "${POD_CIDRS}", "b": "${POD_DEFAULT_ROUTES}"}]},
               {"POD_CIDRS": "a", "POD_DEFAULT_ROUTES": "b"})
