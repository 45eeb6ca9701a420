"""host-local IPAM: hands out IPs from configured ranges and keeps the leases in files under ``dataDir``.

Drop-in for the Go plugin: same config keys, same on-disk format, same lock, so both can share a data dir.
Beyond upstream: GC and STATUS (spec 1.1.0), a rollback that never drops reservations held before the failed
ADD, and a DEL that reads only the reservations of the attachment (see :mod:`cni_common.alloc.disk`).
"""

from __future__ import annotations

import sys

# The store and the config parser are imported with the module, not inside each verb: every verb needs both,
# the program imports this module only for a verb (it answers VERSION before), and an import statement inside a
# function runs importlib's Python (``_handle_fromlist``, ``ModuleSpec.parent``) on every call, which a warm
# child pays in time and in pages copied from the warm process. The allocator is ADD's alone.
from cni_common.alloc import config
from cni_common.alloc.disk import KERNEL_BOOT_ID, DiskStore, current_boot_id
from cni_common.errors import CNIError, ErrorCode, PluginCode
from cni_common.log import get_logger
from cni_common.skel import CmdArgs, CNIFuncs, plugin_main
from cni_common.types import Result, prev_result_addresses
from cni_common.version import about_line

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~4 ms per plugin process)
if TYPE_CHECKING:
    from typing import Any

    from cni_common.types import IPAddress

ABOUT = about_line("host-local")
log = get_logger(__name__)

#: Tests only: a file to read as the kernel's boot ID, so a test can fake a reboot. Read from the request's
#: environment (one dict lookup); production reads /proc/sys/kernel/random/boot_id.
TEST_BOOT_ID_FILE_ENV = "CNI_SUITE_TEST_BOOT_ID_FILE"


def _boot_id(args: CmdArgs) -> "str | None":
    return current_boot_id(args.env.get(TEST_BOOT_ID_FILE_ENV) or KERNEL_BOOT_ID)


def _reclaiming_store(args: CmdArgs, data_dir: str, name: str, reclaim: bool) -> DiskStore:
    """The store of a call that may reserve or release: with ``reclaim`` (``reclaimAfterReboot``), it knows
    this boot's ID, records it with each reservation, and :meth:`DiskStore.reclaim_after_reboot` releases
    the reservations of earlier boots (the first call after a reboot, under the lock)."""
    return DiskStore(data_dir, name, _boot_id(args) if reclaim else None)


def cmd_add(args: CmdArgs) -> Result:
    """Reserve one IP per range set (all or nothing) and return them with the configured routes and DNS."""
    from cni_common.alloc.allocator import allocate  # a module, not a package: no importlib Python runs

    cfg = config.load(args.conf, args.cni_args(), args.cni_version)
    result = Result(routes=list(cfg.routes), cni_version=args.cni_version)
    if cfg.resolv_conf:
        result.dns = config.parse_resolv_conf(cfg.resolv_conf)
    store = _reclaiming_store(args, cfg.data_dir, cfg.name, cfg.reclaim_after_reboot)
    with store.lock():
        store.reclaim_after_reboot()
        result.ips = allocate(cfg.range_sets, store, args.container_id, args.ifname, cfg.requested_ips)
    return result


def cmd_del(args: CmdArgs) -> None:
    """Release the attachment's reservations; nothing to release is success (DEL is idempotent).

    Only ``dataDir`` and ``reclaimAfterReboot`` are read from the config (and ``prevResult``, which may be
    unreadable), so a DEL still works when the ranges no longer validate. An address of ``prevResult`` whose
    reservation file a crash left empty is released too. The list of what was released is formatted only
    for a debug log.
    """
    data_dir, reclaim = config.store_settings(args.conf)
    store = _reclaiming_store(args, data_dir, args.network_name, reclaim)
    with store.lock():
        store.reclaim_after_reboot()
        released = store.release_by_id(args.container_id, args.ifname)
        released += [addr.ip for addr in prev_result_addresses(args.conf, args.cni_version, args.ifname)
                     if addr.ip not in released and store.release_if_ownerless(addr.ip)]
    if log.is_debug():
        log.debug("released %s for %s/%s", [str(ip) for ip in released], args.container_id, args.ifname)


