"""Configs with keys of the wrong JSON type (or absurd values) that the Go plugins (v1.1.1) refuse.

One table, two uses: tests/unit/test_config_verdicts.py checks that our plugins refuse each (in-process, code 6
or 7, the key named in the message), tests/netns/test_go_verdicts.py that the Go binaries refuse it too, so a
drop-in swap never turns a refused config into an accepted one or back. Deliberate differences are listed in
docs/protocol.md ("Verdicts on bad configs").
"""

from __future__ import annotations

import copy
from typing import Any, NamedTuple


class Case(NamedTuple):
    plugin: str
    label: str
    patch: dict[str, Any]      # merged into the base config; a dotted key reaches into objects ("ipam.type")
    key: str                   # what our message must name
    verbs: tuple[str, ...] = ("ADD", "DEL")  # where we refuse it (Go refuses it in both)
    go_knows: bool = True      # False: a key newer than the Go plugins v1.1.1, which ignore it (newer Go refuses)
    go_verbs: tuple[str, ...] = ("ADD", "DEL")  # where Go refuses it (static's and loopback's DEL read no config)


def base(plugin: str, data_dir: str = "/nonexistent-cnt") -> dict[str, Any]:
    """A valid config of ``plugin``; host-local's data dir is the caller's."""
    ipam = {"type": "host-local", "dataDir": data_dir, "ranges": [[{"subnet": "10.99.0.0/24"}]]}
    if plugin == "bridge":
        return {"cniVersion": "1.0.0", "name": "cntv", "type": "bridge", "bridge": "cntvbr0", "ipam": ipam}
    if plugin == "host-local":
        return {"cniVersion": "1.0.0", "name": "cntv", "type": "bridge", "ipam": ipam}
    if plugin == "portmap":
        return {"cniVersion": "1.0.0", "name": "cntv", "type": "portmap", "capabilities": {"portMappings": True},
                "runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}}
    if plugin == "loopback":
        return {"cniVersion": "1.0.0", "name": "cntv", "type": "loopback"}
    if plugin == "ptp":
        return {"cniVersion": "1.0.0", "name": "cntv", "type": "ptp",
                "ipam": {"type": "static", "addresses": [{"address": "10.99.0.5/24", "gateway": "10.99.0.1"}]}}
    if plugin == "static":
        return dict(base("ptp"))
    if plugin in LINK_PLUGINS:
        keys = {"macvlan": {"master": "cntvm0"}, "ipvlan": {"master": "cntvm0"},
                "vlan": {"master": "cntvm0", "vlanId": 5}}.get(plugin, {})
        return {"cniVersion": "1.0.0", "name": "cntv", "type": plugin, **keys, "ipam": ipam}
    if plugin == "host-device":
        return {"cniVersion": "1.0.0", "name": "cntv", "type": "host-device", "device": "cntvd0", "ipam": ipam}
    if plugin == "sbr":
        return {"cniVersion": "1.0.0", "name": "cntv", "type": "sbr", "prevResult": CHAINED_PREV}
    if plugin == "vrf":
        return {"cniVersion": "1.0.0", "name": "cntv", "type": "vrf", "vrfname": "cntvrf", "prevResult": CHAINED_PREV}
    if plugin == "dhcp":
        return {"cniVersion": "1.0.0", "name": "cntv", "type": "macvlan",
                "ipam": {"type": "dhcp", "daemonSocketPath": f"{data_dir}/dhcp.sock"}}
    raise ValueError(plugin)


#: The previous result a chained plugin (sbr, vrf) gets: one interface with one address.
CHAINED_PREV = {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "sandbox": "/nonexistent/cnt-netns"}],
                "ips": [{"address": "10.99.0.2/24", "gateway": "10.99.0.1", "interface": 0}]}

#: The plugins whose attachment is one link in the container (cni_common/links); Go v1.1.1 has the first three.
LINK_PLUGINS = ("macvlan", "ipvlan", "vlan", "dummy", "tap")


