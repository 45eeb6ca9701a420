"""portmap's route lookup for route_localnet, from a /proc/net/route listing (no netlink)."""

import ipaddress
import sys

from plugins.portmap import route_iface


def _hex(addr: str) -> str:
    """How the kernel prints an IPv4 address in /proc/net/route: its big-endian u32 in host byte order."""
    return int.from_bytes(ipaddress.IPv4Address(addr).packed, sys.byteorder).to_bytes(4, "big").hex().upper()


def _table(*routes: tuple[str, str, str, int]) -> str:
    head = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
    return head + "".join(f"{dev}\t{_hex(dst)}\t00000000\t{flags:04X}\t0\t0\t0\t{_hex(mask)}\t0\t0\t0\n"
                          for dev, dst, mask, flags in routes)


TABLE = _table(("eth0", "0.0.0.0", "0.0.0.0", 0x3), ("cni0", "10.88.0.0", "255.255.0.0", 0x1),
               ("cni1", "10.88.5.0", "255.255.255.0", 0x1), ("*", "10.88.5.128", "255.255.255.128", 0x201),
               ("down0", "10.88.5.0", "255.255.255.192", 0x0))


def _iface(addr: str, table: str = TABLE) -> str:
    return route_iface(int(ipaddress.IPv4Address(addr)), table)


def test_longest_prefix_wins():
    assert _iface("10.88.5.7") == "cni1"
    assert _iface("10.88.7.7") == "cni0"
    assert _iface("192.168.1.1") == "eth0"


def test_routes_without_interface_or_not_up_are_skipped():
    assert _iface("10.88.5.200") == "cni1"
    assert _iface("10.88.5.1") == "cni1"


def test_no_route():
    assert _iface("10.88.5.7", _table(("cni0", "10.99.0.0", "255.255.0.0", 0x1))) == ""
