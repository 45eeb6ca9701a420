"""The bridge plugin: a veth pair from the container to a Linux bridge on the host, addresses from IPAM.

Drop-in for upstream's ``bridge`` (same config keys and result shape). It reads top-down: the config and its
validation, the ADD steps (bridge, veth, bridge port, IPAM, container addresses, gateway, masquerade), then DEL,
CHECK, STATUS and GC. :func:`attach`, :func:`detach` and :func:`check` take a :class:`BridgeConf` rather than
the request's config, so another plugin (vxlan) attaches its containers with this same code. Beyond upstream:
a failed ADD also removes the veth; DEL removes masquerading even when the netns is gone; GC removes the
masquerading of attachments the runtime no longer knows; ``mtu`` also applies to a bridge that already exists.
"""

from __future__ import annotations

import contextlib
import ipaddress
import sys
import time
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence, Union

from cni_common import config, invoke
from cni_common.errors import BestEffort, CNIError, ErrorCode, PluginCode
from cni_common.log import get_logger
from cni_common.record import field, record
from cni_common.skel import CmdArgs, CNIFuncs, plugin_main
from cni_common.types import DNS, Interface, Result, Route

if TYPE_CHECKING:
    from cni_common.netlink import Conn, Link
    from cni_common.netns import NetNS
    from cni_common.parallel import Task

log = get_logger("bridge")

IPInterface = Union[ipaddress.IPv4Interface, ipaddress.IPv6Interface]
IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]

DEFAULT_BRIDGE = "cni0"
#: How long the host veth may take to become operationally up (upstream's budget).
OPER_UP_TIMEOUT = 2.55
#: How long an IPv6 address may stay tentative before routes via an IPv6 gateway are added.
DAD_TIMEOUT = 5.0
#: Kernel state the ADD waits for usually settles within a few milliseconds (the container's link-local
#: address leaves "tentative" once the veth has carrier): re-check after 1 ms, doubling the pause up to 50 ms.
#: Upstream sleeps 50 ms before its first re-check, which every dual-stack pod paid.
FIRST_PAUSE = 0.001
MAX_PAUSE = 0.05
#: The kernel's largest MTU for any Ethernet-like link (ETH_MAX_MTU): bridges and veths refuse more. A larger
#: value used to reach the netlink encoder and crash there (code 999).
MAX_MTU = 65535
_DEFAULT_NETS = {4: ipaddress.ip_network("0.0.0.0/0"), 6: ipaddress.ip_network("::/0")}


@record
class BridgeConf:
    """The plugin's part of the network config, defaults applied and validated."""

    network: str
    bridge: str = DEFAULT_BRIDGE
    is_gateway: bool = False
    is_default_gateway: bool = False
    force_address: bool = False
    ip_masq: bool = False
    ip_masq_backend: Optional[str] = None
    mtu: int = 0
    hairpin: bool = False
    promisc: bool = False
    vlan: int = 0
    vlan_trunk: list[int] = field(default_factory=list)
    preserve_default_vlan: bool = False
    enable_dad: bool = False
    macspoofchk: bool = False
    disable_container_interface: bool = False
    port_isolation: bool = False
    ipam_type: str = ""
    dns: DNS = field(default_factory=DNS)
    mac: str = ""

    @property
    def vlan_filtering(self) -> bool:
        return self.vlan != 0 or bool(self.vlan_trunk)


