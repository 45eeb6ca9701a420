"""The network configs the bench runs, identical for ours and Go except the IPAM dataDir (one per side).

cniVersion 1.0.0: the newest both the Go plugins v1.1.1 and libcni 1.1.2 speak.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CNI_VERSION = "1.0.0"
CHAIN_NET = "cntb-chain"
PAIR_NET = "cntb-pair"
TUNING_FIREWALL_NET = "cntb-tunfw"
BANDWIDTH_NET = "cntb-bw"
PTP_NET = "cntb-ptp"
LOOPBACK_NET = "cntb-lo"
STATIC_NET = "cntb-static"
#: The one port mapping of the chain case, passed as libcni capability args (as CRI does).
CHAIN_PORT = {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}


def chain_conflist(data_dir: Path) -> dict[str, Any]:
    """bridge + host-local + portmap: dual-stack, ipMasq, portmap with SNAT (issue 5's chain)."""
    return {
        "cniVersion": CNI_VERSION,
        "name": CHAIN_NET,
        "plugins": [
            {"type": "bridge", "bridge": "cntb0", "isGateway": True, "ipMasq": True,
             "ipam": {"type": "host-local", "dataDir": str(data_dir),
                      "ranges": [[{"subnet": "10.99.0.0/16"}], [{"subnet": "fd99::/64"}]],
                      "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]}},
            {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True},
        ],
    }


def pair_conflist(data_dir: Path) -> dict[str, Any]:
    """bridge + host-local alone: IPv4, gateway, no masquerade (issue 3's pair; netlink work only)."""
    return {
        "cniVersion": CNI_VERSION,
        "name": PAIR_NET,
        "plugins": [
            {"type": "bridge", "bridge": "cntb1", "isGateway": True,
             "ipam": {"type": "host-local", "dataDir": str(data_dir),
                      "ranges": [[{"subnet": "10.98.0.0/16"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
        ],
    }


def tuning_firewall_conflist(data_dir: Path) -> dict[str, Any]:
    """The pair (on a bridge and subnet of its own), then firewall (iptables) and tuning (a sysctl, MTU, MAC):
    the chained plugins podman's conflists name. Its rows minus the pair's are what the two chained plugins cost."""
    conf = pair_conflist(data_dir)
    bridge = conf["plugins"][0]
    bridge["bridge"], bridge["ipam"]["ranges"] = "cntb2", [[{"subnet": "10.97.0.0/16"}]]
    conf["name"] = TUNING_FIREWALL_NET
    conf["plugins"] += [
        {"type": "firewall", "backend": "iptables"},
        {"type": "tuning", "dataDir": str(data_dir / "tuning"), "mtu": 1400, "mac": "0a:58:0a:61:00:99",
         "sysctl": {"net.ipv4.conf.IFNAME.arp_filter": "1"}},
    ]
    return conf


def bandwidth_conflist(data_dir: Path) -> dict[str, Any]:
    """bridge + host-local + bandwidth shaping both directions: tbf on the host veth, ifb + redirect + tbf."""
    return {
        "cniVersion": CNI_VERSION,
        "name": BANDWIDTH_NET,
        "plugins": [
            {"type": "bridge", "bridge": "cntb3", "isGateway": True,
             "ipam": {"type": "host-local", "dataDir": str(data_dir),
                      "ranges": [[{"subnet": "10.95.0.0/16"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
            {"type": "bandwidth", "ingressRate": 10_000_000, "ingressBurst": 1_000_000,
             "egressRate": 10_000_000, "egressBurst": 1_000_000},
        ],
    }


MACVLAN_NET = "cntb-macvlan"
#: The macvlan case's master: a veth made in each side's host namespace (its peer up beside it).
MACVLAN_MASTER = "cntbm0"


def macvlan_conflist(data_dir: Path) -> dict[str, Any]:
    """macvlan + host-local: one child of a node link per pod (netlink work in the pod's namespace only)."""
    return {
        "cniVersion": CNI_VERSION,
        "name": MACVLAN_NET,
        "plugins": [
            {"type": "macvlan", "master": MACVLAN_MASTER, "mode": "bridge",
             "ipam": {"type": "host-local", "dataDir": str(data_dir), "ranges": [[{"subnet": "10.93.0.0/16"}]]}},
        ],
    }


def ptp_conflist(data_dir: Path) -> dict[str, Any]:
    """ptp + host-local: dual-stack, ipMasq (a veth pair, host routes, the gateway on the host end)."""
    return {
        "cniVersion": CNI_VERSION,
        "name": PTP_NET,
        "plugins": [
            {"type": "ptp", "ipMasq": True,
             "ipam": {"type": "host-local", "dataDir": str(data_dir),
                      "ranges": [[{"subnet": "10.94.0.0/16"}], [{"subnet": "fd94::/64"}]],
                      "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]}},
        ],
    }


HOSTDEV_NET = "cntb-hostdev"
#: The host-device case's device: a veth end made in each side's host namespace, lent and given back per cycle.
HOSTDEV_DEVICE = "cntbd0"


def hostdev_conflist(data_dir: Path) -> dict[str, Any]:
    """host-device + host-local: a node device moved into the pod and back (two namespace moves per verb)."""
    return {
        "cniVersion": CNI_VERSION,
        "name": HOSTDEV_NET,
        "plugins": [
            {"type": "host-device", "device": HOSTDEV_DEVICE, "dataDir": str(data_dir / "host-device"),
             "ipam": {"type": "host-local", "dataDir": str(data_dir), "ranges": [[{"subnet": "10.92.0.0/16"}]]}},
        ],
    }


def loopback_conflist(_data_dir: Path) -> dict[str, Any]:
    """loopback alone: what containerd's CRI runs for every pod's lo."""
    return {"cniVersion": CNI_VERSION, "name": LOOPBACK_NET, "plugins": [{"type": "loopback"}]}


def static_conflist(_data_dir: Path) -> dict[str, Any]:
    """static as the network's only plugin (libcni runs an IPAM plugin as any other): its config in, the result
    out, nothing in the kernel."""
    return {"cniVersion": CNI_VERSION, "name": STATIC_NET, "plugins": [
        {"type": "static", "ipam": {"type": "static",
                                    "addresses": [{"address": "10.96.0.5/24", "gateway": "10.96.0.1"},
                                                  {"address": "fd96::5/64", "gateway": "fd96::1"}],
                                    "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}],
                                    "dns": {"nameservers": ["10.96.0.53"]}}}]}


SBR_NET = "cntb-sbr"


def sbr_conflist(data_dir: Path) -> dict[str, Any]:
    """The pair (bridge + host-local) with sbr chained: a table and a source rule per pod address."""
    conf = pair_conflist(data_dir)
    conf["name"] = SBR_NET
    conf["plugins"][0]["bridge"] = "cntb4"
    conf["plugins"].append({"type": "sbr"})
    return conf


TAP_NET = "cntb-tap"


def tap_conflist(data_dir: Path) -> dict[str, Any]:
    """tap + host-local: a tap device made in the pod's namespace (no carrier: no VM reads it), an address on it.
    Go v1.1.1 has no tap plugin: the bench runs ours alone."""
    return {
        "cniVersion": CNI_VERSION,
        "name": TAP_NET,
        "plugins": [
            {"type": "tap", "mtu": 1400,
             "ipam": {"type": "host-local", "dataDir": str(data_dir), "ranges": [[{"subnet": "10.91.0.0/16"}]]}},
        ],
    }


def port_mappings(*mappings: dict[str, Any]) -> dict[str, Any]:
    """libcni capability args carrying `mappings` (CAP_ARGS of the driver)."""
    return {"portMappings": list(mappings)}


def burst_port(index: int) -> dict[str, Any]:
    """Pod `index` of a burst gets a host port of its own, so every pod has its own DNAT rules."""
    return {"hostPort": 31000 + index, "containerPort": 80, "protocol": "tcp"}
