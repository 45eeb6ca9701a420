"""Links: look-up, bridge/veth/vxlan creation, link settings, bridge-port flags and VLANs.

Functions take a :class:`~cni_common.netlink.conn.Conn`, which fixes the namespace they act in. Names follow the
upstream Go helpers: ``ensure_*`` tolerates an existing object, ``setup_veth`` creates, ``delete_link`` treats a
missing link as done.

Messages are built with pyroute2's ``ifinfmsg`` (see :mod:`.msg`); attribute names are the kernel's. Replies
become :class:`~.ifinfo.Link` records without pyroute2's full decode (see :mod:`.ifinfo` for why). A call looks a
link up only when the kernel may have changed it since: a create asks for the kernel's own notification of the new
link (NLM_F_ECHO) and uses that instead of a look-up.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import struct
from typing import Any

from ..errors import CNIError, PluginCode
from ..record import record
from . import attrs, msg
from .conn import Conn, NetlinkError, request_unless
from .consts import (
    AF_BRIDGE,
    AF_UNSPEC,
    BRIDGE_VLAN_INFO_PVID,
    BRIDGE_VLAN_INFO_UNTAGGED,
    IFF_ALLMULTI,
    IFF_PROMISC,
    IFF_UP,
    NLM_F_CREATE,
    NLM_F_ECHO,
    NLM_F_EXCL,
    RTEXT_FILTER_BRVLAN,
    RTEXT_FILTER_SKIP_STATS,
    RTM_DELLINK,
    RTM_GETLINK,
    RTM_NEWLINK,
    RTM_SETLINK,
)
from .ifinfo import Link, decode_link, info_data

Nla = tuple  # one attribute as pyroute2 encodes it: (name, value) or (name, value, nla_flags)
#: ifi_index in an ifinfomsg body (family, pad, type, *index*, flags, change): read to skip other links of a
#: dump before paying for a full decode.
_IFI_INDEX = struct.Struct("=4xi")
#: Host-side veth names are `veth` + 8 hex chars; a clash with an existing name is retried this often.
VETH_NAME_ATTEMPTS = 10
#: The kernel's vxlan port when none is given (Linux legacy port, not IANA's 4789).
VXLAN_DEFAULT_PORT = 8472


@record(frozen=True)
class BridgeVlan:
    """One VLAN of a bridge port."""

    vid: int
    pvid: bool = False
    untagged: bool = False


class LinkNotFound(NetlinkError):
    """No link of that name or index in the namespace (ENODEV)."""


def _ifinfo(index: int = 0, *nlas: Nla, family: int = AF_UNSPEC, flags: int = 0, change: int = 0) -> bytes:
    """An ifinfmsg body for link ``index`` (0: none, e.g. to create one) with these attributes."""
    return msg.build("ifinfmsg", nlas, family=family, index=index, flags=flags, change=change)


def _key_body(key: str | int, *nlas: Nla, family: int = AF_UNSPEC) -> bytes:
    if isinstance(key, int):
        return _ifinfo(key, *nlas, family=family)
    return _ifinfo(0, ("IFLA_IFNAME", key), *nlas, family=family)


def _get_body(conn: Conn, key: str | int) -> bytes:
    """The kernel's RTM_NEWLINK body describing link ``key``; raises :class:`LinkNotFound`."""
    body = _key_body(key, ("IFLA_EXT_MASK", RTEXT_FILTER_SKIP_STATS))
    try:
        replies = conn.request(RTM_GETLINK, body, 0, f"failed to look up link {key!r}")
    except NetlinkError as exc:
        if exc.errno == errno.ENODEV:
            raise LinkNotFound(exc.errno, f"link {key!r} not found") from exc
        raise
    return replies[0][1]


def get_link(conn: Conn, key: str | int) -> Link:
    """The link named (str) or numbered (int) ``key``; raises :class:`LinkNotFound`."""
    return decode_link(_get_body(conn, key))


def find_link(conn: Conn, key: str | int) -> Link | None:
    """Like :func:`get_link`, but None when there is no such link."""
    try:
        return get_link(conn, key)
    except LinkNotFound:
        return None


def list_links(conn: Conn) -> list[Link]:
    """Every link of the namespace."""
    body = _ifinfo(0, ("IFLA_EXT_MASK", RTEXT_FILTER_SKIP_STATS))
    return [decode_link(p) for t, p in conn.dump(RTM_GETLINK, body, "failed to list links") if t == RTM_NEWLINK]


