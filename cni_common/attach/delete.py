"""DEL of a bridge attachment: best effort and idempotent.

Every step runs even when an earlier one failed (the IPAM lease is always released), and the first failure is
reported at the end. The veth, the IPAM lease and the masquerading go as every veth attachment's do
(:func:`cni_common.veth.release`: the rules are removed even when the netns is gone); then macspoofchk.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import BestEffort

if TYPE_CHECKING:
    from ..skel import CmdArgs
    from .conf import BridgeConf


def detach(args: CmdArgs, conf: BridgeConf) -> None:
    """Undo :func:`cni_common.attach.add.attach` for ``args``; IPAM is delegated ``args`` as they are."""
    from .. import veth

    steps = BestEffort()
    veth.release(args, steps, network=conf.network, ipam_type=conf.ipam_type, ip_masq=conf.ip_masq)
    if conf.macspoofchk:
        from .. import netfilter

        with steps:
            netfilter.teardown_macspoofchk(args.container_id, args.ifname)
    steps.raise_if_failed("bridge DEL failed")
