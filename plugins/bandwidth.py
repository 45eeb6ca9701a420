"""The bandwidth plugin (chained after a veth plugin such as bridge or ptp), as upstream's plugins/meta/bandwidth.

Config (upstream keys): ``ingressRate``, ``ingressBurst``, ``egressRate``, ``egressBurst`` (rates in bits/s,
bursts in bits), or the same keys in ``runtimeConfig.bandwidth`` (capability ``bandwidth``: what containerd and
CRI-O send for the ``kubernetes.io/ingress-bandwidth`` and ``egress-bandwidth`` pod annotations). If any of the
four keys is at the top level, even as 0 or null, runtimeConfig is ignored, as upstream does. "Ingress" is
traffic to the container, "egress" from it. The kernel work is :mod:`cni_common.shaping`.

Beyond upstream: no crash without prevResult; a rate under 8 bit/s (0 bytes/s, which upstream passes to the
kernel as a broken bucket) is refused; a repeated ADD converges instead of failing with "file exists"; a failed
ADD leaves nothing; DEL also removes the host veth's qdiscs; GC removes this network's stale ifb devices.
"""

from __future__ import annotations

import sys

from cni_common import config as cfg
from cni_common.errors import invalid_config
from cni_common.record import record
from cni_common.skel import CmdArgs, CNIFuncs, plugin_main
from cni_common.types import Result
from cni_common.version import about_line

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~4 ms per plugin process)
if TYPE_CHECKING:
    from typing import Any, Optional

    from cni_common.shaping import Limit

#: Upstream supports 0.3.0 and later (a 0.2.0 result has no interfaces to find the host veth in).
SUPPORTED = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
KEYS = ("ingressRate", "ingressBurst", "egressRate", "egressBurst")
UINT64_MAX = (1 << 64) - 1
#: Upstream refuses a burst of burst/8 >= 2^32-1 bytes: the kernel's buffer and limit are 32-bit.
MAX_BURST_BYTES = 0xFFFFFFFF


@record
class BandwidthConf:
    """The parsed config: each direction's limit (None: unlimited) and the previous result."""

    ingress: Optional[Limit]
    egress: Optional[Limit]
    prev_result: Optional[Result]


def _uint64(entry: dict[str, Any], key: str, where: str) -> int:
    """A uint64 as Go decodes one: a non-negative JSON integer below 2^64 (null: 0)."""
    value = cfg.get_key(entry, key)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= UINT64_MAX:
        label = f"{where}.{key}" if where else key
        raise invalid_config(f"invalid config: {label} must be an integer from 0 to 2^64-1", f"got {value!r}")
    return value


def _limit(entry: dict[str, Any], direction: str, where: str) -> Optional[Limit]:
    """One direction's rate and burst, validated with upstream's messages (plus the key and its limits)."""
    from cni_common.shaping import Limit

    rate_key, burst_key = f"{direction}Rate", f"{direction}Burst"
    rate, burst = _uint64(entry, rate_key, where), _uint64(entry, burst_key, where)
    prefix = f"{where}." if where else ""
    if rate and not burst:
        raise invalid_config("if rate is set, burst must also be set", f"{prefix}{rate_key} without {burst_key}")
    if burst and not rate:
        raise invalid_config("if burst is set, rate must also be set", f"{prefix}{burst_key} without {rate_key}")
    if burst // 8 >= MAX_BURST_BYTES:
        raise invalid_config("burst cannot be more than 4GB", f"{prefix}{burst_key} is {burst} bits")
    if 0 < rate < 8:
        raise invalid_config(f"{prefix}{rate_key} must be at least 8 (bits/s): the kernel counts bytes",
                             f"got {rate}")
    return Limit(rate=rate, burst=burst) if rate else None


def _entry(conf: dict[str, Any]) -> tuple[Optional[dict[str, Any]], str]:
    """The bandwidth entry and where it came from: the top level if any of its keys is there, else
    ``runtimeConfig.bandwidth`` (None when neither)."""
    lowered = {k.lower() for k in KEYS}
    if any(isinstance(k, str) and k.lower() in lowered for k in conf):
        return conf, ""
    runtime = cfg.runtime_config(conf)
    entry = cfg.get_typed(runtime, "bandwidth", dict, None, "runtimeConfig")
    return entry, "runtimeConfig.bandwidth"


