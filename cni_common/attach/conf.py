"""What a bridge attachment builds: one record, filled by a plugin from its own config.

The bridge plugin reads it from the bridge config keys (``plugins/bridge.py``), vxlan from its own
(:mod:`cni_common.overlay.attach`): the engine never reads a config itself, so each plugin keeps its keys and
its validation, and both get the same attachment.
"""

from __future__ import annotations

from typing import Any, Optional

from .. import config
from ..errors import CNIError, ErrorCode
from ..record import field, record
from ..types import DNS

DEFAULT_BRIDGE = "cni0"


@record
class BridgeConf:
    """The attachment to build, defaults applied and validated by the plugin that filled it."""

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


def requested_mac(conf: dict[str, Any], cni_args: dict[str, str]) -> str:
    """The container MAC asked for (lower case, "" for none): CNI_ARGS ``MAC`` < args.cni.mac <
    runtimeConfig.mac. Other CNI_ARGS keys are ignored, ``IgnoreUnknown`` or not: every plugin of a chain and
    its IPAM see the same CNI_ARGS (host-local's ``IP``, Kubernetes' ``K8S_POD_*``), and upstream's refusal
    of unknown keys is a classic source of failed ADDs."""
    mac = cni_args.get("MAC", "")
    mac = config.get_str(config.args_cni(conf), "mac", mac, where="args.cni") or mac
    mac = config.get_str(config.runtime_config(conf), "mac", mac, where="runtimeConfig") or mac
    if mac:
        check_mac(mac)
    return mac.lower()


def check_mac(mac: str) -> None:
    from ..netlink.attrs import mac_to_bytes

    try:
        mac_to_bytes(mac)
    except ValueError as exc:
        raise CNIError(ErrorCode.INVALID_CONFIG, f"invalid MAC address {mac!r}") from exc