def apply(conf: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(conf)
    for dotted, value in patch.items():
        *path, last = dotted.split(".")
        node = out
        for part in path:
            node = node.setdefault(part, {})
        node[last] = value
    return out


CASES = [
    # bridge: types.NetConf and the bridge's own keys; Go decodes the whole config in every verb
    Case("bridge", "type-number", {"type": 5}, "type"),
    Case("bridge", "type-list", {"type": []}, "type"),
    Case("bridge", "ipam-type-number", {"ipam.type": 5}, "ipam.type"),
    Case("bridge", "capabilities-not-bool", {"capabilities": {"portMappings": "yes"}}, "capabilities"),
    Case("bridge", "dns-nameservers-string", {"dns": {"nameservers": "8.8.8.8"}}, "dns.nameservers"),
    Case("bridge", "dns-domain-number", {"dns": {"domain": 5}}, "dns.domain"),
    Case("bridge", "prevResult-number", {"prevResult": 5}, "prevResult"),
    Case("bridge", "runtimeConfig-list", {"runtimeConfig": []}, "runtimeConfig"),
    Case("bridge", "args-cni-number", {"args": {"cni": 5}}, "args.cni"),
    Case("bridge", "args-cni-mac-number", {"args": {"cni": {"mac": 5}}}, "mac"),
    Case("bridge", "bridge-number", {"bridge": 5}, "bridge"),
    Case("bridge", "isGateway-string", {"isGateway": "true"}, "isGateway"),
    Case("bridge", "hairpin-number", {"hairpinMode": 1}, "hairpinMode"),
    Case("bridge", "mtu-string", {"mtu": "1400"}, "mtu"),
    Case("bridge", "mtu-float", {"mtu": 1500.5}, "mtu"),
    Case("bridge", "mtu-absurd", {"mtu": 10 ** 30}, "mtu"),
    Case("bridge", "vlan-string", {"vlan": "5"}, "vlan"),
    Case("bridge", "vlanTrunk-object", {"vlanTrunk": {"id": 5}}, "vlanTrunk", go_knows=False),
    Case("bridge", "ipMasqBackend-number", {"ipMasqBackend": 5}, "ipMasqBackend", go_knows=False),
    # host-local: Go decodes ipam, args.cni and runtimeConfig in every verb; our DEL reads only what it uses
    Case("host-local", "ipam-type-number", {"ipam.type": 5}, "ipam type"),
    Case("host-local", "dataDir-number", {"ipam.dataDir": 5}, "dataDir"),
    Case("host-local", "dataDir-list", {"ipam.dataDir": ["/tmp"]}, "dataDir"),
    Case("host-local", "ranges-string", {"ipam.ranges": "10.0.0.0/24"}, "ranges", ("ADD",)),
    Case("host-local", "subnet-number", {"ipam.ranges": [[{"subnet": 5}]]}, "subnet", ("ADD",)),
    Case("host-local", "routes-object", {"ipam.routes": {"dst": "0.0.0.0/0"}}, "routes", ("ADD",)),
    Case("host-local", "resolvConf-number", {"ipam.resolvConf": 5}, "resolvConf", ("ADD",)),
    Case("host-local", "ipRanges-object", {"runtimeConfig": {"ipRanges": {}}}, "ipRanges", ("ADD",)),
    Case("host-local", "args-ips-string", {"args": {"cni": {"ips": "10.99.0.9"}}}, "ips", ("ADD",)),
    # portmap: Go decodes its whole config in every verb
    Case("portmap", "type-number", {"type": 5}, "type"),
    Case("portmap", "snat-string", {"snat": "yes"}, "snat"),
    Case("portmap", "masqAll-number", {"masqAll": 1}, "masqAll", go_knows=False),
    Case("portmap", "markMasqBit-string", {"markMasqBit": "13"}, "markMasqBit"),
    Case("portmap", "conditionsV4-string", {"conditionsV4": "-s 1.2.3.4"}, "conditionsV4"),
    Case("portmap", "portMappings-object", {"runtimeConfig": {"portMappings": {}}}, "portMappings"),
    Case("portmap", "hostPort-string",
         {"runtimeConfig": {"portMappings": [{"hostPort": "80", "containerPort": 80}]}}, "hostPort"),
    # loopback: Go decodes types.NetConf on ADD (and CHECK); its DEL reads no config, nor does ours
    Case("loopback", "type-number", {"type": 5}, "type", ("ADD",), go_verbs=("ADD",)),
    Case("loopback", "dns-domain-number", {"dns": {"domain": 5}}, "dns.domain", ("ADD",), go_verbs=("ADD",)),
    Case("loopback", "capabilities-not-bool", {"capabilities": {"x": 1}}, "capabilities", ("ADD",), go_verbs=("ADD",)),
    # ptp: Go decodes its whole config in every verb; runtimeConfig is its IPAM's (static decodes it on ADD)
    Case("ptp", "ipMasq-string", {"ipMasq": "true"}, "ipMasq"),
    Case("ptp", "mtu-string", {"mtu": "1400"}, "mtu"),
    Case("ptp", "mtu-absurd", {"mtu": 10 ** 30}, "mtu"),
    Case("ptp", "dns-nameservers-string", {"dns": {"nameservers": "8.8.8.8"}}, "dns.nameservers"),
    Case("ptp", "ipam-missing", {"ipam": None}, "ipam.type"),
    Case("ptp", "ipam-type-number", {"ipam.type": 5}, "ipam.type"),
    Case("ptp", "ipMasqBackend-number", {"ipMasqBackend": 5}, "ipMasqBackend", go_knows=False),
    Case("ptp", "ipMasqBackend-unknown", {"ipMasqBackend": "bogus"}, "ipMasqBackend", ("ADD",), go_knows=False),
    # static: Go decodes ipam, args.cni and runtimeConfig on ADD (and CHECK); its DEL reads nothing, nor does ours
    *(Case("static", label, patch, key, ("ADD",), go_verbs=("ADD",)) for label, patch, key in [
        ("ipam-missing", {"ipam": None}, "ipam"),
        ("address-without-prefix", {"ipam.addresses": [{"address": "10.99.0.5"}]}, "address"),
        ("address-number", {"ipam.addresses": [{"address": 5}]}, "address"),
        ("addresses-object", {"ipam.addresses": {}}, "addresses"),
        ("gateway-not-an-ip", {"ipam.addresses": [{"address": "10.99.0.5/24", "gateway": "bogus"}]}, "gateway"),
        ("routes-object", {"ipam.routes": {}}, "routes"),
        ("route-dst-not-a-cidr", {"ipam.routes": [{"dst": "bogus"}]}, "route"),
        ("dns-nameservers-string", {"ipam.dns": {"nameservers": "8.8.8.8"}}, "dns"),
        ("runtimeConfig-ips-without-prefix", {"runtimeConfig": {"ips": ["10.99.0.9"]}}, "ips"),
        ("runtimeConfig-ips-string", {"runtimeConfig": {"ips": "10.99.0.9/24"}}, "ips"),
        ("args-cni-ips-without-prefix", {"args": {"cni": {"ips": ["10.99.0.9"]}}}, "ips"),
        ("v0.2.0-two-addresses-of-a-family", {"cniVersion": "0.2.0", "ipam.addresses": [
            {"address": "10.99.0.5/24"}, {"address": "10.99.0.6/24"}]}, "address"),
    ]),
    # the link plugins: Go decodes the whole config in every verb
    Case("macvlan", "master-number", {"master": 5}, "master"),
    Case("macvlan", "mode-number", {"mode": 4}, "mode"),
    Case("macvlan", "mode-unknown", {"mode": "foo"}, "mode"),
    Case("macvlan", "mtu-string", {"mtu": "1400"}, "mtu"),
    Case("macvlan", "mac-number", {"mac": 5}, "mac"),
    Case("macvlan", "linkInContainer-string", {"linkInContainer": "yes"}, "linkInContainer", go_knows=False),
    Case("macvlan", "ipam-type-number", {"ipam.type": 5}, "ipam.type"),
    Case("ipvlan", "master-number", {"master": 5}, "master"),
    Case("ipvlan", "mtu-string", {"mtu": "1400"}, "mtu"),
    Case("ipvlan", "linkInContainer-string", {"linkInContainer": 1}, "linkInContainer", go_knows=False),
    Case("vlan", "master-number", {"master": 5}, "master"),
    Case("vlan", "master-missing", {"master": ""}, "master"),
    Case("vlan", "vlanId-string", {"vlanId": "5"}, "vlanId"),
    Case("vlan", "vlanId-too-big", {"vlanId": 5000}, "VLAN ID"),
    Case("vlan", "mtu-string", {"mtu": "1400"}, "mtu"),
    Case("vlan", "ipam-missing", {"ipam": {}}, "ipam"),
    Case("dummy", "ipam-missing", {"ipam": {}}, "IPAM"),
    Case("dummy", "ipam-type-number", {"ipam.type": 5}, "ipam.type"),
    Case("tap", "multiQueue-string", {"multiQueue": "true"}, "multiQueue"),
    Case("tap", "owner-string", {"owner": "root"}, "owner"),
    Case("tap", "owner-negative", {"owner": -1}, "owner"),
    Case("tap", "group-float", {"group": 1.5}, "group"),
    Case("tap", "mtu-string", {"mtu": "1400"}, "mtu"),
    Case("tap", "bridge-number", {"bridge": 5}, "bridge"),
    Case("tap", "selinuxContext-number", {"selinuxContext": 5}, "selinuxContext"),
    # host-device: which device is looked up by ADD (and CHECK) only, so a DEL never fails on a gone device
    Case("host-device", "device-number", {"device": 5}, "device"),
    Case("host-device", "hwaddr-number", {"hwaddr": 5}, "hwaddr"),
    Case("host-device", "kernelpath-number", {"kernelpath": 5}, "kernelpath"),
    Case("host-device", "pciBusID-number", {"pciBusID": 5}, "pciBusID"),
    Case("host-device", "deviceID-number", {"runtimeConfig": {"deviceID": 5}}, "deviceID"),
    Case("host-device", "none-given", {"device": ""}, '"device", "hwaddr", "kernelpath" or "pciBusID"',
         verbs=("ADD",)),
    Case("host-device", "kernelpath-relative", {"device": "", "kernelpath": "devices/x"}, "/sys/devices/",
         verbs=("ADD",)),
    Case("host-device", "ipam-type-number", {"ipam.type": 5}, "ipam.type"),
    Case("host-device", "dataDir-number", {"dataDir": 5}, "dataDir", go_knows=False),
    # sbr (v1.1.1 has no "table": newer Go refuses a string)
    Case("sbr", "table-string", {"table": "100"}, "table", go_knows=False),
    Case("sbr", "table-main", {"table": 254}, "table", go_knows=False),
    # vrf
    Case("vrf", "vrfname-number", {"vrfname": 5}, "vrfname"),
    Case("vrf", "vrfname-missing", {"vrfname": ""}, "vrf name"),
    Case("vrf", "table-string", {"table": "5"}, "table"),
    Case("vrf", "table-negative", {"table": -1}, "table"),
    # dhcp: Go's plugin decodes ipam.daemonSocketPath in every verb (the rest is the daemon's)
    Case("dhcp", "daemonSocketPath-number", {"ipam.daemonSocketPath": 5}, "daemonSocketPath"),
    Case("dhcp", "daemonSocketPath-list", {"ipam.daemonSocketPath": ["/run/x"]}, "daemonSocketPath"),
]
