"""The bridge plugin: a veth pair from the container to a Linux bridge on the host, addresses from IPAM.

Drop-in for upstream's ``bridge`` (same config keys and result shape). This module is the plugin's config and
its verbs; the attachment itself (bridge, veth, bridge port, IPAM, container addresses, gateway, masquerade)
is the library's :mod:`cni_common.attach`, which vxlan uses too. It reads top-down: the config and its
validation into a :class:`~cni_common.attach.conf.BridgeConf`, then ADD, DEL, CHECK, STATUS and GC. Beyond
upstream: a failed ADD also removes the veth; DEL removes masquerading even when the netns is gone; GC removes
the masquerading of attachments the runtime no longer knows; ``mtu`` also applies to a bridge that already
exists.
"""

from __future__ import annotations

import sys
from typing import Any, Optional

from cni_common import config, invoke
from cni_common.attach.conf import DEFAULT_BRIDGE, BridgeConf, requested_mac
from cni_common.errors import invalid_config
from cni_common.skel import CmdArgs, CNIFuncs, plugin_main
from cni_common.types import DNS, Result
from cni_common.version import about_line

# ---------------------------------------------------------------------------------------------------- config


#: The kernel's largest MTU for any Ethernet-like link (ETH_MAX_MTU): bridges and veths refuse more. A larger
#: value used to reach the netlink encoder and crash there (code 999).
MAX_MTU = 65535


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
        raise invalid_config("cannot set hairpin mode and promiscuous mode at the same time")
    if not 0 <= c.vlan <= 4094:
        raise invalid_config(f"invalid VLAN ID {c.vlan} (must be between 0 and 4094)")
    if c.vlan and c.vlan_trunk:
        raise invalid_config("cannot set vlan and vlanTrunk at the same time")
    if c.disable_container_interface and c.ipam_type:
        raise invalid_config("cannot use IPAM when disableContainerInterface flag is set")
    if not 0 <= c.mtu <= MAX_MTU:
        raise invalid_config(f"invalid mtu {c.mtu} (must be between 0 and {MAX_MTU})")
    if cni_args is not None:
        c.mac = requested_mac(conf, cni_args)
    return c


def _vlan_trunk(entries: list[Any]) -> list[int]:
    """The tagged VIDs of ``vlanTrunk`` ({id} or {minID, maxID} each), deduplicated and sorted."""
    vids: set[int] = set()
    for entry in entries:
        if not isinstance(entry, dict):
            raise invalid_config(f"invalid vlanTrunk entry {entry!r}")
        lo = config.get_typed(entry, "minID", int, None, "vlanTrunk")
        hi = config.get_typed(entry, "maxID", int, None, "vlanTrunk")
        if lo is not None or hi is not None:
            if lo is None or not 1 <= lo <= 4094:
                raise invalid_config("incorrect trunk minID parameter")
            if hi is None or not 1 <= hi <= 4094:
                raise invalid_config("incorrect trunk maxID parameter")
            if hi < lo:
                raise invalid_config("minID is greater than maxID in trunk parameter")
            vids.update(range(lo, hi + 1))
        vid = config.get_typed(entry, "id", int, None, "vlanTrunk")
        if vid is not None:
            if not 1 <= vid <= 4094:
                raise invalid_config("incorrect trunk id parameter")
            vids.add(vid)
    return sorted(vids)


# ---------------------------------------------------------------------------------------------------- verbs


def cmd_add(args: CmdArgs) -> Result:
    from cni_common.attach.add import attach

    conf = load_conf(args.conf, args.cni_args())
    if conf.ipam_type:
        # Before the first change to the node: a missing CNI_PATH (4) or IPAM binary (104) found only at the
        # delegation would leave a bridge this ADD created.
        invoke.find_in_path(conf.ipam_type, args.path)
    return attach(args, conf)


def cmd_del(args: CmdArgs) -> None:
    """Best-effort and idempotent: delete the veth, always release IPAM, remove macspoofchk and masquerading.

    A gone or empty netns only skips the veth; the rules are still removed (found by their names and comments,
    so the container's addresses are not needed).
    """
    from cni_common.attach.delete import detach

    detach(args, load_conf(args.conf))


def cmd_check(args: CmdArgs) -> None:
    from cni_common.attach.check import check, prev_result

    conf = load_conf(args.conf, args.cni_args())
    check(args, conf, prev_result(args))


def cmd_status(args: CmdArgs) -> None:
    """Ready when IPAM is: STATUS is forwarded to it (and its error returned)."""
    conf = load_conf(args.conf)
    if conf.ipam_type:
        invoke.delegate("STATUS", conf.ipam_type, args)


def cmd_gc(args: CmdArgs) -> None:
    """Remove the masquerading of attachments not in ``cni.dev/valid-attachments``, then forward GC to IPAM."""
    from cni_common import veth

    conf = load_conf(args.conf)
    veth.gc(args, network=conf.network, ipam_type=conf.ipam_type, what="bridge")


def main(**streams: Any) -> int:
    """``streams`` (environ, stdin, stdout, stderr) let tests drive the plugin in-process."""
    return plugin_main(CNIFuncs(add=cmd_add, delete=cmd_del, check=cmd_check, status=cmd_status, gc=cmd_gc),
                       about=about_line("bridge"), **streams)


if __name__ == "__main__":
    sys.exit(main())
