"""Links: look-up, bridge/veth/vxlan creation, link settings, bridge-port flags and VLANs.

Functions take a :class:`~cni_common.netlink.conn.Conn`, which fixes the namespace they act in. Names follow the
upstream Go helpers: ``ensure_*`` tolerates an existing object, ``setup_veth`` creates, ``delete_link`` treats a
missing link as done.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import struct
from dataclasses import dataclass

from ..errors import CNIError, PluginCode
from . import attrs
from .conn import Conn, NetlinkError
from .consts import (
    AF_BRIDGE,
    AF_UNSPEC,
    BRIDGE_VLAN_INFO_PVID,
    BRIDGE_VLAN_INFO_UNTAGGED,
    IF_OPER_UP,
    IFF_LOWER_UP,
    IFF_PROMISC,
    IFF_UP,
    IFLA_ADDRESS,
    IFLA_AF_SPEC,
    IFLA_BR_VLAN_FILTERING,
    IFLA_BRIDGE_VLAN_INFO,
    IFLA_BRPORT_ISOLATED,
    IFLA_BRPORT_MODE,
    IFLA_EXT_MASK,
    IFLA_IFNAME,
    IFLA_INFO_DATA,
    IFLA_INFO_KIND,
    IFLA_LINK,
    IFLA_LINKINFO,
    IFLA_MASTER,
    IFLA_MTU,
    IFLA_NET_NS_FD,
    IFLA_OPERSTATE,
    IFLA_PROTINFO,
    IFLA_VXLAN_ID,
    IFLA_VXLAN_LEARNING,
    IFLA_VXLAN_LINK,
    IFLA_VXLAN_LOCAL,
    IFLA_VXLAN_LOCAL6,
    IFLA_VXLAN_PORT,
    NLM_F_CREATE,
    NLM_F_EXCL,
    RTEXT_FILTER_BRVLAN,
    RTEXT_FILTER_SKIP_STATS,
    RTM_DELLINK,
    RTM_GETLINK,
    RTM_NEWLINK,
    RTM_SETLINK,
    VETH_INFO_PEER,
)

_IFINFOMSG = struct.Struct("=BxHiII")  # family, pad, type, index, flags, change
_VLAN_INFO = struct.Struct("=HH")  # flags, vid
#: Host-side veth names are `veth` + 8 hex chars; a clash with an existing name is retried this often.
VETH_NAME_ATTEMPTS = 10
#: The kernel's vxlan port when none is given (Linux legacy port, not IANA's 4789).
VXLAN_DEFAULT_PORT = 8472


@dataclass(frozen=True)
class Link:
    """What the plugins need to know about a link."""

    index: int
    name: str
    mac: str
    mtu: int
    kind: str  # "bridge", "veth", "vxlan"...; "" for devices without rtnl link ops (lo, physical NICs)
    master: int  # index of the bridge it is a port of, 0 when none
    peer_index: int  # IFLA_LINK: for a veth, its peer's index (in the peer's namespace); else often = index
    flags: int  # IFF_* net_device flags
    operstate: int  # IF_OPER_*

    @property
    def up(self) -> bool:
        return bool(self.flags & IFF_UP)

    @property
    def promisc(self) -> bool:
        return bool(self.flags & IFF_PROMISC)

    @property
    def oper_up(self) -> bool:
        """Carrier and operationally up (a bridge port has passed the forwarding-state checks)."""
        return self.operstate == IF_OPER_UP and bool(self.flags & IFF_LOWER_UP)


@dataclass(frozen=True)
class BridgeVlan:
    """One VLAN of a bridge port."""

    vid: int
    pvid: bool = False
    untagged: bool = False


class LinkNotFound(NetlinkError):
    """No link of that name or index in the namespace (ENODEV)."""


def _ifinfo(index: int = 0, family: int = AF_UNSPEC, flags: int = 0, change: int = 0) -> bytes:
    return _IFINFOMSG.pack(family, 0, index, flags, change)


def _decode(payload: bytes) -> tuple[Link, dict[int, bytes], dict[int, bytes]]:
    """The Link, its top-level attributes, and its IFLA_INFO_DATA attributes (kind-specific)."""
    _family, _type, index, flags, _change = _IFINFOMSG.unpack_from(payload)
    top = attrs.parse(payload, _IFINFOMSG.size)
    info = attrs.parse(top.get(IFLA_LINKINFO, b""))
    link = Link(
        index=index,
        name=attrs.get_str(top, IFLA_IFNAME),
        mac=attrs.mac_to_str(top.get(IFLA_ADDRESS)),
        mtu=attrs.get_u32(top, IFLA_MTU),
        kind=attrs.get_str(info, IFLA_INFO_KIND),
        master=attrs.get_u32(top, IFLA_MASTER),
        peer_index=attrs.get_u32(top, IFLA_LINK),
        flags=flags,
        operstate=attrs.get_u8(top, IFLA_OPERSTATE),
    )
    return link, top, attrs.parse(info.get(IFLA_INFO_DATA, b""))


def _key_body(key: str | int, family: int = AF_UNSPEC) -> bytes:
    if isinstance(key, int):
        return _ifinfo(index=key, family=family)
    return _ifinfo(family=family) + attrs.string(IFLA_IFNAME, key)


def _get_raw(conn: Conn, key: str | int) -> tuple[Link, dict[int, bytes], dict[int, bytes]]:
    body = _key_body(key) + attrs.u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS)
    try:
        replies = conn.request(RTM_GETLINK, body, 0, f"failed to look up link {key!r}")
    except NetlinkError as exc:
        if exc.errno == errno.ENODEV:
            raise LinkNotFound(exc.errno, f"link {key!r} not found") from exc
        raise
    return _decode(replies[0][1])


def get_link(conn: Conn, key: str | int) -> Link:
    """The link named (str) or numbered (int) ``key``; raises :class:`LinkNotFound`."""
    return _get_raw(conn, key)[0]


def find_link(conn: Conn, key: str | int) -> Link | None:
    """Like :func:`get_link`, but None when there is no such link."""
    try:
        return get_link(conn, key)
    except LinkNotFound:
        return None


def list_links(conn: Conn) -> list[Link]:
    """Every link of the namespace."""
    body = _ifinfo() + attrs.u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS)
    return [_decode(p)[0] for t, p in conn.dump(RTM_GETLINK, body, "failed to list links") if t == RTM_NEWLINK]


def _create(conn: Conn, body: bytes, what: str) -> None:
    conn.request(RTM_NEWLINK, body, NLM_F_CREATE | NLM_F_EXCL, what)


def _setlink(conn: Conn, index: int, what: str, *nlas: bytes, flags: int = 0, change: int = 0) -> None:
    conn.request(RTM_SETLINK, _ifinfo(index, flags=flags, change=change) + b"".join(nlas), 0, what)


def _linkinfo(kind: str, *data: bytes) -> bytes:
    children = [attrs.string(IFLA_INFO_KIND, kind)]
    if data:
        children.append(attrs.nested(IFLA_INFO_DATA, *data))
    return attrs.nested(IFLA_LINKINFO, *children)


def _mac_attr(mac: str) -> bytes:
    try:
        return attrs.attr(IFLA_ADDRESS, attrs.mac_to_bytes(mac))
    except ValueError as exc:
        raise CNIError(PluginCode.LINK_FAILURE, f"invalid MAC address {mac!r}") from exc


def ensure_bridge(conn: Conn, name: str, *, mtu: int = 0, vlan_filtering: bool = False,
                  promisc: bool = False) -> Link:
    """The bridge ``name``, created if missing (MTU and vlan_filtering apply only then), promisc if asked, up.

    Concurrent first pods may race to create it: EEXIST is fine, as long as what exists is a bridge.
    """
    body = _ifinfo() + attrs.string(IFLA_IFNAME, name)
    if mtu:
        body += attrs.u32(IFLA_MTU, mtu)
    data = [attrs.u8(IFLA_BR_VLAN_FILTERING, 1)] if vlan_filtering else []
    body += _linkinfo("bridge", *data)
    try:
        _create(conn, body, f"could not add bridge {name!r}")
    except NetlinkError as exc:
        if exc.errno != errno.EEXIST:
            raise
    link = get_link(conn, name)
    if link.kind != "bridge":
        raise CNIError(PluginCode.LINK_FAILURE, f"{name!r} already exists but is not a bridge")
    if promisc and not link.promisc:
        set_promisc(conn, link.index, True)
    if not link.up:
        set_up(conn, link.index)
    return get_link(conn, link.index) if promisc or not link.up else link


def setup_veth(host: Conn, cont: Conn, ifname: str, *, mtu: int = 0, mac: str = "") -> tuple[Link, Link]:
    """Create a veth from the container side: ``ifname`` in ``cont``, its peer ``veth<8 hex>`` in ``host``.

    The host end is brought up; the container end is left down for the address setup. Returns (host, container).
    An existing ``ifname`` in the container is an error (the spec forbids adopting it); a clash of the random
    host name is retried.
    """
    if find_link(cont, ifname) is not None:
        raise CNIError(PluginCode.LINK_FAILURE, f"container veth name {ifname!r} already exists")
    mtu_attr = attrs.u32(IFLA_MTU, mtu) if mtu else b""
    for _ in range(VETH_NAME_ATTEMPTS):
        peer_name = "veth" + os.urandom(4).hex()
        peer = _ifinfo() + attrs.string(IFLA_IFNAME, peer_name) + mtu_attr + attrs.u32(IFLA_NET_NS_FD, host.netns.fd)
        body = _ifinfo() + attrs.string(IFLA_IFNAME, ifname) + mtu_attr + (_mac_attr(mac) if mac else b"")
        # VETH_INFO_PEER carries an ifinfomsg plus attributes; it is not flagged as nested in the kernel's policy.
        body += _linkinfo("veth", attrs.attr(VETH_INFO_PEER, peer))
        try:
            _create(cont, body, f"failed to make veth pair {ifname!r}/{peer_name!r}")
        except NetlinkError as exc:
            if exc.errno != errno.EEXIST:
                raise
            if find_link(cont, ifname) is not None:
                raise CNIError(PluginCode.LINK_FAILURE, f"container veth name {ifname!r} already exists") from exc
            continue
        host_link = get_link(host, peer_name)
        set_up(host, host_link.index)
        return get_link(host, host_link.index), get_link(cont, ifname)
    raise CNIError(PluginCode.LINK_FAILURE, f"failed to find a free host veth name for {ifname!r}")


def ensure_vxlan(conn: Conn, name: str, *, vni: int, local: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None,
                 port: int = 0, dev_index: int = 0, learning: bool = False, mtu: int = 0, mac: str = "") -> Link:
    """The vxlan device ``name`` with these settings; an incompatible existing one is deleted and re-made.

    A compatible existing device is kept as is (flannel's rule: never tear the overlay down on a restart).
    ``port`` 0 means the kernel default (8472). The device is not brought up: addresses come first.
    """
    existing = None
    try:
        existing = _get_raw(conn, name)
    except LinkNotFound:
        pass
    if existing is not None:
        link, _top, data = existing
        if _vxlan_matches(link, data, vni, local, port, dev_index, learning):
            return link
        delete_link(conn, link.index)
    data_attrs = [attrs.u32(IFLA_VXLAN_ID, vni), attrs.u8(IFLA_VXLAN_LEARNING, int(learning))]
    if local is not None:
        data_attrs.append(attrs.ip(IFLA_VXLAN_LOCAL if local.version == 4 else IFLA_VXLAN_LOCAL6, local))
    if dev_index:
        data_attrs.append(attrs.u32(IFLA_VXLAN_LINK, dev_index))
    if port:
        data_attrs.append(attrs.be16(IFLA_VXLAN_PORT, port))
    body = _ifinfo() + attrs.string(IFLA_IFNAME, name)
    if mtu:
        body += attrs.u32(IFLA_MTU, mtu)
    if mac:
        body += _mac_attr(mac)
    body += _linkinfo("vxlan", *data_attrs)
    _create(conn, body, f"failed to add vxlan device {name!r} (vni {vni})")
    return get_link(conn, name)


def _vxlan_matches(link: Link, data: dict[int, bytes], vni: int, local: object, port: int, dev_index: int,
                   learning: bool) -> bool:
    if link.kind != "vxlan" or attrs.get_u32(data, IFLA_VXLAN_ID) != vni:
        return False
    have_local = attrs.get_ip(data, IFLA_VXLAN_LOCAL) or attrs.get_ip(data, IFLA_VXLAN_LOCAL6)
    return (
        have_local == local
        and attrs.get_be16(data, IFLA_VXLAN_PORT) == (port or VXLAN_DEFAULT_PORT)
        and attrs.get_u32(data, IFLA_VXLAN_LINK) == dev_index
        and bool(attrs.get_u8(data, IFLA_VXLAN_LEARNING)) == learning
    )


def delete_link(conn: Conn, key: str | int) -> bool:
    """Delete the link named or numbered ``key``; False when it did not exist (that is not an error)."""
    try:
        conn.request(RTM_DELLINK, _key_body(key), 0, f"failed to delete link {key!r}")
    except NetlinkError as exc:
        if exc.errno == errno.ENODEV:
            return False
        raise
    return True


def set_up(conn: Conn, index: int) -> None:
    _setlink(conn, index, f"failed to set link {index} up", flags=IFF_UP, change=IFF_UP)


def set_down(conn: Conn, index: int) -> None:
    _setlink(conn, index, f"failed to set link {index} down", flags=0, change=IFF_UP)


def set_promisc(conn: Conn, index: int, on: bool) -> None:
    _setlink(conn, index, f"failed to set promisc on link {index}", flags=IFF_PROMISC if on else 0,
             change=IFF_PROMISC)


def set_mtu(conn: Conn, index: int, mtu: int) -> None:
    _setlink(conn, index, f"failed to set MTU {mtu} on link {index}", attrs.u32(IFLA_MTU, mtu))


def set_mac(conn: Conn, index: int, mac: str) -> None:
    """Set the MAC; on a bridge this also pins it, so it stops following the lowest port MAC."""
    _setlink(conn, index, f"failed to set MAC {mac} on link {index}", _mac_attr(mac))


def set_master(conn: Conn, index: int, master: int) -> None:
    """Make link ``index`` a port of bridge ``master`` (0 detaches it)."""
    _setlink(conn, index, f"failed to connect link {index} to bridge {master}", attrs.u32(IFLA_MASTER, master))


def set_bridge_port(conn: Conn, index: int, *, hairpin: bool | None = None, isolated: bool | None = None) -> None:
    """Bridge-port flags of link ``index`` (None leaves a flag alone)."""
    flags = []
    if hairpin is not None:
        flags.append(attrs.u8(IFLA_BRPORT_MODE, int(hairpin)))
    if isolated is not None:
        flags.append(attrs.u8(IFLA_BRPORT_ISOLATED, int(isolated)))
    if not flags:
        return
    # IFLA_PROTINFO must carry NLA_F_NESTED here, or the kernel reads it as the legacy one-byte port state.
    body = _ifinfo(index, family=AF_BRIDGE) + attrs.nested(IFLA_PROTINFO, *flags)
    conn.request(RTM_SETLINK, body, 0, f"failed to set bridge port flags on link {index}")


def add_bridge_vlan(conn: Conn, index: int, vid: int, *, pvid: bool = False, untagged: bool = False) -> None:
    """Add VLAN ``vid`` to bridge port ``index`` (re-adding updates its pvid/untagged flags)."""
    flags = (BRIDGE_VLAN_INFO_PVID if pvid else 0) | (BRIDGE_VLAN_INFO_UNTAGGED if untagged else 0)
    conn.request(RTM_SETLINK, _vlan_body(index, vid, flags), 0, f"failed to add vlan {vid} to link {index}")


def del_bridge_vlan(conn: Conn, index: int, vid: int) -> None:
    """Remove VLAN ``vid`` from bridge port ``index``."""
    conn.request(RTM_DELLINK, _vlan_body(index, vid, 0), 0, f"failed to remove vlan {vid} from link {index}")


def _vlan_body(index: int, vid: int, flags: int) -> bytes:
    entry = attrs.attr(IFLA_BRIDGE_VLAN_INFO, _VLAN_INFO.pack(flags, vid))
    return _ifinfo(index, family=AF_BRIDGE) + attrs.nested(IFLA_AF_SPEC, entry)


def list_bridge_vlans(conn: Conn, index: int) -> list[BridgeVlan]:
    """The VLANs of bridge port ``index`` (empty when vlan filtering never touched it)."""
    body = _ifinfo(family=AF_BRIDGE) + attrs.u32(IFLA_EXT_MASK, RTEXT_FILTER_BRVLAN)
    out: list[BridgeVlan] = []
    for mtype, payload in conn.dump(RTM_GETLINK, body, f"failed to list vlans of link {index}"):
        if mtype != RTM_NEWLINK or _IFINFOMSG.unpack_from(payload)[2] != index:
            continue
        spec = attrs.parse(payload, _IFINFOMSG.size).get(IFLA_AF_SPEC, b"")
        for kind, value in attrs.iterate(spec):
            if kind == IFLA_BRIDGE_VLAN_INFO:
                flags, vid = _VLAN_INFO.unpack_from(value)
                pvid, untagged = bool(flags & BRIDGE_VLAN_INFO_PVID), bool(flags & BRIDGE_VLAN_INFO_UNTAGGED)
                out.append(BridgeVlan(vid, pvid, untagged))
    return out
