"""Drive a plugin's ``main`` in this process (no exec: ~1000x faster than the built files), never the kernel.

``install_guard`` replaces every entry point through which a plugin would change the kernel (the bridge's
attach/detach/check, portmap's netfilter calls, the overlay and its etcd client) with one that raises
:class:`ReachedKernel`: an in-process call runs in the test runner's own network namespace, the machine's,
which tests must never change. A call that gets that far was accepted by validation; :func:`call` reports it
as ``reached_kernel``.
"""

from __future__ import annotations

import io
import json
from typing import Any, Callable, Mapping, NamedTuple

import pytest

KERNEL_ENTRY_POINTS = {
    "cni_common.attach.add": ("attach",),
    "cni_common.attach.delete": ("detach",),
    "cni_common.attach.check": ("check",),
    "cni_common.netfilter": ("forward_ports", "unforward_ports", "check_ports", "gc_ports", "flush_udp_conntrack",
                             "gc_masquerade", "teardown_masquerade", "setup_masquerade"),
    "cni_common.overlay.node": ("prepare", "sync"),
    "cni_common.overlay.attach": ("add", "delete", "check", "container_addresses"),
    "cni_common.shaping": ("host_veth", "veth_peer", "shape", "unshape", "check", "stale_ifbs"),
    "cni_common.routed.add": ("attach",),
    "cni_common.routed.check": ("check",),
    "cni_common.veth": ("release",),
    "cni_common.netns": ("_open_netns_fd",),  # loopback opens the container's namespace itself
    "cni_common.links.attach": ("add", "delete", "check", "status", "gc"),
    "cni_common.links.device": ("find_host_device", "give_back", "reclaim_orphan", "restore_host_side",
                                "save_host_side", "forget_host_side", "prune_host_sides"),
    "cni_common.srcroute": ("setup", "teardown", "verify"),
    "cni_common.vrf": ("attach", "ensure", "enslave", "release", "verify"),
}


class ReachedKernel(Exception):
    """Raised in place of a change to the kernel."""


class Outcome(NamedTuple):
    rc: int
    out: Any            # the parsed JSON on stdout, None when empty, the raw text when not JSON
    stdout: str
    stderr: str

    @property
    def reached_kernel(self) -> bool:
        return isinstance(self.out, dict) and "ReachedKernel" in str(self.out.get("details", ""))


def install_guard(monkeypatch: pytest.MonkeyPatch, data_root: str = "") -> None:
    """Stop every call at the kernel; with ``data_root``, also refuse a host-local data dir outside it (a
    generated stdin may have a flipped byte in ``dataDir``: the plugins run as root)."""
    import importlib

    def refuse(*_a: Any, **_k: Any) -> None:
        raise ReachedKernel("validation passed: the call reached the kernel")

    for module_name, names in KERNEL_ENTRY_POINTS.items():
        module = importlib.import_module(module_name)
        for name in names:
            if hasattr(module, name):
                monkeypatch.setattr(module, name, refuse)
    from cni_common.overlay import node

    # vxlan: the etcd client would connect to whatever endpoints a generated config names.
    monkeypatch.setattr(node.Store, "open", classmethod(lambda cls, *a, **k: refuse()))
    if data_root:
        from cni_common.alloc import disk

        real_acquire = disk.DiskStore._acquire

        def acquire_inside(store: disk.DiskStore) -> int:  # the lock's open is the store's first write
            import os

            if not os.path.realpath(store.dir).startswith(os.path.realpath(data_root) + os.sep):
                raise ReachedKernel(f"data dir {store.dir!r} outside the test's {data_root!r}")
            return real_acquire(store)

        monkeypatch.setattr(disk.DiskStore, "_acquire", acquire_inside)


def main_of(plugin: str) -> Callable[..., int]:
    """The ``main`` of the plugin of this ``type``, by the multicall table (every plugin's main takes the streams)."""
    import importlib

    from plugins.multicall import PLUGINS

    if plugin not in PLUGINS:
        raise ValueError(plugin)
    return importlib.import_module(PLUGINS[plugin]).main


def call(plugin: str, verb: str, stdin: bytes | Mapping[str, Any], env: Mapping[str, str | None] | None = None
         ) -> Outcome:
    """One in-process call; ``env`` entries override the defaults (None removes one)."""
    environ: dict[str, str | None] = {"CNI_COMMAND": verb, "CNI_CONTAINERID": "cnt-prop", "CNI_IFNAME": "eth0",
                                      "CNI_NETNS": "/nonexistent/cnt-netns", "CNI_PATH": "/nonexistent-cnt-path"}
    environ.update(env or {})
    clean = {k: v for k, v in environ.items() if v is not None}
    data = stdin if isinstance(stdin, bytes) else json.dumps(stdin).encode()
    out, err = io.StringIO(), io.StringIO()
    rc = main_of(plugin)(environ=clean, stdin=io.BytesIO(data), stdout=out, stderr=err)
    text = out.getvalue()
    try:
        parsed = json.loads(text) if text.strip() else None
    except ValueError:
        parsed = text
    return Outcome(rc, parsed, text, err.getvalue())
