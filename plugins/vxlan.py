"""The ``vxlan`` plugin: pods on different nodes reach each other over a VXLAN overlay.

An interface plugin: it creates the container's veth on a local bridge itself, with the library's bridge
attachment, the bridge plugin's engine too (:mod:`cni_common.overlay.attach`, :mod:`cni_common.attach`).
Node-level work (subnet, VXLAN device, liveness, peers) is in :mod:`cni_common.overlay.node`; the same
executable run as ``vxlan agent --conf FILE`` keeps that up to date over time (:mod:`cni_common.overlay.agent`).

- ADD: node setup (reserving the subnet in etcd when a store is set), liveness refresh, one peer reconcile,
  then the container (bridge + veth + IPAM over the node subnet), and optional masquerading.
- DEL: only the container's own state (interface, IPAM, masquerading), best effort; never talks to the store.
- CHECK: bridge's CHECK (IPAM, bridge, veth ends, addresses, routes), then the node's VXLAN device.
- GC: passed to IPAM; masquerading of stale attachments removed.
- STATUS: 50 when the store is unreachable and no static peers are configured; then IPAM STATUS.
"""

from __future__ import annotations

import ipaddress
import sys
from typing import Any, Optional

from cni_common.errors import BestEffort, CNIError, ErrorCode, check_failed
from cni_common.log import get_logger
from cni_common.skel import CmdArgs, CNIFuncs, plugin_main
from cni_common.version import about_line

log = get_logger(__name__)

#: Seconds an ADD (and STATUS) waits for the store's first answer, over all endpoints: within a runtime's
#: CNI timeout, and short enough for a frozen or unreachable cluster (see "Faults" in docs/vxlan.md).
STORE_ANSWER_WITHIN = 1.0

ABOUT = f"{about_line('vxlan')}\nA multi-node overlay; 'vxlan agent --conf FILE' runs its agent."


def _masq_ips(conf: Any, addresses: list[Any]) -> list[Any]:
    """Container addresses widened to the pod network's prefix: the masquerade layout exempts the address's
    network, so pod-to-pod traffic across nodes keeps its source (flannel's rule) and the rest is SNATed."""
    return [ipaddress.ip_interface(f"{a.ip}/{conf.network.prefixlen}") for a in addresses
            if a.version == conf.network.version]


def cmd_add(args: CmdArgs) -> Any:
    from cni_common import invoke, netfilter, netlink
    from cni_common.overlay import attach, config, node, presence

    conf = config.parse(args.conf)
    # Before the first change to the node (its VXLAN device, bridge, subnet lease): a missing CNI_PATH (4) or
    # IPAM binary (104) found only at the delegation would leave them behind.
    invoke.find_in_path(attach.ipam_type(conf), args.path)
    store = node.Store.open(conf, answer_within=STORE_ANSWER_WITHIN)
    with netlink.open_conn() as host:
        state = node.prepare(host, conf, store, offline_ok=True)
        _sync_peers(host, conf, store, state, remove=not presence.agent_running(conf))
    result = attach.add(args, conf, state.subnet, conf.mtu or state.mtu)
    if conf.ip_masq:
        try:
            netfilter.setup_masquerade(netfilter.select_backend(), args.network_name, args.container_id,
                                       args.ifname, _masq_ips(conf, [ip.address for ip in result.ips]))
        except CNIError:
            attach.delete(args, conf)
            raise
    return result


def _sync_peers(host: Any, conf: Any, store: Any, state: Any, remove: bool) -> None:
    """Liveness refresh and one peer reconcile. Removals are left to the agent when one runs; and when the
    store stops answering midway, the node already holds its subnet, so the ADD goes on without them."""
    from cni_common.overlay import node

    if store is None or state.offline:
        node.sync(host, conf, state, [], remove=store is None)  # static peers only: never drop store peers
        return
    try:
        store.liveness.publish(state.me)
        live, _ = store.liveness.live_peers()
    except CNIError as exc:
        if exc.code != ErrorCode.TRY_AGAIN_LATER:
            raise
        log.warning("%s; going on with the subnet this node holds, %s", exc.msg, state.subnet)
        node.sync(host, conf, state, [], remove=False)
        return
    node.sync(host, conf, state, live, remove=remove)


def cmd_del(args: CmdArgs) -> None:
    """Best effort, as bridge's DEL: the container side (interface, IPAM lease) and the masquerading are each
    removed even when another step failed; the failures are reported together at the end."""
    from cni_common import netfilter
    from cni_common.overlay import attach, config

    conf = config.parse(args.conf)
    steps = BestEffort()
    addresses: list[Any] = []
    if conf.ip_masq:  # every source: the interface's address may have been removed or replaced before the DEL
        from cni_common.veth import union_of_addresses

        with steps:
            addresses = attach.container_addresses(args)
        addresses = union_of_addresses(addresses, attach.recorded_addresses(args, conf))
    with steps:
        attach.delete(args, conf)
    if conf.ip_masq:
        with steps:  # without the addresses, the rules are still found by their names and comments
            netfilter.teardown_masquerade(args.network_name, args.container_id, args.ifname,
                                          _masq_ips(conf, addresses))
    steps.raise_if_failed("vxlan DEL failed")


def cmd_check(args: CmdArgs) -> None:
    from cni_common import netlink
    from cni_common.overlay import attach, config

    conf = config.parse(args.conf)
    attach.check(args, conf)
    with netlink.open_conn() as host:
        if netlink.find_link(host, conf.device) is None:
            raise check_failed(f"vxlan device {conf.device!r} is missing on this node")


def cmd_gc(args: CmdArgs) -> None:
    from cni_common import netfilter
    from cni_common.config import valid_attachments
    from cni_common.invoke import delegate
    from cni_common.overlay import attach, config

    conf = config.parse(args.conf)
    ipam_args = attach.ipam_args(args, conf, conf.node_subnet)
    steps = BestEffort()
    with steps:
        delegate("GC", attach.ipam_type(conf), ipam_args)
    valid = valid_attachments(args.conf)
    if conf.ip_masq and valid is not None:
        with steps:
            netfilter.gc_masquerade(args.network_name, valid)
    steps.raise_if_failed("vxlan GC did not complete")


def cmd_status(args: CmdArgs) -> None:
    from cni_common.invoke import delegate
    from cni_common.overlay import attach, config, node

    conf = config.parse(args.conf)
    store: Optional[node.Store] = node.Store.open(conf, answer_within=STORE_ANSWER_WITHIN)
    if store is not None:
        try:
            store.liveness.live_peers()
        except CNIError as exc:
            if not conf.peers:
                raise CNIError(ErrorCode.NOT_AVAILABLE, f"vxlan store not available: {exc.msg}",
                               exc.details) from exc
            log.warning("store unreachable, static peers still work: %s", exc)
    ipam_args = attach.ipam_args(args, conf, conf.node_subnet)
    delegate("STATUS", attach.ipam_type(conf), ipam_args)


def main(**streams: Any) -> int:
    """The CNI plugin. ``vxlan agent --conf FILE`` is a mode of the program (``plugins/multicall.py``) that runs
    :func:`cni_common.overlay.agent.run_cli` instead. ``streams`` (environ, stdin, stdout, stderr) let tests
    drive the plugin in-process."""
    return plugin_main(CNIFuncs(add=cmd_add, delete=cmd_del, check=cmd_check, gc=cmd_gc, status=cmd_status),
                       about=ABOUT, **streams)


if __name__ == "__main__":
    sys.exit(main())