def parse_conf(args: CmdArgs) -> BandwidthConf:
    """Validate the config in upstream's order, in every verb (a bad one makes DEL fail there too)."""
    conf = args.conf
    cfg.check_netconf_types(conf)
    entry, where = _entry(conf)
    ingress = _limit(entry, "ingress", where) if entry is not None else None
    egress = _limit(entry, "egress", where) if entry is not None else None
    prev_raw = cfg.get_key(conf, "prevResult")
    prev = Result.from_dict(prev_raw, args.cni_version) if prev_raw else None
    return BandwidthConf(ingress=ingress, egress=egress, prev_result=prev)


def _require_prev(bw: BandwidthConf) -> Result:
    if bw.prev_result is None:
        raise invalid_config("must be called as chained plugin (the config has no prevResult)")
    return bw.prev_result


def cmd_add(args: CmdArgs) -> Result:
    from cni_common import netlink, shaping
    from cni_common.netns import NetNS
    from cni_common.types import Interface

    bw = parse_conf(args)
    prev = _require_prev(bw)  # upstream panics when there is neither a prevResult nor a limit
    if bw.ingress is None and bw.egress is None:
        return prev
    with NetNS(args.netns) as ns, netlink.open_conn() as host, netlink.open_conn(ns) as cont:
        veth = shaping.host_veth(host, cont, args.ifname, prev.interfaces)
        ifb = shaping.shape(host, veth, shaping.ifb_name(args.network_name, args.container_id),
                            shaping.ifb_alias(args.network_name, args.container_id), bw.ingress, bw.egress)
    if ifb is not None and not any(i.name == ifb.name and not i.sandbox for i in prev.interfaces):
        prev.interfaces.append(Interface(name=ifb.name, mac=ifb.mac))
    return prev


def cmd_del(args: CmdArgs) -> None:
    """Remove the ifb and, while the container's veth still exists, the host side's qdiscs. Needs neither a
    netns nor a prevResult; everything may be gone already."""
    from cni_common import netlink, shaping
    from cni_common.netns import NetNS, NetNSGone

    parse_conf(args)
    veth_index = None
    with netlink.open_conn() as host:
        if args.netns:
            try:
                with NetNS(args.netns) as ns, netlink.open_conn(ns) as cont:
                    link = netlink.find_link(cont, args.ifname)
                    peer = shaping.veth_peer(host, link) if link is not None else None
                    veth_index = peer.index if peer is not None else None
            except NetNSGone:
                pass  # the veth went with the namespace, and its qdiscs with it
        shaping.unshape(host, veth_index, shaping.ifb_name(args.network_name, args.container_id))


def cmd_check(args: CmdArgs) -> None:
    from cni_common import netlink, shaping
    from cni_common.netns import NetNS

    bw = parse_conf(args)
    if bw.prev_result is None:
        raise invalid_config("must be called as a chained plugin (the config has no prevResult)")
    with NetNS(args.netns) as ns, netlink.open_conn() as host, netlink.open_conn(ns) as cont:
        veth = shaping.host_veth(host, cont, args.ifname, bw.prev_result.interfaces)
        shaping.check(host, veth, shaping.ifb_name(args.network_name, args.container_id), bw.ingress, bw.egress)


def cmd_gc(args: CmdArgs) -> None:
    """Delete this network's ifb devices (made by this suite) whose container is not in
    ``cni.dev/valid-attachments``; nothing when the runtime sent no list."""
    from cni_common import netlink, shaping
    from cni_common.errors import BestEffort

    valid = cfg.valid_attachments(args.conf)
    if valid is None:
        return
    steps = BestEffort()
    with netlink.open_conn() as host:
        for name in shaping.stale_ifbs(host, args.network_name, {cid for cid, _ in valid}):
            with steps:
                netlink.delete_link(host, name)
    steps.raise_if_failed("failed to remove stale ifb devices")


def main(**streams: Any) -> int:
    """``streams`` (environ, stdin, stdout, stderr) let tests drive the plugin in-process."""
    return plugin_main(CNIFuncs(add=cmd_add, delete=cmd_del, check=cmd_check, gc=cmd_gc),
                       about=about_line("bandwidth"), supported=SUPPORTED, **streams)


if __name__ == "__main__":
    sys.exit(main())
