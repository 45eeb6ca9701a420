"""What a routed attachment builds: one record, filled by a plugin from its own config keys."""

from __future__ import annotations

from typing import Optional

from ..record import field, record
from ..types import DNS


@record
class RoutedConf:
    """The attachment to build, defaults applied and validated by the plugin that filled it."""

    network: str
    ipam_type: str
    ip_masq: bool = False
    ip_masq_backend: Optional[str] = None
    mtu: int = 0
    dns: DNS = field(default_factory=DNS)
