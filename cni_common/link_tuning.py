"""Link attributes a chained plugin changes on the container's interface, and the saved originals.

The tuning plugin sets ``mac``, ``promisc``, ``mtu``, ``allmulti`` and ``txQLen``; before the first change it
saves the link's original values of exactly those attributes in ``<dataDir>/<containerID>_<ifname>.json``,
and DEL puts them back. File name, JSON keys and layout are upstream's (indented one space, no trailing
newline), so either implementation restores the other's changes on a node that switched suites.

Beyond upstream: a second ADD keeps the originals already saved (upstream overwrites them with the values it
set itself, losing the originals), the file is written by temp file, fsync and rename in its directory, and it
is never opened through a symlink.
"""

from __future__ import annotations

import json
import os

from .errors import CNIError, ErrorCode
from .log import get_logger
from .record import record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~4 ms per plugin process)
if TYPE_CHECKING:
    from typing import Any, Optional

    from .netlink import Conn, Link

log = get_logger(__name__)

DEFAULT_DATA_DIR = "/run/cni/tuning"


@record
class LinkSettings:
    """Values of the link attributes; an attribute left at None ("" for mac, 0 for mtu) is not touched."""

    mac: str = ""
    promisc: Optional[bool] = None
    mtu: int = 0
    allmulti: Optional[bool] = None
    txqlen: Optional[int] = None

    def changes_anything(self) -> bool:
        return bool(self.mac or self.mtu) or any(v is not None for v in (self.promisc, self.allmulti, self.txqlen))

    def to_json(self) -> str:
        """Upstream's file content: only the attributes set, in its key order, one-space indent, no newline."""
        out: dict[str, Any] = {}
        if self.mac:
            out["mac"] = self.mac
        if self.promisc is not None:
            out["promisc"] = self.promisc
        if self.mtu:
            out["mtu"] = self.mtu
        if self.allmulti is not None:
            out["allmulti"] = self.allmulti
        if self.txqlen is not None:
            out["txQLen"] = self.txqlen
        return json.dumps(out, indent=1)

    @classmethod
    def from_json(cls, text: str) -> LinkSettings:
        """Read a saved file (ours or upstream's); ValueError when it is not one."""
        raw = json.loads(text)
        if not isinstance(raw, dict):
            raise ValueError("not a JSON object")
        settings = cls(mac=raw.get("mac") or "", promisc=raw.get("promisc"), mtu=raw.get("mtu") or 0,
                       allmulti=raw.get("allmulti"), txqlen=raw.get("txQLen"))
        typed = (isinstance(settings.mac, str) and _is_int(settings.mtu)
                 and all(v is None or isinstance(v, bool) for v in (settings.promisc, settings.allmulti))
                 and (settings.txqlen is None or _is_int(settings.txqlen)))
        if not typed:
            raise ValueError("a value of the wrong type")
        return settings

    def current(self, link: Link) -> LinkSettings:
        """The link's present values of the attributes this object sets (what to save before changing them)."""
        return LinkSettings(mac=link.mac if self.mac else "",
                            promisc=link.promisc if self.promisc is not None else None,
                            mtu=link.mtu if self.mtu else 0,
                            allmulti=link.allmulti if self.allmulti is not None else None,
                            txqlen=link.txqlen if self.txqlen is not None else None)

    def filled_from(self, other: LinkSettings) -> LinkSettings:
        """These values, with the attributes this object lacks taken from ``other``."""
        return LinkSettings(mac=self.mac or other.mac, promisc=_first(self.promisc, other.promisc),
                            mtu=self.mtu or other.mtu, allmulti=_first(self.allmulti, other.allmulti),
                            txqlen=_first(self.txqlen, other.txqlen))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _first(a: Any, b: Any) -> Any:
    return a if a is not None else b


def apply(conn: Conn, index: int, settings: LinkSettings) -> None:
    """Set the attributes of link ``index`` in upstream's order: MAC, promisc, MTU, allmulti, txqueuelen."""
    from . import netlink

    if settings.mac:
        netlink.set_mac(conn, index, settings.mac)
    if settings.promisc is not None:
        netlink.set_promisc(conn, index, settings.promisc)
    if settings.mtu:
        netlink.set_mtu(conn, index, settings.mtu)
    if settings.allmulti is not None:
        netlink.set_allmulti(conn, index, settings.allmulti)
    if settings.txqlen is not None:
        netlink.set_txqlen(conn, index, settings.txqlen)


def differences(link: Link, wanted: LinkSettings) -> list[str]:
    """What about ``link`` is not as ``wanted`` says (empty: all as configured), for CHECK."""
    found = []
    if wanted.mac and link.mac.lower() != wanted.mac.lower():
        found.append(f"MAC is {link.mac}, expected {wanted.mac}")
    if wanted.promisc is not None and link.promisc != wanted.promisc:
        found.append(f"promisc is {link.promisc}, expected {wanted.promisc}")
    if wanted.mtu and link.mtu != wanted.mtu:
        found.append(f"MTU is {link.mtu}, expected {wanted.mtu}")
    if wanted.allmulti is not None and link.allmulti != wanted.allmulti:
        found.append(f"allmulti is {link.allmulti}, expected {wanted.allmulti}")
    if wanted.txqlen is not None and link.txqlen != wanted.txqlen:
        found.append(f"txQLen is {link.txqlen}, expected {wanted.txqlen}")
    return found


# ------------------------------------------------------------------------------------------- the saved file

def backup_path(data_dir: str, container_id: str, ifname: str) -> str:
    """Upstream's file name (container ID and ifname are safe file-name parts: the skel validated both)."""
    return os.path.join(data_dir, f"{container_id}_{ifname}.json")


def load_backup(path: str) -> Optional[LinkSettings]:
    """The saved originals, or None when there are none. A torn or foreign file is logged and removed: it
    cannot be restored from, and keeping it would block every later DEL's cleanup."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CNIError(ErrorCode.IO_FAILURE, f"failed to open saved link settings {path}: {exc.strerror}") from exc
    with os.fdopen(fd, encoding="utf-8", errors="replace") as f:
        text = f.read()
    try:
        return LinkSettings.from_json(text)
    except ValueError as exc:
        log.warning("removing unreadable saved link settings %s: %s", path, exc)
        remove_backup(path)
        return None


def save_backup(path: str, link: Link, wanted: LinkSettings) -> bool:
    """Save ``link``'s present values of what ``wanted`` changes, unless saved before: values saved by an earlier
    ADD are the originals and stay; only attributes not saved yet are added. True when the file is new."""
    saved = load_backup(path)
    originals = wanted.current(link)
    merged = originals if saved is None else saved.filled_from(originals)
    if saved is not None and merged == saved:
        return False
    _write_atomically(path, merged.to_json())
    return saved is None


def _write_atomically(path: str, text: str) -> None:
    import tempfile

    from .durable import fsync_dir, write_all

    directory = os.path.dirname(path)
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
        try:
            write_all(fd, text.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.rename(tmp, path)
        except OSError:
            os.unlink(tmp)
            raise
        fsync_dir(directory)
    except OSError as exc:
        raise CNIError(ErrorCode.IO_FAILURE, f"failed to save link settings to {path}: {exc.strerror}") from exc


def remove_backup(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("failed to remove %s: %s", path, exc.strerror)