def load_conf(conf: dict[str, Any], cni_args: Optional[dict[str, str]] = None) -> BridgeConf:
    """Parse and validate; the container MAC comes from CNI_ARGS < args.cni.mac < runtimeConfig.mac.

    Without ``cni_args`` (DEL, GC, STATUS) the MAC is not read: a DEL must not fail on arguments it ignores.
    Keys of the wrong JSON type are refused in every verb, as Go's bridge refuses them (it decodes the whole
    config first, DEL included).
    """
    config.check_netconf_types(conf)
    config.get_str(config.runtime_config(conf), "mac", where="runtimeConfig")
    config.get_str(config.args_cni(conf), "mac", where="args.cni")
    c = BridgeConf(
        network=config.get_str(conf, "name"),
        bridge=config.get_str(conf, "bridge") or DEFAULT_BRIDGE,
        is_gateway=config.get_bool(conf, "isGateway"),
        is_default_gateway=config.get_bool(conf, "isDefaultGateway"),
        force_address=config.get_bool(conf, "forceAddress"),
        ip_masq=config.get_bool(conf, "ipMasq"),
        ip_masq_backend=config.optional_str(conf, "ipMasqBackend"),
        mtu=config.get_int(conf, "mtu"),
        hairpin=config.get_bool(conf, "hairpinMode"),
        promisc=config.get_bool(conf, "promiscMode"),
        vlan=config.get_int(conf, "vlan"),
        vlan_trunk=_vlan_trunk(config.get_list(conf, "vlanTrunk")),
        preserve_default_vlan=config.get_bool(conf, "preserveDefaultVlan"),
        enable_dad=config.get_bool(conf, "enabledad"),
        macspoofchk=config.get_bool(conf, "macspoofchk"),
        disable_container_interface=config.get_bool(conf, "disableContainerInterface"),
        port_isolation=config.get_bool(conf, "portIsolation"),
        ipam_type=config.get_str(config.get_dict(conf, "ipam"), "type", where="ipam"),
        dns=DNS.from_dict(config.get_dict(conf, "dns")),
    )
    if c.is_default_gateway:
        c.is_gateway = True
    if c.hairpin and c.promisc:
        raise _invalid("cannot set hairpin mode and promiscuous mode at the same time")
    if not 0 <= c.vlan <= 4094:
        raise _invalid(f"invalid VLAN ID {c.vlan} (must be between 0 and 4094)")
    if c.vlan and c.vlan_trunk:
        raise _invalid("cannot set vlan and vlanTrunk at the same time")
    if c.disable_container_interface and c.ipam_type:
        raise _invalid("cannot use IPAM when disableContainerInterface flag is set")
    if not 0 <= c.mtu <= MAX_MTU:
        raise _invalid(f"invalid mtu {c.mtu} (must be between 0 and {MAX_MTU})")
    if cni_args is not None:
        c.mac = requested_mac(conf, cni_args)
    return c


def requested_mac(conf: dict[str, Any], cni_args: dict[str, str]) -> str:
    """The container MAC asked for (lower case, "" for none): CNI_ARGS ``MAC`` < args.cni.mac <
    runtimeConfig.mac. Other CNI_ARGS keys are ignored, ``IgnoreUnknown`` or not: every plugin of a chain and
    its IPAM see the same CNI_ARGS (host-local's ``IP``, Kubernetes' ``K8S_POD_*``), and upstream's refusal
    of unknown keys is a classic source of failed ADDs."""
    mac = cni_args.get("MAC", "")
    mac = config.get_str(config.args_cni(conf), "mac", mac, where="args.cni") or mac
    mac = config.get_str(config.runtime_config(conf), "mac", mac, where="runtimeConfig") or mac
    if mac:
        _check_mac(mac)
    return mac.lower()


def _invalid(msg: str) -> CNIError:
    return CNIError(ErrorCode.INVALID_CONFIG, msg)


def _check_mac(mac: str) -> None:
    from cni_common.netlink.attrs import mac_to_bytes

    try:
        mac_to_bytes(mac)
    except ValueError as exc:
        raise _invalid(f"invalid MAC address {mac!r}") from exc


