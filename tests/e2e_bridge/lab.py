"""Building blocks for the bridge end-to-end tests: configs, a "remote" network, state readers, probes.

A test "node" is the `host_ns` namespace: the bridge, the masquerade rules and the IPAM files all live
there (IPAM files under the test's tmp_path). A "remote" namespace hangs off the node through a veth of its
own with an address of the node (`NODE_V4`/`NODE_V6`), so traffic from a container to the remote is routed
by the node, exactly where ipMasq applies.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from tests.helpers import net
from tests.helpers.netns import Netns

#: Spec versions libcni 1.1.2 (the driver) can read results of; 1.1.0 is driven with run_plugin.
LIBCNI_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0")

# The node's side of the link to the remote namespace, and the remote's side (documentation ranges).
NODE_V4, REMOTE_V4 = "192.0.2.1", "192.0.2.2"
NODE_V6, REMOTE_V6 = "2001:db8:e::1", "2001:db8:e::2"


def bridge_conflist(name: str, bridge: str, data_dir: Path, *, version: str = "1.0.0",
                    subnets: Iterable[str] = ("10.77.0.0/24", "fd77::/64"), ipam: dict[str, Any] | None = None,
                    **options: Any) -> dict[str, Any]:
    """A one-plugin conflist: bridge with `options`, host-local over `subnets` (one range set each)."""
    if ipam is None:
        ipam = {"type": "host-local", "dataDir": str(data_dir), "ranges": [[{"subnet": s}] for s in subnets]}
    return {"cniVersion": version, "name": name,
            "plugins": [{"type": "bridge", "bridge": bridge, **options, "ipam": ipam}]}


def plugin_conf(conflist: dict[str, Any], index: int = 0) -> dict[str, Any]:
    """What a runtime sends to plugin `index` of `conflist`: its entry plus name and cniVersion."""
    return {"cniVersion": conflist["cniVersion"], "name": conflist["name"], **conflist["plugins"][index]}


def leases(data_dir: Path, network: str) -> list[str]:
    """IPs host-local holds for `network` (its disk format: one file per IP, plus lock/last_reserved_ip.N)."""
    d = data_dir / network
    return sorted(p.name for p in d.iterdir() if p.name[0].isdigit() or ":" in p.name) if d.is_dir() else []


def ipt_masq_rules(ns: Netns, network: str) -> list[str]:
    """`iptables/ip6tables -t nat -S` lines carrying `network`'s masquerade comment (both families)."""
    lines: list[str] = []
    for tool in ("iptables", "ip6tables"):
        out = ns.run([tool, "-t", "nat", "-S"], check=False).stdout
        lines += [ln for ln in out.splitlines() if f'name: \\"{network}\\"' in ln]
    return lines


def ipt_nat_chains(ns: Netns) -> list[str]:
    """Names of the per-container `CNI-<hash>` chains in the nat tables (both families)."""
    chains: list[str] = []
    for tool in ("iptables", "ip6tables"):
        out = ns.run([tool, "-t", "nat", "-S"], check=False).stdout
        chains += [ln.split()[1] for ln in out.splitlines() if ln.startswith("-N CNI-")]
    return chains


def nft_masq_rules(ns: Netns) -> list[str]:
    """Rule lines of `inet cni_plugins_masquerade` chain masq_checks ([] when the table is absent)."""
    out = ns.run(["nft", "list", "chain", "inet", "cni_plugins_masquerade", "masq_checks"], check=False).stdout
    return [ln.strip() for ln in out.splitlines() if "masquerade" in ln and "comment" in ln]


def veths(ns: Netns) -> list[str]:
    """Names of the veth links in `ns`."""
    return [lk["ifname"] for lk in net.links(ns) if lk.get("linkinfo", {}).get("info_kind") == "veth"]


def bridge_ports(ns: Netns, bridge: str) -> list[dict[str, Any]]:
    """Links of `ns` enslaved to `bridge` (with details)."""
    return [lk for lk in net.links(ns) if lk.get("master") == bridge]


