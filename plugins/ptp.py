"""The ptp plugin: a veth pair per container, routed by the node (no bridge); addresses from IPAM.

Drop-in for upstream's ``ptp`` (same config keys, result shape, routes, gateway addresses and masquerade
names). This module is the plugin's config and its verbs; the attachment itself is the library's
:mod:`cni_common.routed` (ADD, CHECK) and :mod:`cni_common.veth` (DEL, GC: what every veth attachment shares).
Beyond upstream: ``ipMasqBackend`` and the gateways are checked before the node changes; a failed ADD removes
the veth; DEL removes the masquerading even when the netns is gone (upstream's leaks it: #810); GC removes the
masquerading of attachments the runtime no longer knows and is forwarded to IPAM.
"""

from __future__ import annotations

import sys
from typing import Any

from cni_common import config, invoke
from cni_common.errors import BestEffort, CNIError, ErrorCode
from cni_common.routed.conf import RoutedConf
from cni_common.skel import CmdArgs, CNIFuncs, plugin_main
from cni_common.types import DNS, Result
from cni_common.version import about_line

# ---------------------------------------------------------------------------------------------------- config

#: The kernel's largest MTU for a veth (ETH_MAX_MTU).
MAX_MTU = 65535
MASQ_BACKENDS = ("iptables", "nftables")


def load_conf(conf: dict[str, Any]) -> RoutedConf:
    """Parse and validate the keys every verb reads (Go decodes the whole config in every verb; runtimeConfig
    is IPAM's business: static decodes it on ADD)."""
    config.check_netconf_types(conf, runtime_config=False)
    c = RoutedConf(
        network=config.get_str(conf, "name"),
        ipam_type=config.get_str(config.get_dict(conf, "ipam"), "type", where="ipam"),
        ip_masq=config.get_bool(conf, "ipMasq"),
        ip_masq_backend=config.optional_str(conf, "ipMasqBackend"),
        mtu=config.get_int(conf, "mtu"),
        dns=DNS.from_dict(config.get_dict(conf, "dns")),
    )
    if not c.ipam_type:
        raise CNIError(ErrorCode.INVALID_CONFIG, "no plugin name provided (ipam.type)",
                       "ptp needs IPAM: it gives the container its addresses and gateways")
    if not 0 <= c.mtu <= MAX_MTU:
        raise CNIError(ErrorCode.INVALID_CONFIG, f"invalid mtu {c.mtu} (must be between 0 and {MAX_MTU})")
    return c


# ---------------------------------------------------------------------------------------------------- verbs


def cmd_add(args: CmdArgs) -> Result:
    from cni_common.routed.add import attach

    conf = load_conf(args.conf)
    if conf.ip_masq_backend is not None and conf.ip_masq_backend not in MASQ_BACKENDS:
        # Only ADD refuses it (as upstream): DEL removes both layouts whatever the config says.
        raise CNIError(ErrorCode.INVALID_CONFIG, f"unknown ipmasq backend {conf.ip_masq_backend!r} (ipMasqBackend)",
                       f"ipMasqBackend must be one of {', '.join(MASQ_BACKENDS)}")
    # Before the first change to the node: a missing CNI_PATH (4) or IPAM binary (104).
    invoke.find_in_path(conf.ipam_type, args.path)
    return attach(args, conf)


def cmd_del(args: CmdArgs) -> None:
    """Best effort and idempotent: delete the veth, release IPAM, remove the masquerading (also with the
    netns gone: the rules are found by their names and comments)."""
    from cni_common import veth

    conf = load_conf(args.conf)
    steps = BestEffort()
    veth.release(args, steps, network=conf.network, ipam_type=conf.ipam_type, ip_masq=conf.ip_masq)
    steps.raise_if_failed("ptp DEL failed")


def cmd_check(args: CmdArgs) -> None:
    from cni_common.attach.check import prev_result
    from cni_common.routed.check import check

    conf = load_conf(args.conf)
    check(args, conf, prev_result(args))


def cmd_status(args: CmdArgs) -> None:
    """Ready when IPAM is: STATUS is forwarded to it (and its error returned)."""
    invoke.delegate("STATUS", load_conf(args.conf).ipam_type, args)


def cmd_gc(args: CmdArgs) -> None:
    """Remove the masquerading of attachments not in ``cni.dev/valid-attachments``, then forward GC to IPAM."""
    from cni_common import veth

    conf = load_conf(args.conf)
    veth.gc(args, network=conf.network, ipam_type=conf.ipam_type, what="ptp")


def main(**streams: Any) -> int:
    """``streams`` (environ, stdin, stdout, stderr) let tests drive the plugin in-process."""
    return plugin_main(CNIFuncs(add=cmd_add, delete=cmd_del, check=cmd_check, status=cmd_status, gc=cmd_gc),
                       about=about_line("ptp"), **streams)


if __name__ == "__main__":
    sys.exit(main())