def _vlan_trunk(entries: list[Any]) -> list[int]:
    """The tagged VIDs of ``vlanTrunk`` ({id} or {minID, maxID} each), deduplicated and sorted."""
    vids: set[int] = set()
    for entry in entries:
        if not isinstance(entry, dict):
            raise _invalid(f"invalid vlanTrunk entry {entry!r}")
        lo = config.get_typed(entry, "minID", int, None, "vlanTrunk")
        hi = config.get_typed(entry, "maxID", int, None, "vlanTrunk")
        if lo is not None or hi is not None:
            if lo is None or not 1 <= lo <= 4094:
                raise _invalid("incorrect trunk minID parameter")
            if hi is None or not 1 <= hi <= 4094:
                raise _invalid("incorrect trunk maxID parameter")
            if hi < lo:
                raise _invalid("minID is greater than maxID in trunk parameter")
            vids.update(range(lo, hi + 1))
        vid = config.get_typed(entry, "id", int, None, "vlanTrunk")
        if vid is not None:
            if not 1 <= vid <= 4094:
                raise _invalid("incorrect trunk id parameter")
            vids.add(vid)
    return sorted(vids)


# ---------------------------------------------------------------------------------------------------- ADD


def cmd_add(args: CmdArgs) -> Result:
    conf = load_conf(args.conf, args.cni_args())
    if conf.ipam_type:
        # Before the first change to the node: a missing CNI_PATH (4) or IPAM binary (104) found only at the
        # delegation would leave a bridge this ADD created.
        invoke.find_in_path(conf.ipam_type, args.path)
    return attach(args, conf)


def attach(args: CmdArgs, conf: BridgeConf) -> Result:
    """Create the attachment ``conf`` describes; on any failure everything made so far is undone (veth, IPAM
    lease, rules). IPAM (``conf.ipam_type``) is delegated ``args`` as they are: their stdin is its request."""
    from cni_common import netlink as nl
    from cni_common.netns import NetNS

    with NetNS(args.netns) as cont_ns, nl.open_conn() as host, nl.open_conn(cont_ns) as cont, \
            contextlib.ExitStack() as undo:
        br = _ensure_bridge(host, conf)
        host_veth, cont_veth = nl.setup_veth(host, cont, args.ifname, mtu=conf.mtu, mac=conf.mac)
        undo.callback(_delete_quietly, cont, args.ifname)
        _attach_port(host, br, host_veth, hairpin=conf.hairpin, isolated=conf.port_isolation, vlan=conf.vlan,
                     trunk=conf.vlan_trunk, preserve_default_vlan=conf.preserve_default_vlan)
        if conf.macspoofchk:
            from cni_common import netfilter

            undo.callback(_quietly, netfilter.teardown_macspoofchk, args.container_id, args.ifname)
            netfilter.setup_macspoofchk(host_veth.name, cont_veth.mac, args.container_id, args.ifname)
        result = Result(interfaces=[Interface(br.name, br.mac), Interface(host_veth.name, host_veth.mac),
                                    Interface(args.ifname, cont_veth.mac, sandbox=args.netns)])
        if conf.ipam_type:
            ipam = invoke.delegate("ADD", conf.ipam_type, args)
            undo.callback(invoke.delegate_del_quietly, conf.ipam_type, args)
            _add_layer3(args, conf, host, cont, cont_ns, br, cont_veth, ipam, result, undo)
        elif not conf.disable_container_interface:
            nl.set_up(cont, cont_veth.index)
        if not (conf.is_gateway and conf.ipam_type) or conf.vlan:
            # The result reports the bridge MAC and CHECK verifies it: pin it as the gateway path does (that runs
            # only with IPAM, and pins <bridge>.<vlan> instead when vlan is set), or it follows the lowest port MAC
            # and CHECK of earlier pods fails once a pod with a lower MAC joins.
            _pin_mac(host, br.index)
        if not conf.disable_container_interface:
            _wait_oper_up(host, host_veth)
        host_veth, br = nl.get_link(host, host_veth.index), nl.get_link(host, br.index)
        result.interfaces[0].mac, result.interfaces[1].mac = br.mac, host_veth.mac
        if not conf.dns.is_empty():
            result.dns = conf.dns
        undo.pop_all()
    return result


