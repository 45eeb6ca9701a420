"""The pyroute2 loading trick (cni_common/netlink/pyroute2_light.py) and the message bodies built with it.

These fail loudly when a pyroute2 upgrade breaks the trick: wrong version, a class gone or moved, pyroute2's
package ``__init__`` or its real config running after all, or bytes on the wire changing. Bodies are checked
against what our own TLV codec (tests/helpers/nlattrs.py) says the kernel expects.
"""

from __future__ import annotations

import importlib.metadata
import ipaddress
import struct
import subprocess
import sys

import pytest

from cni_common.netlink import addr, consts, ifinfo, link, msg, neigh, pyroute2_light, route
from tests.helpers import nlattrs as attrs

_IFINFOMSG = struct.Struct("=BxHiII")
_IFADDRMSG = struct.Struct("=BBBBI")
_NDMSG = struct.Struct("=BxxxiHBB")


def test_installed_pyroute2_is_the_pinned_version():
    assert importlib.metadata.version("pyroute2") == pyroute2_light.PYROUTE2_VERSION


@pytest.mark.parametrize("name", sorted(pyroute2_light.MODULES))
def test_each_class_loads_and_round_trips(name):
    cls = pyroute2_light.message_class(name)
    assert cls.__name__ == name and cls.__module__ == pyroute2_light.MODULES[name]
    body = msg.build(name)
    assert msg.parse(name, 16, body)["attrs"] == []


