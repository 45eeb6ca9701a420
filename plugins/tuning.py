"""The tuning plugin (chained): sysctls and link attributes of the container's interface, as upstream's
plugins/meta/tuning.

Config (upstream keys): ``sysctl`` (an object of strings: net.* keys of the container's namespace, ``IFNAME``
stands for the interface), ``mac``, ``mtu``, ``promisc``, ``allmulti``, ``txQLen``, ``dataDir`` (default
``/run/cni/tuning``). The MAC also comes from CNI_ARGS ``MAC``, runtimeConfig ``mac`` and ``args.cni.mac``
(later wins); ``args.cni`` may also carry ``sysctl`` (merged per key), ``promisc``, ``mtu``, ``allmulti`` and
``txQLen``. An allowlist file (``/etc/cni/tuning/allowlist.conf``, one regex a line) limits the sysctls.
ADD saves the link's original values (:mod:`cni_common.link_tuning`, upstream's file) and DEL restores them.

Beyond upstream: everything is validated before anything changes; a sysctl key that leaves /proc/sys/net (by
``..``, a symlink or an absolute path) is refused; sysctls are written in sorted order and put back if one
fails; a failed ADD restores the link; a second ADD keeps the saved originals; ``args.cni.sysctl`` alone works
(upstream panics); CHECK compares multi-value sysctls by their words; DEL with the netns gone removes the saved
file.
"""

from __future__ import annotations

import sys

from cni_common import config as cfg
from cni_common.errors import CNIError, ErrorCode, PluginCode, check_failed, invalid_config
from cni_common.link_tuning import DEFAULT_DATA_DIR, LinkSettings
from cni_common.log import get_logger
from cni_common.record import record
from cni_common.skel import CmdArgs, CNIFuncs, plugin_main
from cni_common.types import Result
from cni_common.version import about_line

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~4 ms per plugin process)
if TYPE_CHECKING:
    from typing import Any, Optional

log = get_logger(__name__)

ALLOWLIST = "/etc/cni/tuning/allowlist.conf"
MAX_MTU = 65535  # ETH_MAX_MTU: no Ethernet-like link takes more
MAX_TXQLEN = 2**32 - 1  # IFLA_TXQLEN is a u32


@record
class TuningConf:
    """What to set: ``sysctls`` as (key as written, path parts under /proc/sys, value), sorted by path;
    ``link`` the attributes to change; ``promisc`` the configured bool (CHECK compares it even when false)."""

    sysctls: list[tuple[str, tuple[str, ...], str]]
    link: LinkSettings
    promisc: bool
    data_dir: str
    prev_result: Optional[Result]


# ---------------------------------------------------------------------------------------------------- config

class _Object(dict):
    """A decoded JSON object that remembers whether its text named a key twice."""

    duplicated = False


def _object_of_pairs(items: list[tuple[str, Any]]) -> _Object:
    obj = _Object(items)
    obj.duplicated = len(obj) != len(items)
    return obj


def _duplicated_sysctl_keys(stdin_data: bytes) -> bool:
    """True when the top-level ``sysctl`` object names a key twice (upstream refuses that; a plain decode would
    keep the last one silently). Decodes stdin once more, only when it mentions ``sysctl`` at all."""
    if b"sysctl" not in stdin_data.lower():
        return False
    import json

    sysctl = cfg.get_key(json.loads(stdin_data, object_pairs_hook=_object_of_pairs), "sysctl")
    return isinstance(sysctl, _Object) and sysctl.duplicated


def _sysctl_map(d: dict[str, Any], key: str, where: str = "") -> dict[str, str]:
    value = cfg.get_typed(d, key, dict, {}, where)
    label = f"{where}.{key}" if where else key
    for name, item in value.items():
        if not isinstance(item, str):
            raise invalid_config(f"invalid config: {label}[{name!r}] must be a string")
    return dict(value)


def _allowed_patterns() -> Optional[list[str]]:
    """The allowlist's regexes (non-empty trimmed lines), or None when the node has no allowlist."""
    try:
        with open(ALLOWLIST, encoding="utf-8") as f:
            return [line.strip() for line in f if line.strip()]
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CNIError(ErrorCode.IO_FAILURE, f"failed to read the sysctl allowlist {ALLOWLIST}: {exc}") from exc