def _ensure_bridge(host: Conn, conf: BridgeConf) -> Link:
    """The configured bridge, up, with router advertisements ignored, and ``mtu`` (when set) applied even to a
    bridge that existed (upstream sets it only on creation; an overlay whose MTU changed needs it)."""
    from cni_common import netlink as nl

    br = nl.ensure_bridge(host, conf.bridge, mtu=conf.mtu, vlan_filtering=conf.vlan_filtering, promisc=conf.promisc)
    if conf.mtu and br.mtu != conf.mtu:
        nl.set_mtu(host, br.index, conf.mtu)
        br = nl.get_link(host, br.index)
    # We own the routes of the bridge: router advertisements must not add any.
    _sysctl_best_effort(0, "ipv6", "conf", conf.bridge, "accept_ra")
    return br


def _attach_port(host: Conn, br: Link, port: Link, *, hairpin: bool = False, isolated: bool = False, vlan: int = 0,
                 trunk: Sequence[int] = (), preserve_default_vlan: bool = False) -> None:
    """Make ``port`` a port of the bridge with the given hairpin, isolation and VLANs."""
    from cni_common import netlink as nl

    _sysctl_best_effort(0, "ipv6", "conf", port.name, "accept_ra")
    try:
        nl.set_master(host, port.index, br.index)
        if hairpin or isolated:
            nl.set_bridge_port(host, port.index, hairpin=hairpin or None, isolated=isolated or None)
        if vlan or trunk:
            _program_vlans(host, port.index, vlan, trunk, preserve_default_vlan)
    except CNIError as exc:
        raise CNIError(PluginCode.LINK_FAILURE, f"failed to connect {port.name!r} to bridge {br.name!r}",
                       str(exc)) from exc


def _program_vlans(host: Conn, index: int, vlan: int, trunk: Sequence[int], preserve_default: bool) -> None:
    """Access VLAN: PVID + untagged; trunk: tagged VIDs, plus native VLAN 1 when no access VLAN is given."""
    from cni_common import netlink as nl

    if not preserve_default:
        for existing in nl.list_bridge_vlans(host, index):
            nl.del_bridge_vlan(host, index, existing.vid)
    if vlan:
        nl.add_bridge_vlan(host, index, vlan, pvid=True, untagged=True)
    elif trunk:
        nl.add_bridge_vlan(host, index, 1, pvid=True, untagged=True)
    for vid in trunk:
        nl.add_bridge_vlan(host, index, vid)


def _add_layer3(args: CmdArgs, conf: BridgeConf, host: Conn, cont: Conn, cont_ns: NetNS, br: Link, cont_veth: Link,
                ipam: Optional[Result], result: Result, undo: contextlib.ExitStack) -> None:
    """Merge the IPAM result, configure the container side, put gateways on the bridge, masquerade."""
    if ipam is None or not ipam.ips:
        raise CNIError(ErrorCode.INTERNAL, "IPAM plugin returned missing IP config")
    result.ips, result.routes, result.dns = ipam.ips, ipam.routes, ipam.dns
    gateways = _calc_gateways(conf, result)
    masquerade = _start_masquerade(args, conf, result, undo) if conf.ip_masq else None
    with cont_ns.entered():
        if conf.enable_dad:
            _sysctl_best_effort(1, "ipv6", "conf", args.ifname, "enhanced_dad")
            _sysctl_best_effort(1, "ipv6", "conf", args.ifname, "accept_dad")
        else:
            _sysctl_best_effort(0, "ipv6", "conf", args.ifname, "accept_dad")
        _sysctl_best_effort(1, "ipv4", "conf", args.ifname, "arp_notify")
        _configure_iface(cont, cont_veth.index, args.ifname, result)
    if conf.is_gateway:
        gw_link = br if conf.vlan == 0 else _ensure_vlan_gateway_link(host, conf, br)
        for gw in gateways:
            _ensure_addr(host, gw_link, gw, conf.force_address)
        from cni_common import sysctl

        if any(gw.version == 4 for gw in gateways):
            sysctl.ensure(1, "ipv4", "ip_forward")
        if any(gw.version == 6 for gw in gateways):
            sysctl.ensure(1, "ipv6", "conf", "all", "forwarding")
    if masquerade is not None:
        masquerade.wait()