def test_loading_runs_neither_the_package_init_nor_its_config():
    code = (
        "import sys; from cni_common.netlink import pyroute2_light as p\n"
        "for name in p.MODULES: p.message_class(name)\n"
        "heavy = ('pyroute2.iproute', 'pyroute2.ndb', 'pyroute2.config', 'multiprocessing', 'platform', 'asyncio')\n"
        "print(sorted(m for m in heavy if m in sys.modules), hasattr(sys.modules['pyroute2'], 'IPRoute'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[] False"


def test_the_real_config_still_imports_afterwards():
    code = ("from cni_common.netlink import pyroute2_light as p; p.message_class('ifinfmsg')\n"
            "import pyroute2.config; print(hasattr(pyroute2.config, 'uname'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "True"


def test_veth_body_carries_the_peer_with_its_namespace():
    body = link._ifinfo(0, ("IFLA_IFNAME", "eth0"), ("IFLA_MTU", 1450), link._mac_attr("0A:58:0A:F4:01:05"),
                        link._linkinfo("veth", ("VETH_INFO_PEER", {"attrs": [("IFLA_IFNAME", "veth0a0b0c0d"),
                                                                             ("IFLA_NET_NS_FD", 5)]})))
    top = attrs.parse(body, _IFINFOMSG.size)
    assert attrs.get_str(top, consts.IFLA_IFNAME) == "eth0" and attrs.get_u32(top, consts.IFLA_MTU) == 1450
    assert attrs.mac_to_str(top[consts.IFLA_ADDRESS]) == "0a:58:0a:f4:01:05"
    info = attrs.parse(top[consts.IFLA_LINKINFO])
    assert attrs.get_str(info, consts.IFLA_INFO_KIND) == "veth"
    peer = attrs.parse(info[consts.IFLA_INFO_DATA])[consts.VETH_INFO_PEER]
    peer_attrs = attrs.parse(peer, _IFINFOMSG.size)
    assert attrs.get_str(peer_attrs, consts.IFLA_IFNAME) == "veth0a0b0c0d"
    assert attrs.get_u32(peer_attrs, consts.IFLA_NET_NS_FD) == 5


def test_vxlan_data_is_encoded_and_matched_back():
    local = ipaddress.ip_address("192.0.2.7")
    data = [("IFLA_VXLAN_ID", 42), ("IFLA_VXLAN_LEARNING", 0), ("IFLA_VXLAN_LOCAL", str(local)),
            ("IFLA_VXLAN_LINK", 3), ("IFLA_VXLAN_PORT", 4789)]
    body = link._ifinfo(0, ("IFLA_IFNAME", "vxlan0"), link._linkinfo("vxlan", *data))
    raw = attrs.parse(attrs.parse(attrs.parse(body, _IFINFOMSG.size)[consts.IFLA_LINKINFO])[consts.IFLA_INFO_DATA])
    assert attrs.get_u32(raw, consts.IFLA_VXLAN_ID) == 42 and attrs.get_be16(raw, consts.IFLA_VXLAN_PORT) == 4789
    assert attrs.get_ip(raw, consts.IFLA_VXLAN_LOCAL) == local
    decoded, info_data = ifinfo.decode_link(body), ifinfo.info_data(body)
    assert decoded.name == "vxlan0" and decoded.kind == "vxlan"
    assert link._vxlan_matches(info_data, 42, local, 4789, 3, False)
    assert not link._vxlan_matches(info_data, 42, local, 0, 3, False)  # 0 means 8472


def test_bridge_port_flags_and_vlans_are_nested_as_the_kernel_requires():
    body = link._ifinfo(7, ("IFLA_PROTINFO", {"attrs": [("IFLA_BRPORT_MODE", 1)]}, msg.NLA_F_NESTED),
                        family=consts.AF_BRIDGE)
    assert _IFINFOMSG.unpack_from(body)[0] == consts.AF_BRIDGE and _IFINFOMSG.unpack_from(body)[2] == 7
    assert struct.unpack_from("=HH", body, _IFINFOMSG.size)[1] == consts.IFLA_PROTINFO | attrs.NLA_F_NESTED
    body = link._vlan_body(7, 100, consts.BRIDGE_VLAN_INFO_PVID)
    spec = attrs.parse(body, _IFINFOMSG.size)[consts.IFLA_AF_SPEC]
    assert attrs.parse(spec)[consts.IFLA_BRIDGE_VLAN_INFO] == struct.pack("=HH", consts.BRIDGE_VLAN_INFO_PVID, 100)


class _DumpConn:
    """Answers every dump with the given (type, body) replies."""

    def __init__(self, replies):
        self.replies = replies

    def dump(self, msg_type, body, what):
        return self.replies


def test_list_bridge_vlans_reads_only_the_asked_port():
    def entry(index, *vlans):
        spec = attrs.nested(consts.IFLA_AF_SPEC, *(attrs.attr(consts.IFLA_BRIDGE_VLAN_INFO, struct.pack("=HH", f, v))
                                                    for f, v in vlans))
        return consts.RTM_NEWLINK, _IFINFOMSG.pack(consts.AF_BRIDGE, 1, index, 0, 0) + spec

    pvid_untagged = consts.BRIDGE_VLAN_INFO_PVID | consts.BRIDGE_VLAN_INFO_UNTAGGED
    conn = _DumpConn([entry(3, (0, 5)), entry(7, (pvid_untagged, 1), (0, 100))])
    assert link.list_bridge_vlans(conn, 7) == [link.BridgeVlan(1, True, True), link.BridgeVlan(100)]
    assert link.list_bridge_vlans(conn, 9) == []


def test_addr_body_and_listing():
    iface = ipaddress.ip_interface("10.22.0.5/16")
    body = addr._body(4, iface, consts.IFA_F_NODAD)
    assert _IFADDRMSG.unpack_from(body) == (consts.AF_INET, 16, consts.IFA_F_NODAD, 0, 4)
    nla = attrs.parse(body, _IFADDRMSG.size)
    assert attrs.get_ip(nla, consts.IFA_LOCAL) == iface.ip == attrs.get_ip(nla, consts.IFA_ADDRESS)
    v6 = _IFADDRMSG.pack(consts.AF_INET6, 64, 0, 0, 5) + attrs.ip(consts.IFA_ADDRESS, ipaddress.ip_address("fd00::5"))
    v6 += attrs.u32(consts.IFA_FLAGS, consts.IFA_F_TENTATIVE)
    conn = _DumpConn([(consts.RTM_NEWADDR, body), (consts.RTM_NEWADDR, v6)])
    listed = addr.list_addrs(conn, 5)
    assert listed == [addr.Addr(5, ipaddress.ip_interface("fd00::5/64"), 0, consts.IFA_F_TENTATIVE)]
    assert listed[0].tentative and len(addr.list_addrs(conn)) == 2


def test_route_listing_reads_gateway_metrics_and_skips_other_types():
    gw = route.Route(ipaddress.ip_network("10.9.0.0/16"), ipaddress.ip_address("10.0.0.1"), oif=2, priority=5,
                     mtu=1400)
    local = bytearray(route._body(route.Route(ipaddress.ip_network("10.0.0.0/8"))))
    local[7] = 2  # RTN_LOCAL
    conn = _DumpConn([(consts.RTM_NEWROUTE, route._body(gw)), (consts.RTM_NEWROUTE, bytes(local))])
    assert route.list_routes(conn) == [route.Route(gw.dst, gw.gateway, 2, 5, consts.RT_TABLE_MAIN,
                                                    consts.RT_SCOPE_UNIVERSE, 1400)]


def test_fdb_body():
    body = neigh._body(consts.AF_BRIDGE, 9, neigh._mac("0a:58:0a:f4:01:05"), ("NDA_DST", "192.0.2.9"),
                       state=consts.NUD_PERMANENT, flags=consts.NTF_SELF)
    assert _NDMSG.unpack_from(body) == (consts.AF_BRIDGE, 9, consts.NUD_PERMANENT, consts.NTF_SELF, 0)
    nla = attrs.parse(body, _NDMSG.size)
    assert attrs.mac_to_str(nla[consts.NDA_LLADDR]) == "0a:58:0a:f4:01:05"
    assert attrs.get_ip(nla, consts.NDA_DST) == ipaddress.ip_address("192.0.2.9")


def test_standard_logging_is_not_loaded_but_stays_importable():
    code = ("import sys; from cni_common.netlink import pyroute2_light as p\n"
            "for name in p.MODULES: p.message_class(name)\n"
            "print('logging' in sys.modules)\n"
            "import logging; print(hasattr(logging, 'basicConfig'))\n"
            "import pyroute2.netlink as n; n.log.warning('decoding %s', 'x'); n.logging.error('e')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.split() == ["False", "True"]
    assert "WARNING decoding x" in proc.stderr and "ERROR e" in proc.stderr


def test_traceback_and_pkgutil_load_only_when_pyroute2_uses_them():
    code = ("import sys; from cni_common.netlink import pyroute2_light as p\n"
            "for name in p.MODULES: p.message_class(name)\n"
            "print('traceback' in sys.modules, 'pkgutil' in sys.modules)\n"
            "import pyroute2.netlink as n\n"
            "try:\n    1 / 0\nexcept ZeroDivisionError:\n    text = n.traceback.format_exc()\n"
            "print('ZeroDivisionError' in text, 'traceback' in sys.modules)\n"
            "import traceback; print(traceback.format_exc is not None)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.split() == ["False", "False", "True", "True", "True"]