def _create(conn: Conn, body: bytes, what: str) -> None:
    conn.request(RTM_NEWLINK, body, NLM_F_CREATE | NLM_F_EXCL, what)


def _create_echoed(conn: Conn, body: bytes, name: str, what: str) -> Link:
    """Create link ``name`` in ``conn``'s own namespace and return it as the kernel describes it once made.

    The kernel's notification of the new link, sent back to the sender on request (NLM_F_ECHO; recent kernels,
    this VM's 6.18 among them), saves a look-up; an older kernel sends none and we look the link up. Only for
    links made in ``conn``'s own namespace, where that notification is sent; a veth's peer gets none.
    """
    replies = conn.request(RTM_NEWLINK, body, NLM_F_CREATE | NLM_F_EXCL | NLM_F_ECHO, what)
    echoed = [payload for mtype, payload in replies if mtype == RTM_NEWLINK]
    return decode_link(echoed[-1]) if echoed else get_link(conn, name)


def _setlink(conn: Conn, index: int, what: str, *nlas: Nla, flags: int = 0, change: int = 0) -> None:
    conn.request(RTM_SETLINK, _ifinfo(index, *nlas, flags=flags, change=change), 0, what)


def _linkinfo(kind: str, *data: Nla) -> Nla:
    children: list[Nla] = [("IFLA_INFO_KIND", kind)]
    if data:
        children.append(("IFLA_INFO_DATA", {"attrs": list(data)}))
    return ("IFLA_LINKINFO", {"attrs": children})


def _random_mac() -> str:
    """A random locally administered unicast MAC (what the kernel picks itself, but chosen by us)."""
    raw = bytearray(os.urandom(6))
    raw[0] = (raw[0] & 0xFE) | 0x02
    return attrs.mac_to_str(bytes(raw))


def _mac_attr(mac: str) -> Nla:
    """IFLA_ADDRESS, checked first: pyroute2 would encode a malformed MAC without a word."""
    try:
        return ("IFLA_ADDRESS", attrs.mac_to_str(attrs.mac_to_bytes(mac)))
    except ValueError as exc:
        raise CNIError(PluginCode.LINK_FAILURE, f"invalid MAC address {mac!r}") from exc


def ensure_bridge(conn: Conn, name: str, *, mtu: int = 0, vlan_filtering: bool = False,
                  promisc: bool = False, found: Link | None = None) -> Link:
    """The bridge ``name``, created if missing (MTU and vlan_filtering apply only then), promisc if asked, up.

    ``found``: the link ``name`` as the caller has just looked it up (saves a look-up; None: look it up here).
    Concurrent first pods may race to create it: EEXIST is fine, as long as what exists is a bridge. It is
    created with a MAC of its own (random, locally administered): the kernel then never changes it, where a
    bridge without one takes the lowest MAC of its ports as they come and go, and first pods racing to pin it
    would each pin a different one.
    """
    link = found if found is not None else find_link(conn, name)
    if link is None:
        link = _create_bridge(conn, name, mtu, vlan_filtering, promisc)
    if link.kind != "bridge":
        raise CNIError(PluginCode.LINK_FAILURE, f"{name!r} already exists but is not a bridge")
    make_promisc = promisc and not link.promisc
    if make_promisc:
        set_promisc(conn, link.index, True)
    if not link.up:
        set_up(conn, link.index)
    return get_link(conn, link.index) if make_promisc or not link.up else link


def _create_bridge(conn: Conn, name: str, mtu: int, vlan_filtering: bool, promisc: bool) -> Link:
    """Create the bridge ``name``, already up (and promisc if asked); when another call made it first, the link
    of that name (whatever it is: the caller checks)."""
    nlas: list[Nla] = [("IFLA_IFNAME", name), ("IFLA_ADDRESS", _random_mac())]
    if mtu:
        nlas.append(("IFLA_MTU", mtu))
    data = [("IFLA_BR_VLAN_FILTERING", 1)] if vlan_filtering else []
    nlas.append(_linkinfo("bridge", *data))
    flags = IFF_UP | (IFF_PROMISC if promisc else 0)
    body = _ifinfo(0, *nlas, flags=flags, change=flags)
    try:
        return _create_echoed(conn, body, name, f"could not add bridge {name!r}")
    except NetlinkError as exc:
        if exc.errno != errno.EEXIST:
            raise
    return get_link(conn, name)