def _start_masquerade(args: CmdArgs, conf: BridgeConf, result: Result, undo: contextlib.ExitStack) -> Task:
    """Masquerade the container's addresses on a thread, while the container side is configured (the rules
    need only the addresses; the restores mostly wait). A failed ADD waits for it, then removes the rules."""
    from cni_common import netfilter
    from cni_common.parallel import Task

    addrs = [ip.address for ip in result.ips]
    backend = netfilter.select_backend(conf.ip_masq_backend)
    undo.callback(_quietly, netfilter.teardown_masquerade, conf.network, args.container_id, args.ifname, addrs)
    task = Task(netfilter.setup_masquerade, backend, conf.network, args.container_id, args.ifname, addrs)
    undo.callback(_quietly, task.wait)
    return task


def _calc_gateways(conf: BridgeConf, result: Result) -> list[IPInterface]:
    """Point every IP at the container interface, fill missing gateways (network + 1 when isGateway), add
    one default route per family for isDefaultGateway (unless IPAM gave one with a gateway); returns the
    gateway addresses (with the IP's prefix) to put on the bridge.
    """
    gateways: list[IPInterface] = []
    default_done: set[int] = set()
    for ipc in result.ips:
        ipc.interface = 2
        fam = ipc.address.version
        if ipc.gateway is None and conf.is_gateway:
            ipc.gateway = ipc.address.network.network_address + 1
        if conf.is_default_gateway and fam not in default_done:
            if not any(r.gw is not None and r.dst == _DEFAULT_NETS[fam] for r in result.routes):
                result.routes.append(Route(dst=_DEFAULT_NETS[fam], gw=ipc.gateway))
            default_done.add(fam)
        if conf.is_gateway and ipc.gateway is not None:
            gateways.append(ipaddress.ip_interface(f"{ipc.gateway}/{ipc.address.network.prefixlen}"))
    return gateways


def _configure_iface(cont: Conn, index: int, ifname: str, result: Result) -> None:
    """Upstream's ConfigureIface: IPv6 sysctls, addresses, link up, wait for DAD, routes (ECMP append)."""
    from cni_common import netlink as nl

    ips = [ip for ip in result.ips if ip.interface == 2]
    if any(ip.address.version == 6 for ip in ips):
        _sysctl_best_effort(0, "ipv6", "conf", "lo", "disable_ipv6")
        _sysctl_best_effort(0, "ipv6", "conf", ifname, "disable_ipv6")
        _sysctl_best_effort(1, "ipv6", "conf", ifname, "keep_addr_on_down")
    first_gw: dict[int, IPAddress] = {}
    for ip in ips:
        nl.add_addr(cont, index, ip.address)
        if ip.gateway is not None:
            first_gw.setdefault(ip.gateway.version, ip.gateway)
    nl.set_up(cont, index)
    if 6 in first_gw:
        _settle_dad(cont, index, ifname)
    for r in result.routes:
        gw = r.gw if r.gw is not None else first_gw.get(r.dst.version)
        nl.add_route(cont, nl.Route(r.dst, gw, oif=index, priority=r.priority, table=r.table or 254,
                                    scope=r.scope, mtu=r.mtu or 0, advmss=r.advmss or 0))


def _settle_dad(cont: Conn, index: int, ifname: str) -> None:
    """Wait until no IPv6 address of the link is tentative, so routes via an IPv6 gateway can be added."""
    from cni_common import netlink as nl

    def settled() -> bool:
        addrs = nl.list_addrs(cont, index, nl.AF_INET6)
        failed = [str(a.address) for a in addrs if a.dad_failed]
        if failed:
            raise CNIError(PluginCode.ADDRESS_UNAVAILABLE, f"DAD failed on {ifname!r} for {', '.join(failed)}")
        return not any(a.tentative for a in addrs)

    if not _wait_until(settled, DAD_TIMEOUT) and nl.get_link(cont, index).up:
        raise CNIError(ErrorCode.INTERNAL, f"IPv6 addresses of {ifname!r} still tentative after {DAD_TIMEOUT:g} s")