def _check_allowlist(keys: list[str]) -> None:
    """Upstream's rule: each key must contain a match of one of the allowlist's (unanchored) regexes."""
    patterns = _allowed_patterns()
    if patterns is None:
        return
    import re

    for key in keys:
        if not any(re.search(p, key) for p in patterns):
            raise invalid_config(f"Sysctl {key} is not allowed. Only the following sysctls are allowed: "
                                 f"[{' '.join(patterns)}] (sysctl)")


def _mac(conf: dict[str, Any], args_cni: dict[str, Any], cni_args: dict[str, str]) -> str:
    """config < CNI_ARGS ``MAC`` < runtimeConfig.mac < args.cni.mac (upstream's order); checked here."""
    mac = cfg.get_str(conf, "mac")
    mac = cni_args.get("MAC") or mac
    mac = cfg.get_str(cfg.runtime_config(conf), "mac", where="runtimeConfig") or mac
    mac = cfg.get_str(args_cni, "mac", where="args.cni") or mac
    if mac:
        from cni_common.netlink.attrs import mac_to_bytes, mac_to_str

        try:
            mac = mac_to_str(mac_to_bytes(mac))
        except ValueError as exc:
            raise invalid_config(f"invalid args {mac} for MAC addr (mac)") from exc
    return mac


def _ranged(d: dict[str, Any], key: str, low: int, high: int, where: str = "") -> Optional[int]:
    value = cfg.get_typed(d, key, int, None, where)
    if value is not None and not low <= value <= high:
        raise invalid_config(f"invalid config: {f'{where}.{key}' if where else key} must be between {low} and {high}, "
                             f"got {value}")
    return value


def parse_conf(args: CmdArgs, for_add: bool = True) -> TuningConf:
    """Validate everything in upstream's order, before anything is changed."""
    from cni_common.sysctl import user_key_parts

    conf = args.conf
    cfg.check_netconf_types(conf)
    if _duplicated_sysctl_keys(args.stdin_data):
        raise invalid_config("duplicated sysctl keys are not allowed (sysctl)")
    args_cni = cfg.args_cni(conf)
    sysctls = _sysctl_map(conf, "sysctl")
    sysctls.update(_sysctl_map(args_cni, "sysctl", "args.cni"))  # upstream panics here without a top-level map
    mtu = _ranged(conf, "mtu", 0, MAX_MTU)
    mtu = _ranged(args_cni, "mtu", 0, MAX_MTU, "args.cni") or mtu or 0
    promisc = cfg.get_bool(conf, "promisc")
    promisc = cfg.get_typed(args_cni, "promisc", bool, promisc, "args.cni")
    allmulti = cfg.get_typed(conf, "allmulti", bool, None)
    allmulti = cfg.get_typed(args_cni, "allmulti", bool, allmulti, "args.cni")
    txqlen = _ranged(conf, "txQLen", 0, MAX_TXQLEN)
    txqlen = _ranged(args_cni, "txQLen", 0, MAX_TXQLEN, "args.cni") if "txQLen" in args_cni else txqlen
    data_dir = cfg.get_str(conf, "dataDir") or DEFAULT_DATA_DIR
    mac = _mac(conf, args_cni, args.cni_args() if for_add else {})
    _check_allowlist(sorted(sysctls))
    parsed = sorted(((key, user_key_parts(key, args.ifname), value) for key, value in sysctls.items()),
                    key=lambda item: item[1])
    prev_raw = cfg.get_key(conf, "prevResult")
    prev = Result.from_dict(prev_raw, args.cni_version) if prev_raw else None
    link = LinkSettings(mac=mac, promisc=True if promisc else None, mtu=mtu, allmulti=allmulti, txqlen=txqlen)
    return TuningConf(sysctls=parsed, link=link, promisc=promisc, data_dir=data_dir, prev_result=prev)


def _require_prev(tc: TuningConf) -> Result:
    if tc.prev_result is None:
        raise invalid_config("Required prevResult missing (prevResult)")
    return tc.prev_result


# ---------------------------------------------------------------------------------------------------- verbs

def _write_sysctls(sysctls: list[tuple[str, tuple[str, ...], str]]) -> list[tuple[tuple[str, ...], str]]:
    """Write each value (in the current namespace); on a failure put back those written and raise. Returns
    the (parts, original value) pairs, for the caller to undo a later failure."""
    from cni_common import sysctl

    done: list[tuple[tuple[str, ...], str]] = []
    try:
        for _, parts, value in sysctls:
            original = sysctl.read_beneath(parts).rstrip("\n")
            sysctl.write_beneath(parts, value)
            done.append((parts, original))
    except CNIError:
        _restore_sysctls(done)
        raise
    return done