def setup_veth(host: Conn, cont: Conn, ifname: str, *, mtu: int = 0, mac: str = "") -> tuple[Link, Link]:
    """Create a veth from the container side: ``ifname`` in ``cont``, its peer ``veth<8 hex>`` in ``host``.

    The host end is brought up; the container end is left down for the address setup. Returns (host, container).
    An existing ``ifname`` in the container is an error (the spec forbids adopting it: the kernel refuses the
    pair, EEXIST, and we tell which name clashed); a clash of the random host name is retried.
    """
    mtu_attr = [("IFLA_MTU", mtu)] if mtu else []
    mac_attr = [_mac_attr(mac)] if mac else []
    for _ in range(VETH_NAME_ATTEMPTS):
        peer_name = "veth" + os.urandom(4).hex()
        # VETH_INFO_PEER carries an ifinfomsg plus attributes (pyroute2's ifinfveth). Its flags cannot bring the
        # peer up: the kernel configures the peer before the pair is joined, and a lone veth end refuses (ENOTCONN).
        peer = {"attrs": [("IFLA_IFNAME", peer_name), *mtu_attr, ("IFLA_NET_NS_FD", host.netns.fd)]}
        body = _ifinfo(0, ("IFLA_IFNAME", ifname), *mtu_attr, *mac_attr, _linkinfo("veth", ("VETH_INFO_PEER", peer)))
        try:
            cont_link = _create_echoed(cont, body, ifname, f"failed to make veth pair {ifname!r}/{peer_name!r}")
        except NetlinkError as exc:
            if exc.errno != errno.EEXIST:
                raise
            if find_link(cont, ifname) is not None:
                raise CNIError(PluginCode.LINK_FAILURE, f"container veth name {ifname!r} already exists") from exc
            continue
        set_up(host, cont_link.peer_index)  # a veth's IFLA_LINK is its peer's index, here in the host
        return get_link(host, cont_link.peer_index), cont_link
    raise CNIError(PluginCode.LINK_FAILURE, f"failed to find a free host veth name for {ifname!r}")


def ensure_vxlan(conn: Conn, name: str, *, vni: int, local: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None,
                 port: int = 0, dev_index: int = 0, learning: bool = False, mtu: int = 0, mac: str = "") -> Link:
    """The vxlan device ``name`` with these settings; an incompatible existing one is deleted and re-made.

    A compatible existing device is kept as is (flannel's rule: never tear the overlay down on a restart).
    ``port`` 0 means the kernel default (8472). The device is not brought up: addresses come first.
    """
    try:
        body = _get_body(conn, name)
    except LinkNotFound:
        pass
    else:
        link = decode_link(body)
        if link.kind == "vxlan" and _vxlan_matches(info_data(body), vni, local, port, dev_index, learning):
            return link
        delete_link(conn, link.index)
    data_attrs: list[Nla] = [("IFLA_VXLAN_ID", vni), ("IFLA_VXLAN_LEARNING", int(learning))]
    if local is not None:
        data_attrs.append(("IFLA_VXLAN_LOCAL" if local.version == 4 else "IFLA_VXLAN_LOCAL6", str(local)))
    if dev_index:
        data_attrs.append(("IFLA_VXLAN_LINK", dev_index))
    if port:
        data_attrs.append(("IFLA_VXLAN_PORT", port))
    nlas: list[Nla] = [("IFLA_IFNAME", name)]
    if mtu:
        nlas.append(("IFLA_MTU", mtu))
    if mac:
        nlas.append(_mac_attr(mac))
    nlas.append(_linkinfo("vxlan", *data_attrs))
    return _create_echoed(conn, _ifinfo(0, *nlas), name, f"failed to add vxlan device {name!r} (vni {vni})")


def _vxlan_matches(data: Any, vni: int, local: object, port: int, dev_index: int, learning: bool) -> bool:
    if data is None or data.get_attr("IFLA_VXLAN_ID") != vni:
        return False
    have_local = data.get_attr("IFLA_VXLAN_LOCAL") or data.get_attr("IFLA_VXLAN_LOCAL6")
    return (
        (ipaddress.ip_address(have_local) if have_local else None) == local
        and data.get_attr("IFLA_VXLAN_PORT", 0) == (port or VXLAN_DEFAULT_PORT)
        and data.get_attr("IFLA_VXLAN_LINK", 0) == dev_index
        and bool(data.get_attr("IFLA_VXLAN_LEARNING", 0)) == learning
    )