def _wait_until(ready: Callable[[], bool], timeout: float) -> bool:
    """Check ``ready`` now and then after 1, 2, 4... ms (at most 50 ms apart) until it is true; False when
    ``timeout`` seconds passed first."""
    deadline = time.monotonic() + timeout
    pause = FIRST_PAUSE
    while not ready():
        if time.monotonic() >= deadline:
            return False
        time.sleep(pause)
        pause = min(pause * 2, MAX_PAUSE)
    return True


def _ensure_vlan_gateway_link(host: Conn, conf: BridgeConf, br: Link) -> Link:
    """The ``<bridge>.<vlan>`` veth that holds the gateway address of an access-VLAN network."""
    from cni_common import netlink as nl

    name = f"{conf.bridge}.{conf.vlan}"
    link = nl.find_link(host, name)
    if link is None:
        # Both ends live in the host: `name` keeps the address, its peer becomes the bridge port.
        gw_end, port = nl.setup_veth(host, host, name, mtu=br.mtu)
        _attach_port(host, br, port, vlan=conf.vlan, preserve_default_vlan=conf.preserve_default_vlan)
        link = nl.get_link(host, gw_end.index)
        nl.set_up(host, link.index)
    return link


def _ensure_addr(host: Conn, link: Link, addr: IPInterface, force: bool) -> None:
    """Put the gateway ``addr`` on the bridge (upstream's ensureAddr), then pin the bridge's MAC.

    IPv4 allows one address (a different one is an error unless forceAddress); IPv6 allows several that do not
    overlap. EEXIST is fine: pods starting together race to add the same gateway.
    """
    from cni_common import netlink as nl

    for have in nl.list_addrs(host, link.index, nl.AF_INET if addr.version == 4 else nl.AF_INET6):
        if have.address == addr:
            return
        overlaps = have.address.network.overlaps(addr.network)
        if addr.version == 4 or overlaps:
            if not force:
                raise CNIError(PluginCode.ADDRESS_UNAVAILABLE,
                               f"{link.name!r} already has an IP address different from {addr}")
            nl.del_addr(host, link.index, have.address)
    # IPv6: no DAD for the gateway (upstream does DAD here). The address is this network's own gateway; with DAD
    # it stays tentative for ~1 s after it is added, and the first pods' IPv6 traffic through it fails meanwhile.
    nl.add_addr(host, link.index, addr, exist_ok=True, nodad=addr.version == 6)
    _pin_mac(host, link.index)


def _pin_mac(host: Conn, index: int) -> None:
    """Set the bridge's current MAC as its own: a bridge made by someone else may still follow the lowest port
    MAC as pods come and go (ours are created with a fixed one). Read now, not at the start of the ADD: ports
    attached since then may have changed it, and pinning a stale MAC would undo another pod's pin."""
    from cni_common import netlink as nl

    nl.set_mac(host, index, nl.get_link(host, index).mac)


def _wait_oper_up(host: Conn, host_veth: Link) -> None:
    from cni_common import netlink as nl

    if not _wait_until(lambda: nl.get_link(host, host_veth.index).oper_up, OPER_UP_TIMEOUT):
        raise CNIError(PluginCode.LINK_FAILURE, f"bridge port in error state: {host_veth.name}")


def _sysctl_best_effort(value: int, *parts: str) -> None:
    """Sysctls upstream sets without checking: a host with IPv6 disabled has no ipv6/conf to write."""
    from cni_common import sysctl

    try:
        sysctl.write(value, *parts)
    except CNIError as exc:
        log.debug("ignored: %s", exc)