def _restore_sysctls(done: list[tuple[tuple[str, ...], str]]) -> None:
    from cni_common import sysctl

    for parts, original in reversed(done):
        try:
            sysctl.write_beneath(parts, original)
        except CNIError as exc:
            log.warning("could not put back %s: %s", "/".join(parts), exc.msg)


def _container_link(cont: Any, ifname: str) -> Any:
    from cni_common import netlink

    link = netlink.find_link(cont, ifname)
    if link is None:
        raise CNIError(PluginCode.LINK_FAILURE, f"failed to get {ifname!r} in the container's namespace")
    return link


def _tune_link(cont: Any, link: Any, tc: TuningConf, backup: str) -> None:
    """Save the originals (keeping earlier ones), then set the attributes; on failure put the link back and
    forget a backup this call created."""
    from cni_common import link_tuning

    created = link_tuning.save_backup(backup, link, tc.link)
    try:
        link_tuning.apply(cont, link.index, tc.link)
    except CNIError:
        try:
            link_tuning.apply(cont, link.index, tc.link.current(link))
        except CNIError as exc:
            log.warning("could not put %s back: %s", link.name, exc.msg)
        if created:
            link_tuning.remove_backup(backup)
        raise


def cmd_add(args: CmdArgs) -> Result:
    from cni_common import link_tuning, netlink
    from cni_common.netns import NetNS

    tc = parse_conf(args)
    prev = _require_prev(tc)
    with NetNS(args.netns) as ns, netlink.open_conn(ns) as cont:
        link = _container_link(cont, args.ifname) if tc.link.changes_anything() else None
        with ns.entered():
            written = _write_sysctls(tc.sysctls)
        if link is not None:
            try:
                _tune_link(cont, link, tc, link_tuning.backup_path(tc.data_dir, args.container_id, args.ifname))
            except CNIError:
                with ns.entered():
                    _restore_sysctls(written)
                raise
    if tc.link.mac:
        for iface in prev.interfaces:
            if iface.name == args.ifname:
                iface.mac = tc.link.mac
    return prev


def cmd_del(args: CmdArgs) -> None:
    """Restore the saved originals; always succeeds once the config parses (upstream's DEL ignores restore
    errors too). The saved file goes once restored, or when there is nothing left to restore it to."""
    from cni_common import link_tuning, netlink
    from cni_common.netns import NetNS, NetNSGone

    tc = parse_conf(args, for_add=False)
    path = link_tuning.backup_path(tc.data_dir, args.container_id, args.ifname)
    saved = link_tuning.load_backup(path)
    if saved is None:
        return
    try:
        ns = NetNS(args.netns) if args.netns else None
    except NetNSGone:
        ns = None
    if ns is None:
        link_tuning.remove_backup(path)
        return
    with ns, netlink.open_conn(ns) as cont:
        link = netlink.find_link(cont, args.ifname)
        if link is not None:
            try:
                link_tuning.apply(cont, link.index, saved)
            except CNIError as exc:
                log.warning("failed to restore %s (kept %s): %s", args.ifname, path, exc.msg)
                return
    link_tuning.remove_backup(path)


def cmd_check(args: CmdArgs) -> None:
    from cni_common import link_tuning, netlink, sysctl
    from cni_common.netns import NetNS

    tc = parse_conf(args)
    _require_prev(tc)
    with NetNS(args.netns) as ns, netlink.open_conn(ns) as cont:
        with ns.entered():
            for key, parts, value in tc.sysctls:
                current = sysctl.read_beneath(parts)
                if current.split() != value.split():
                    raise check_failed(f"Error: Tuning configured value of {key} is {value}, current value is "
                                       f"{current.strip()}")
        link = _container_link(cont, args.ifname)
        wanted = LinkSettings(mac=tc.link.mac, promisc=tc.promisc, mtu=tc.link.mtu, allmulti=tc.link.allmulti,
                              txqlen=tc.link.txqlen)
        found = link_tuning.differences(link, wanted)
        if found:
            raise check_failed(f"{args.ifname}: {'; '.join(found)}")


def main(**streams: Any) -> int:
    """``streams`` (environ, stdin, stdout, stderr) let tests drive the plugin in-process."""
    return plugin_main(CNIFuncs(add=cmd_add, delete=cmd_del, check=cmd_check), about=about_line("tuning"),
                       **streams)


if __name__ == "__main__":
    sys.exit(main())