def wait_until(what: str, probe: Callable[[], bool], timeout: float = 10) -> None:
    """Poll `probe` until it holds (a readiness wait, e.g. for IPv6 DAD); raise naming `what` if never."""
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def wait_dad(ns: Netns, ifname: str) -> None:
    """Wait until no IPv6 address of `ifname` in `ns` is tentative (the bridge keeps DAD on)."""
    def settled() -> bool:
        return not any(a.get("tentative") for dev in net.addrs(ns, ifname) for a in dev.get("addr_info", []))
    wait_until(f"DAD on {ifname} in {ns.name}", settled)


def make_remote(host: Netns, remote: Netns, routes_back: Iterable[str] = ()) -> None:
    """Wire `remote` to the node `host` (veth cnteremote <-> eth0) with NODE_*/REMOTE_* addresses.

    `routes_back` are the container subnets the remote routes via the node: needed only to answer
    un-masqueraded traffic (masqueraded traffic comes from the node's own address).
    """
    host.ip("link", "add", "cnteremote", "type", "veth", "peer", "name", "eth0", "netns", remote.name)
    host.ip("addr", "add", f"{NODE_V4}/24", "dev", "cnteremote")
    host.ip("addr", "add", f"{NODE_V6}/64", "dev", "cnteremote", "nodad")
    host.ip("link", "set", "cnteremote", "up")
    remote.ip("addr", "add", f"{REMOTE_V4}/24", "dev", "eth0")
    remote.ip("addr", "add", f"{REMOTE_V6}/64", "dev", "eth0", "nodad")
    remote.ip("link", "set", "eth0", "up")
    remote.ip("link", "set", "lo", "up")
    for subnet in routes_back:
        remote.ip("route", "add", subnet, "via", NODE_V6 if ":" in subnet else NODE_V4)


def result_ips(result: dict[str, Any]) -> list[str]:
    """Bare addresses (no prefix) of a CNI result's `ips`."""
    return [ip["address"].split("/")[0] for ip in result.get("ips", [])]


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=1, sort_keys=True)


_DF_PING = r"""
import os, socket, struct, sys
dst, size = sys.argv[1], int(sys.argv[2])
def csum(b):
    b += b"\0" * (len(b) % 2)
    s = sum(struct.unpack(f"!{len(b)//2}H", b)); s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.setsockopt(socket.IPPROTO_IP, 10, 2)  # IP_MTU_DISCOVER = IP_PMTUDISC_DO: set DF, never fragment
s.settimeout(2)
ident, payload = os.getpid() & 0xffff, b"x" * (size - 28)
hdr = struct.pack("!BBHHH", 8, 0, 0, ident, 1)
s.sendto(struct.pack("!BBHHH", 8, 0, csum(hdr + payload), ident, 1) + payload, (dst, 0))
while True:
    data, peer = s.recvfrom(65535)
    ihl = (data[0] & 0x0f) * 4
    if peer[0] == dst and data[ihl] == 0 and struct.unpack("!H", data[ihl + 4:ihl + 6])[0] == ident:
        print(len(data)); break
"""


def df_ping(ns: Netns, address: str, size: int) -> str:
    """One IPv4 echo of `size` bytes (IP packet) with DF set, from `ns`.

    Returns the reply's IP length as text, or the error text (e.g. "Message too long", "timed out").
    busybox ping cannot set DF, hence a raw socket.
    """
    proc = ns.run([sys.executable, "-c", _DF_PING, address, str(size)], check=False)
    return proc.stdout.strip() if proc.returncode == 0 else proc.stderr.strip().splitlines()[-1]


def macspoofchk_rules(ns: Netns) -> list[str]:
    """Lines of `bridge nat` that belong to an attachment (its chains and rules, not the shared base chain).

    Like upstream, teardown leaves the empty table and its PREROUTING base chain in place.
    """
    out = ns.run(["nft", "list", "table", "bridge", "nat"], check=False).stdout
    return [ln.strip() for ln in out.splitlines() if "cni-br-iface" in ln or "macspoofchk" in ln]
