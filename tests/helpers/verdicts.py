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
    if plugin == "dhcp":
        return {"cniVersion": "1.0.0", "name": "cntv", "type": "macvlan",
                "ipam": {"type": "dhcp", "daemonSocketPath": f"{data_dir}/dhcp.sock"}}
    raise ValueError(plugin)


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
    # dhcp: Go's plugin decodes ipam.daemonSocketPath in every verb (the rest is the daemon's)
    Case("dhcp", "daemonSocketPath-number", {"ipam.daemonSocketPath": 5}, "daemonSocketPath"),
    Case("dhcp", "daemonSocketPath-list", {"ipam.daemonSocketPath": ["/run/x"]}, "daemonSocketPath"),
]