def ensure_ifb(conn: Conn, name: str, *, mtu: int) -> tuple[Link, bool]:
    """The ifb device ``name`` (up, ``mtu``, txqueuelen 0 as upstream's), created if missing; and whether this
    call created it. An existing link of that name must be an ifb."""
    nlas: list[Nla] = [("IFLA_IFNAME", name), ("IFLA_MTU", mtu), ("IFLA_TXQLEN", 0), _linkinfo("ifb")]
    created = request_unless(conn, RTM_NEWLINK, _ifinfo(0, *nlas, flags=IFF_UP, change=IFF_UP),
                             NLM_F_CREATE | NLM_F_EXCL, f"failed to add ifb device {name!r}", (errno.EEXIST,))
    link = get_link(conn, name)
    if link.kind != "ifb":
        raise CNIError(PluginCode.LINK_FAILURE, f"{name!r} already exists but is not an ifb device")
    if not link.up:
        set_up(conn, link.index)
        link = get_link(conn, link.index)
    return link, created
def create_link(conn: Conn, name: str, kind: str, *data: Nla, parent: int = 0, mtu: int = 0, mac: str = "",
                netns_fd: int = -1) -> None:
    """Create link ``name`` of ``kind`` (``data``: its IFLA_INFO_DATA attributes) from ``conn``'s namespace.

    ``parent`` (IFLA_LINK) is an index in ``conn``'s namespace; with ``netns_fd`` the kernel creates the link
    straight into that namespace (IFLA_NET_NS_FD), so it never exists in ``conn``'s. EEXIST is left to the
    caller (a name clash in the target namespace).
    """
    nlas: list[Nla] = [("IFLA_IFNAME", name)]
    if parent:
        nlas.append(("IFLA_LINK", parent))
    if mtu:
        nlas.append(("IFLA_MTU", mtu))
    if mac:
        nlas.append(_mac_attr(mac))
    if netns_fd >= 0:
        nlas.append(("IFLA_NET_NS_FD", netns_fd))
    nlas.append(_linkinfo(kind, *data))
    _create(conn, _ifinfo(0, *nlas), f"failed to create {kind} link {name!r}")


def get_link_data(conn: Conn, key: str | int) -> tuple[Link, dict[str, Any]]:
    """The link and its kind's settings (IFLA_INFO_DATA by attribute name: ``IFLA_MACVLAN_MODE``,
    ``IFLA_VLAN_ID``...; empty for kinds without any); raises :class:`LinkNotFound`."""
    body = _get_body(conn, key)
    data = info_data(body)
    settings = {} if data is None else {name: value for name, value in data.get("attrs", [])}
    return decode_link(body), settings


def rename_link(conn: Conn, index: int, name: str) -> None:
    """Rename link ``index`` (it must be down); EEXIST when the namespace has a link of that name."""
    _setlink(conn, index, f"failed to rename link {index} to {name!r}", ("IFLA_IFNAME", name))


def delete_link(conn: Conn, key: str | int) -> bool:
    """Delete the link named or numbered ``key``; False when it did not exist (that is not an error)."""
    return request_unless(conn, RTM_DELLINK, _key_body(key), 0, f"failed to delete link {key!r}", (errno.ENODEV,))


def move_link(conn: Conn, index: int, netns_fd: int) -> None:
    """Move link ``index`` into the namespace ``netns_fd``; the kernel drops its addresses and routes on the way
    (and refuses with EEXIST when that namespace has a link of the same name)."""
    _setlink(conn, index, f"failed to move link {index} to another netns", ("IFLA_NET_NS_FD", netns_fd))


def set_alias(conn: Conn, index: int, alias: str) -> None:
    """Set link ``index``'s alias (IFLA_IFALIAS); "" clears it."""
    _setlink(conn, index, f"failed to set alias {alias!r} on link {index}", ("IFLA_IFALIAS", alias))


def set_up(conn: Conn, index: int) -> None:
    _setlink(conn, index, f"failed to set link {index} up", flags=IFF_UP, change=IFF_UP)


def set_down(conn: Conn, index: int) -> None:
    _setlink(conn, index, f"failed to set link {index} down", flags=0, change=IFF_UP)


def set_promisc(conn: Conn, index: int, on: bool) -> None:
    _setlink(conn, index, f"failed to set promisc on link {index}", flags=IFF_PROMISC if on else 0,
             change=IFF_PROMISC)


