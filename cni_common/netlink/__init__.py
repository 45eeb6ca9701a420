"""The one layer of the suite that speaks netlink (rtnetlink over a plain AF_NETLINK socket).

Usage: open one :class:`Conn` per namespace and pass it to the functions, which act in that namespace::

    with NetNS(args.netns) as ns, netlink.open_conn() as host, netlink.open_conn(ns) as cont:
        br = netlink.ensure_bridge(host, "cni0", mtu=1450)
        host_veth, cont_veth = netlink.setup_veth(host, cont, "eth0", mtu=1450)
        netlink.set_master(host, host_veth.index, br.index)

Messages are encoded and decoded by pyroute2's rtnl message classes (:mod:`.msg`), loaded lazily without
pyroute2's package ``__init__`` (:mod:`.pyroute2_light`), and carried on our own socket. Kernel refusals raise
:class:`NetlinkError` (a CNIError carrying ``errno``); ``LinkNotFound`` is its ENODEV case.
"""

from .addr import Addr, add_addr, del_addr, list_addrs
from .conn import Conn, NetlinkError, open_conn
from .consts import AF_INET, AF_INET6, AF_UNSPEC, RT_SCOPE_HOST, RT_SCOPE_LINK
from .ifinfo import Link
from .link import (
    BridgeVlan,
    LinkNotFound,
    add_bridge_vlan,
    create_link,
    del_bridge_vlan,
    delete_link,
    ensure_bridge,
    ensure_ifb,
    ensure_vxlan,
    find_link,
    get_link,
    get_link_data,
    list_bridge_vlans,
    list_links,
    move_link,
    rename_link,
    set_alias,
    set_allmulti,
    set_bridge_port,
    set_down,
    set_mac,
    set_master,
    set_mtu,
    set_promisc,
    set_txqlen,
    set_up,
    setup_veth,
)
from .neigh import (
    FdbEntry,
    Neighbour,
    delete_fdb,
    delete_neigh,
    list_fdb,
    list_neighbours,
    replace_fdb,
    replace_neigh,
)
from .route import Route, RouteLookup, add_route, add_route_excl, del_route, list_routes, route_get
from .rule import Rule, add_rule, del_rule, list_rules

__all__ = [
    "AF_INET", "AF_INET6", "AF_UNSPEC", "RT_SCOPE_HOST", "RT_SCOPE_LINK",
    "Addr", "BridgeVlan", "Conn", "FdbEntry", "Link", "LinkNotFound",
    "Neighbour", "NetlinkError", "Route", "RouteLookup", "Rule", "add_addr", "add_bridge_vlan", "add_route",
    "add_route_excl", "add_rule", "create_link", "del_addr", "del_bridge_vlan", "del_route", "del_rule",
    "delete_fdb", "delete_link", "delete_neigh", "ensure_bridge", "ensure_ifb", "ensure_vxlan", "find_link",
    "get_link", "get_link_data", "list_addrs", "list_bridge_vlans", "list_fdb", "list_links", "list_neighbours",
    "list_routes", "list_rules", "move_link", "open_conn", "rename_link", "replace_fdb", "replace_neigh",
    "route_get", "set_alias", "set_allmulti", "set_bridge_port", "set_down", "set_mac", "set_master", "set_mtu",
    "set_promisc", "set_txqlen", "set_up", "setup_veth",
]
