"""bridge macspoofchk: drop frames from a host veth whose source MAC is not the container's.

Layout (upstream pkg/link/spoofcheck.go), table ``bridge nat``:
  PREROUTING (filter, hook prerouting, priority -300, policy accept):
      iifname "<hostVeth>" jump cni-br-iface-<cid>-<if>
  cni-br-iface-<cid>-<if>:      jump cni-br-iface-<cid>-<if>-mac
  cni-br-iface-<cid>-<if>-mac:  ether saddr <mac> return ; drop
every rule commented ``macspoofchk-<cid>-<if>``. Unlike upstream (two transactions, and a duplicate jump on a
repeated ADD), setup is one transaction that also replaces an existing jump, so it is idempotent.
"""

from __future__ import annotations

import re

from . import names, runner
from .runner import NetfilterError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~4 ms per plugin process)
if TYPE_CHECKING:
    from typing import Any, Optional

TABLE = "bridge nat"
BASE_CHAIN = "PREROUTING"
# Unquoted nft identifiers (nft 1.0.x does not accept quoted chain names).
_NFT_NAME = re.compile(r"^[A-Za-z_.][A-Za-z0-9/\\_.\-]*\Z")
_MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}\Z")


def _check_name(name: str) -> str:
    if not _NFT_NAME.match(name):
        raise NetfilterError(f"cannot use {name!r} as an nftables chain name")
    return name


def jump_handles(listing: Optional[list[dict[str, Any]]], comment: str) -> list[int]:
    """Handles of PREROUTING rules carrying ``comment``."""
    return [int(o["rule"]["handle"]) for o in listing or []
            if "rule" in o and o["rule"].get("chain") == BASE_CHAIN and o["rule"].get("comment") == comment]


def chain_names(listing: Optional[list[dict[str, Any]]]) -> set[str]:
    return {o["chain"]["name"] for o in listing or [] if "chain" in o}


def setup_script(host_ifname: str, mac: str, container_id: str, ifname: str, stale: list[int]) -> str:
    """The whole setup as one nft transaction."""
    if not _MAC.match(mac):
        raise NetfilterError(f"invalid MAC address {mac!r} for macspoofchk")
    iface = _check_name(names.macspoof_iface_chain(container_id, ifname))
    macc = _check_name(names.macspoof_mac_chain(container_id, ifname))
    comment = names.macspoof_comment(container_id, ifname)
    host = host_ifname.replace('"', "")
    lines = [
        f"add table {TABLE}",
        f"add chain {TABLE} {BASE_CHAIN} {{ type filter hook prerouting priority -300 ; policy accept ; }}",
        f"add chain {TABLE} {iface}",
        f"add chain {TABLE} {macc}",
        f"flush chain {TABLE} {iface}",
        f"flush chain {TABLE} {macc}",
        *(f"delete rule {TABLE} {BASE_CHAIN} handle {h}" for h in stale),
        f'add rule {TABLE} {BASE_CHAIN} iifname "{host}" jump {iface} comment "{comment}"',
        f'add rule {TABLE} {iface} jump {macc} comment "{comment}"',
        f'add rule {TABLE} {macc} ether saddr {mac.lower()} return comment "{comment}"',
        f'add rule {TABLE} {macc} drop comment "{comment}"',
    ]
    return "\n".join(lines) + "\n"


def teardown_script(listing: Optional[list[dict[str, Any]]], container_id: str,
                    ifname: str) -> Optional[str]:
    """Delete the jump rule and both chains, whichever of them exist (None: nothing to do)."""
    iface = names.macspoof_iface_chain(container_id, ifname)
    macc = names.macspoof_mac_chain(container_id, ifname)
    present = chain_names(listing)
    lines = [f"delete rule {TABLE} {BASE_CHAIN} handle {h}"
             for h in jump_handles(listing, names.macspoof_comment(container_id, ifname))]
    for chain in (iface, macc):
        if chain in present:
            lines.append(f"flush chain {TABLE} {chain}")
    for chain in (iface, macc):
        if chain in present:
            lines.append(f"delete chain {TABLE} {chain}")
    return "\n".join(lines) + "\n" if lines else None


def setup(host_ifname: str, mac: str, container_id: str, ifname: str) -> None:
    """Allow only ``mac`` as source on frames entering the bridge from ``host_ifname``."""
    comment = names.macspoof_comment(container_id, ifname)
    runner.transact(f"set up macspoofchk on {host_ifname!r}",
                    lambda: setup_script(host_ifname, mac, container_id, ifname,
                                         jump_handles(runner.nft_list("chain", "bridge", "nat", BASE_CHAIN),
                                                      comment)),
                    runner.nft_apply, runner.NFT_LOCK)


def teardown(container_id: str, ifname: str) -> None:
    """Remove this attachment's macspoofchk rules and chains; the table and base chain stay (as upstream)."""
    runner.transact(f"tear down macspoofchk of {container_id}/{ifname}",
                    lambda: teardown_script(runner.nft_list("table", "bridge", "nat"), container_id, ifname),
                    runner.nft_apply, runner.NFT_LOCK)