def _delete_quietly(conn: Conn, ifname: str) -> None:
    """Rollback: remove the container veth (its host peer goes with it)."""
    from cni_common import netlink as nl

    _quietly(nl.delete_link, conn, ifname)


def _quietly(fn: Callable[..., Any], *args: Any) -> None:
    """Run a rollback step; its failure is logged, the error that caused the rollback is what we report."""
    try:
        fn(*args)
    except Exception as exc:  # noqa: BLE001 - a rollback step must not mask the original error
        log.warning("rollback step %s failed: %s", getattr(fn, "__name__", fn), exc)


# ---------------------------------------------------------------------------------------------------- DEL


def cmd_del(args: CmdArgs) -> None:
    """Best-effort and idempotent: delete the veth, always release IPAM, remove macspoofchk and masquerading.

    A gone or empty netns only skips the veth; the rules are still removed (found by their names and comments,
    so the container's addresses are not needed).
    """
    detach(args, load_conf(args.conf))


def detach(args: CmdArgs, conf: BridgeConf) -> None:
    """Undo :func:`attach` for ``args`` (cmd_del's rules); IPAM is delegated ``args`` as they are.

    The masquerade teardown runs while the kernel deletes the veth (both mostly wait: for RCU grace periods,
    for ``ip(6)tables-restore``), as soon as the container's addresses are known.
    """
    from cni_common.parallel import Task

    steps = BestEffort()
    masquerade: Optional[Task] = None

    def start_masquerade_teardown(addrs: list[IPInterface]) -> None:
        nonlocal masquerade
        if conf.ip_masq and masquerade is None:
            from cni_common import netfilter

            masquerade = Task(netfilter.teardown_masquerade, conf.network, args.container_id, args.ifname, addrs)

    with steps:
        _delete_container_link(args, before_delete=start_masquerade_teardown)
    start_masquerade_teardown([])  # no link (or no netns): the rules are found by their names and comments
    if conf.ipam_type:
        with steps:
            invoke.delegate("DEL", conf.ipam_type, args)
    if conf.macspoofchk:
        from cni_common import netfilter

        with steps:
            netfilter.teardown_macspoofchk(args.container_id, args.ifname)
    if masquerade is not None:
        with steps:
            masquerade.wait()
    steps.raise_if_failed("bridge DEL failed")


def _delete_container_link(args: CmdArgs, before_delete: Callable[[list[IPInterface]], None]) -> None:
    """Delete ``CNI_IFNAME`` in the netns; ``before_delete`` first gets its global unicast addresses (the
    masquerade rules match them) and is called from the host's namespace."""
    if not args.netns:
        return
    from cni_common import netlink as nl
    from cni_common.netns import NetNS, NetNSGone

    try:
        ns = NetNS(args.netns)
    except NetNSGone:
        return
    with ns, nl.open_conn(ns) as cont:
        link = nl.find_link(cont, args.ifname)
        if link is None:
            return
        before_delete([a.address for a in nl.list_addrs(cont, link.index) if a.is_global_unicast])
        nl.delete_link(cont, link.index)


# ---------------------------------------------------------------------------------------------------- CHECK


def cmd_check(args: CmdArgs) -> None:
    conf = load_conf(args.conf, args.cni_args())
    check(args, conf, prev_result(args))


def prev_result(args: CmdArgs) -> Result:
    """The request's ``prevResult`` (required by CHECK)."""
    prev_raw = args.conf.get("prevResult")
    if not prev_raw:
        raise CNIError(ErrorCode.INVALID_CONFIG, "Required prevResult missing")
    return Result.from_dict(prev_raw, args.cni_version)


