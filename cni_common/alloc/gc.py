"""GC for host-local (spec 1.1.0): release every reservation whose attachment the runtime no longer lists.

Upstream has none yet (plugins #1047, open PR #1289); its points are kept: ``lock`` and ``last_reserved_ip.*``
are never touched, id-only files are judged by container ID alone (as a release by ID would match them), and
an empty list is meaningful (everything goes). A missing key is treated conservatively: nothing is released
(see :func:`cni_common.config.valid_attachments`).
"""

from __future__ import annotations

from ..errors import CNIError, PluginCode
from ..log import get_logger

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~4 ms per plugin process)
if TYPE_CHECKING:
    from ..types import IPAddress
    from .store import Owner, Store

log = get_logger(__name__)

def _is_valid(owner: Owner, valid: set[tuple[str, str]], valid_ids: set[str]) -> bool:
    if owner.ifname is None:
        return owner.container_id in valid_ids
    return (owner.container_id, owner.ifname) in valid


def collect(store: Store, valid: set[tuple[str, str]]) -> list[IPAddress]:
    """Release stale reservations (caller holds the lock); keeps going past errors, then raises them together."""
    valid_ids = {cid for cid, _ in valid}
    released: list[IPAddress] = []
    errors: list[str] = []
    for ip, owner in store.reservations():
        if _is_valid(owner, valid, valid_ids):
            continue
        try:
            store.release_ip(ip)
            released.append(ip)
            log.info("GC released %s held by %s/%s", ip, owner.container_id, owner.ifname)
        except CNIError as exc:
            errors.append(f"{ip}: {exc.msg}")
    if errors:
        raise CNIError(PluginCode.STORE_FAILURE, "GC failed to release some reservations", "; ".join(errors))
    return released

