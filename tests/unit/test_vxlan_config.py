"""Parsing and validation of the vxlan plugin config: defaults, and code 7 naming the key."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest

from cni_common.errors import CNIError, ErrorCode
from cni_common.overlay.attach import bridge_conf, ipam_args, ipam_conf
from cni_common.overlay.config import load_file, parse
from cni_common.overlay.vtep import vtep_mac

BASE = {"cniVersion": "1.0.0", "name": "pods", "type": "vxlan", "network": "10.244.0.0/16"}


def _conf(**extra: Any) -> dict[str, Any]:
    return {**BASE, **extra}


def test_defaults() -> None:
    c = parse(_conf(nodeName="n1"))
    assert (c.vni, c.port, c.subnet_len, c.mtu, c.bridge, c.device) == (1, 4789, 24, 0, "cnivxbr1", "cnivx.1")
    assert c.etcd is None and c.peers == () and c.node_name == "n1"
    assert parse({**BASE, "network": "fd00:244::/48"}).subnet_len == 64


def test_store_defaults_and_peer_mac_derivation() -> None:
    c = parse(_conf(store={"etcd": {"endpoints": ["http://10.0.0.1:2379"]}},
                    peers=[{"underlayIP": "192.0.2.2", "subnet": "10.244.2.0/24"},
                           {"underlayIP": "192.0.2.3", "subnet": "10.244.3.0/24", "vtepMAC": "02:AA:00:00:00:03"}]))
    assert c.etcd is not None and c.etcd.prefix == "/cni-vxlan/pods" and c.etcd.lease_ttl == 60
    assert c.peers[0].vtep_mac == vtep_mac(1, "192.0.2.2") and c.peers[1].vtep_mac == "02:aa:00:00:00:03"


@pytest.mark.parametrize("extra, key", [
    ({"network": None}, "network"),
    ({"network": "10.244.0.1/16"}, "network"),
    ({"network": 5}, "network"),
    ({"vni": 1 << 24}, "vni"),
    ({"port": 0}, "port"),
    ({"subnetLen": 31}, "subnetLen"),
    ({"subnetLen": 16}, "subnetLen"),
    ({"nodeSubnet": "10.245.1.0/24"}, "nodeSubnet"),
    ({"nodeSubnet": "10.244.1.0/25"}, "nodeSubnet"),
    ({"mtu": 100}, "mtu"),
    ({"underlayIP": "nope"}, "underlayIP"),
    ({"underlayInterface": "a" * 16}, "underlayInterface"),
    ({"bridge": "has space"}, "bridge"),
    ({"peers": [{"underlayIP": "192.0.2.1", "subnet": "10.9.0.0/24"}]}, "peers[0].subnet"),
    ({"peers": [{"underlayIP": "192.0.2.1", "subnet": "10.244.1.0/24", "vtepMAC": "ff:ff:ff:ff:ff:ff"}]},
     "peers[0].vtepMAC"),
    ({"peers": ["x"]}, "peers[0]"),
    ({"store": {"consul": {}}}, "store"),
    ({"store": {"etcd": {"endpoints": []}}}, "store.etcd.endpoints"),
    ({"store": {"etcd": {"endpoints": ["10.0.0.1:2379"]}}}, "10.0.0.1:2379"),
    ({"store": {"etcd": {"endpoints": ["http://e:1"], "leaseTTL": 1}}}, "store.etcd.leaseTTL"),
    ({"store": {"etcd": {"endpoints": ["http://e:1"], "prefix": "x"}}}, "store.etcd.prefix"),
])
def test_invalid_config_names_the_key(extra: dict[str, Any], key: str) -> None:
    conf = {k: v for k, v in _conf(**extra).items() if v is not None}
    with pytest.raises(CNIError) as err:
        parse(conf)
    assert err.value.code == ErrorCode.INVALID_CONFIG
    assert key in err.value.msg, err.value.msg


def test_default_ipam_is_host_local_over_the_node_subnet() -> None:
    c = parse(_conf())
    subnet = ipaddress.ip_network("10.244.3.0/24")
    assert ipam_conf(c, subnet) == {"type": "host-local", "ranges": [[{"subnet": "10.244.3.0/24"}]],
                                    "routes": [{"dst": "10.244.0.0/16"}]}
    assert ipam_conf(c, None)["ranges"] == [[{"subnet": "10.244.0.0/16"}]]  # DEL/GC: no store needed
    user = parse(_conf(ipam={"type": "host-local", "dataDir": "/d", "routes": [{"dst": "10.244.0.0/16"}]}))
    assert ipam_conf(user, subnet) == {"type": "host-local", "dataDir": "/d", "ranges": [[{"subnet": str(subnet)}]],
                                       "routes": [{"dst": "10.244.0.0/16"}]}
    assert ipam_conf(parse(_conf(ipam={"type": "dhcp"})), subnet) == {"type": "dhcp"}


def test_bridge_attachment_and_ipam_request() -> None:
    """bridge gets an explicit BridgeConf (the node bridge as gateway, the overlay MTU); IPAM gets the request
    with only its ``ipam`` section rewritten."""
    from cni_common.skel import CmdArgs
    from cni_common.attach.conf import BridgeConf

    raw = _conf(dns={"nameservers": ["10.96.0.10"]}, ipMasq=True)
    args = CmdArgs(command="ADD", container_id="c1", netns="/run/netns/x", ifname="eth0", args="", path=[],
                   stdin_data=json.dumps(raw).encode(), conf=raw, cni_version="1.0.0", env={})
    c = parse(raw)
    br = bridge_conf(args, c, 1450, "0a:58:00:00:00:01")
    assert br == BridgeConf(network="pods", bridge="cnivxbr1", is_gateway=True, mtu=1450, ipam_type="host-local",
                            dns=br.dns, mac="0a:58:00:00:00:01")
    assert br.dns.nameservers == ["10.96.0.10"] and not br.ip_masq and not br.is_default_gateway
    subnet = ipaddress.ip_network("10.244.3.0/24")
    sent = json.loads(ipam_args(args, c, subnet).stdin_data)
    assert sent == {**raw, "ipam": ipam_conf(c, subnet)} and args.conf == raw  # the caller's args stay as they were


def test_agent_reads_the_vxlan_entry_of_a_conflist(tmp_path: Path) -> None:
    path = tmp_path / "10-pods.conflist"
    path.write_text(json.dumps({"cniVersion": "1.0.0", "name": "pods", "plugins": [
        {"type": "vxlan", "network": "10.244.0.0/16"}, {"type": "portmap"}]}))
    single, conf = load_file(str(path))
    assert single["name"] == "pods" and conf.name == "pods" and conf.etcd is None
    path.write_text(json.dumps({"cniVersion": "1.0.0", "name": "pods", "plugins": [{"type": "bridge"}]}))
    with pytest.raises(CNIError) as err:
        load_file(str(path))
    assert err.value.code == ErrorCode.INVALID_CONFIG and "vxlan" in err.value.msg