def check(args: CmdArgs, conf: BridgeConf, prev: Result) -> None:
    """IPAM CHECK (delegated ``args`` as they are), then verify the bridge, both veth ends, and ``prev``'s
    addresses and routes."""
    from cni_common import netlink as nl
    from cni_common.netns import NetNS

    if conf.ipam_type:
        invoke.delegate("CHECK", conf.ipam_type, args)
    cont_idx = next((i for i, itf in enumerate(prev.interfaces) if itf.name == args.ifname and itf.sandbox), None)
    if cont_idx is None:
        raise CNIError(ErrorCode.INVALID_CONFIG, f"prevResult has no container interface {args.ifname!r}")
    cont_if = prev.interfaces[cont_idx]
    br_if = next((i for i in prev.interfaces if i.name == conf.bridge and not i.sandbox), None)
    with NetNS(args.netns) as cont_ns, nl.open_conn() as host, nl.open_conn(cont_ns) as cont:
        br = nl.find_link(host, conf.bridge)
        if br is None or br.kind != "bridge":
            raise _check_failed(f"bridge {conf.bridge!r} not found or not a bridge")
        if br_if is not None and br_if.mac and br_if.mac.lower() != br.mac:
            raise _check_failed(f"bridge {conf.bridge!r} has MAC {br.mac}, expected {br_if.mac}")
        if br.promisc != conf.promisc:
            raise _check_failed(f"bridge {conf.bridge!r} promiscuous mode is {br.promisc}, expected {conf.promisc}")
        link = nl.find_link(cont, args.ifname)
        if link is None or link.kind != "veth":
            raise _check_failed(f"container interface {args.ifname!r} not found or not a veth")
        if cont_if.mac and cont_if.mac.lower() != link.mac:
            raise _check_failed(f"interface {args.ifname!r} has MAC {link.mac}, expected {cont_if.mac}")
        peer = nl.find_link(host, link.peer_index)
        if peer is None or peer.kind != "veth" or peer.peer_index != link.index or peer.master != br.index:
            raise _check_failed(f"host veth of {args.ifname!r} not found or not attached to {conf.bridge!r}")
        _check_ips_and_routes(cont, link.index, args.ifname, cont_idx, prev)


def _check_ips_and_routes(cont: Conn, index: int, ifname: str, cont_idx: int, prev: Result) -> None:
    from cni_common import netlink as nl

    have = {a.address for a in nl.list_addrs(cont, index)}
    for ip in prev.ips:
        if ip.interface in (None, cont_idx) and ip.address not in have:
            raise _check_failed(f"address {ip.address} not found on {ifname!r}")
    routes = nl.list_routes(cont, table=None)
    for r in prev.routes:
        table = r.table or 254
        if not any(x.dst == r.dst and x.table == table and (r.gw is None or x.gateway == r.gw) for x in routes):
            raise _check_failed(f"route {r.dst} via {r.gw} not found in the container")


def _check_failed(msg: str) -> CNIError:
    return CNIError(ErrorCode.INTERNAL, msg)


# ---------------------------------------------------------------------------------------------------- STATUS, GC


def cmd_status(args: CmdArgs) -> None:
    """Ready when IPAM is: STATUS is forwarded to it (and its error returned)."""
    conf = load_conf(args.conf)
    if conf.ipam_type:
        invoke.delegate("STATUS", conf.ipam_type, args)


def cmd_gc(args: CmdArgs) -> None:
    """Remove the masquerading of attachments not in ``cni.dev/valid-attachments``, then forward GC to IPAM."""
    conf = load_conf(args.conf)
    steps = BestEffort()
    valid = config.valid_attachments(args.conf)
    if valid is not None:
        from cni_common import netfilter

        with steps:
            netfilter.gc_masquerade(conf.network, valid)
    if conf.ipam_type:
        with steps:
            invoke.delegate("GC", conf.ipam_type, args)
    steps.raise_if_failed("bridge GC failed")


def main(**streams: Any) -> int:
    """``streams`` (environ, stdin, stdout, stderr) let tests drive the plugin in-process."""
    return plugin_main(CNIFuncs(add=cmd_add, delete=cmd_del, check=cmd_check, status=cmd_status, gc=cmd_gc),
                       about="CNI bridge plugin (Python)", **streams)


if __name__ == "__main__":
    sys.exit(main())