def set_allmulti(conn: Conn, index: int, on: bool) -> None:
    _setlink(conn, index, f"failed to set allmulticast on link {index}", flags=IFF_ALLMULTI if on else 0,
             change=IFF_ALLMULTI)


def set_txqlen(conn: Conn, index: int, qlen: int) -> None:
    _setlink(conn, index, f"failed to set txqueuelen {qlen} on link {index}", ("IFLA_TXQLEN", qlen))


def set_mtu(conn: Conn, index: int, mtu: int) -> None:
    _setlink(conn, index, f"failed to set MTU {mtu} on link {index}", ("IFLA_MTU", mtu))


def set_mac(conn: Conn, index: int, mac: str) -> None:
    """Set the MAC; on a bridge this also pins it, so it stops following the lowest port MAC."""
    _setlink(conn, index, f"failed to set MAC {mac} on link {index}", _mac_attr(mac))


def set_master(conn: Conn, index: int, master: int) -> None:
    """Make link ``index`` a port of bridge ``master`` (0 detaches it)."""
    _setlink(conn, index, f"failed to connect link {index} to bridge {master}", ("IFLA_MASTER", master))


def set_bridge_port(conn: Conn, index: int, *, hairpin: bool | None = None, isolated: bool | None = None) -> None:
    """Bridge-port flags of link ``index`` (None leaves a flag alone)."""
    flags: list[Nla] = []
    if hairpin is not None:
        flags.append(("IFLA_BRPORT_MODE", int(hairpin)))
    if isolated is not None:
        flags.append(("IFLA_BRPORT_ISOLATED", int(isolated)))
    if not flags:
        return
    # IFLA_PROTINFO must carry NLA_F_NESTED here, or the kernel reads it as the legacy one-byte port state.
    body = _ifinfo(index, ("IFLA_PROTINFO", {"attrs": flags}, msg.NLA_F_NESTED), family=AF_BRIDGE)
    conn.request(RTM_SETLINK, body, 0, f"failed to set bridge port flags on link {index}")


def add_bridge_vlan(conn: Conn, index: int, vid: int, *, pvid: bool = False, untagged: bool = False) -> None:
    """Add VLAN ``vid`` to bridge port ``index`` (re-adding updates its pvid/untagged flags)."""
    flags = (BRIDGE_VLAN_INFO_PVID if pvid else 0) | (BRIDGE_VLAN_INFO_UNTAGGED if untagged else 0)
    conn.request(RTM_SETLINK, _vlan_body(index, vid, flags), 0, f"failed to add vlan {vid} to link {index}")


def del_bridge_vlan(conn: Conn, index: int, vid: int) -> None:
    """Remove VLAN ``vid`` from bridge port ``index``."""
    conn.request(RTM_DELLINK, _vlan_body(index, vid, 0), 0, f"failed to remove vlan {vid} from link {index}")


def _vlan_body(index: int, vid: int, flags: int) -> bytes:
    entry = ("IFLA_BRIDGE_VLAN_INFO", {"flags": flags, "vid": vid})
    return _ifinfo(index, ("IFLA_AF_SPEC", {"attrs": [entry]}, msg.NLA_F_NESTED), family=AF_BRIDGE)


def list_bridge_vlans(conn: Conn, index: int) -> list[BridgeVlan]:
    """The VLANs of bridge port ``index`` (empty when vlan filtering never touched it)."""
    body = _ifinfo(0, ("IFLA_EXT_MASK", RTEXT_FILTER_BRVLAN), family=AF_BRIDGE)
    out: list[BridgeVlan] = []
    for mtype, payload in conn.dump(RTM_GETLINK, body, f"failed to list vlans of link {index}"):
        if mtype != RTM_NEWLINK or _IFI_INDEX.unpack_from(payload)[0] != index:
            continue
        spec = msg.parse("ifinfmsg", mtype, payload).get_attr("IFLA_AF_SPEC")
        for info in spec.get_attrs("IFLA_BRIDGE_VLAN_INFO") if spec is not None else ():
            flags = info["flags"]
            pvid, untagged = bool(flags & BRIDGE_VLAN_INFO_PVID), bool(flags & BRIDGE_VLAN_INFO_UNTAGGED)
            out.append(BridgeVlan(info["vid"], pvid, untagged))
    return out