def held_addresses(args: CmdArgs) -> "list[IPAddress]":
    """The addresses the attachment (container ID, ifname) holds, read under the lock; [] when the network has
    no data dir. A delegating plugin's DEL without ``prevResult`` asks it in-process
    (:func:`cni_common.invoke.held_addresses`), so that only host-local reads host-local's files. Only
    ``dataDir`` is read from the config, as DEL does."""
    import os

    store = DiskStore(config.data_dir(args.conf), args.network_name)
    if not os.path.isdir(store.dir):
        return []
    with store.lock():
        return store.find_by_id(args.container_id, args.ifname)


def cmd_check(args: CmdArgs) -> None:
    """Every range set must hold a reservation of this attachment (upstream only checks that one exists)."""
    cfg = config.load(args.conf, args.cni_args(), args.cni_version)
    store = DiskStore(cfg.data_dir, cfg.name)
    with store.lock():
        held = store.find_by_id(args.container_id, args.ifname)
    for idx, range_set in enumerate(cfg.range_sets):
        if not any(range_set.contains(ip) for ip in held):
            raise CNIError(PluginCode.ADDRESS_UNAVAILABLE,
                           f"host-local: no address of container {args.container_id} interface {args.ifname!r} "
                           f"in range set {idx} ({range_set})",
                           f"held: {', '.join(map(str, held)) or 'none'}")


def cmd_gc(args: CmdArgs) -> None:
    """Release every reservation of this network that ``cni.dev/valid-attachments`` does not list."""
    from cni_common.alloc import gc
    from cni_common.config import valid_attachments

    valid = valid_attachments(args.conf)
    if valid is None:
        log.warning("GC without cni.dev/valid-attachments: releasing nothing")
        return
    data_dir, reclaim = config.store_settings(args.conf)
    store = _reclaiming_store(args, data_dir, args.network_name, reclaim)
    with store.lock():
        store.reclaim_after_reboot()
        gc.collect(store, valid)


def cmd_status(args: CmdArgs) -> None:
    """Code 50 when ADD cannot succeed: the data dir is unusable, or a range set has no free address.

    Read-only and lock-free (runtimes poll STATUS): it counts reservation file names, it never reads them.
    After a reboot, before the first ADD reclaimed the earlier boot's reservations, they do not count: a node
    reported "not ready" for want of addresses would never get the ADD that frees them.
    """
    cfg = config.load(args.conf, {}, args.cni_version)
    store = DiskStore(cfg.data_dir, cfg.name)
    problem = store.unusable_reason()
    if problem:
        raise CNIError(ErrorCode.NOT_AVAILABLE, f"host-local data dir unusable: {problem}")
    if cfg.reclaim_after_reboot and store.recorded_boot_id() not in (None, _boot_id(args)):
        return
    listed = store.listed_ips()
    for idx, range_set in enumerate(cfg.range_sets):
        used = sum(1 for ip in listed if range_set.contains(ip) and all(ip != r.gateway for r in range_set.ranges))
        if used >= range_set.size():
            raise CNIError(ErrorCode.NOT_AVAILABLE,
                           f"no IP addresses available in range set {idx}: {range_set}",
                           f"{used} of {range_set.size()} addresses reserved")


def main(**streams: Any) -> int:
    """Run host-local; ``streams`` (environ, stdin, stdout, stderr) let a plugin of the same build run it
    in-process as its delegate (:mod:`cni_common.invoke`)."""
    return plugin_main(CNIFuncs(add=cmd_add, delete=cmd_del, check=cmd_check, gc=cmd_gc, status=cmd_status),
                       about=ABOUT, **streams)


if __name__ == "__main__":
    sys.exit(main())
