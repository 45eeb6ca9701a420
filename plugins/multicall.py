"""One executable for the whole suite, dispatching on the name it was run as; the suite's one table of types.

The runtime execs ``/opt/cni/bin/<type>``; every type is the same program under another name (a link or a
copy), so ``sys.argv[0]``'s base name picks the plugin. Each plugin module is imported only when chosen, and
VERSION is answered before anything else is imported: the runtime may call it often and Go answers in 2 ms.
No ``typing`` import here for the same reason (it costs more than the whole VERSION answer).

This module sits above the library: it knows every plugin, so ``cni_common`` does not have to. It tells the
library which plugins may run in-process as delegates (:mod:`cni_common.inprocess`), instead of the library
importing them.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~4 ms per plugin process)
if TYPE_CHECKING:
    from typing import Any, Callable

#: Every CNI type the suite ships: the name the runtime execs -> the module whose ``main()`` runs it. The one
#: list: build.sh makes one file per name, the PyInstaller spec collects these modules, the packer writes the
#: names for the launcher's VERSION answer, tests/helpers/paths.py reads it, and a unit test checks that
#: setup.cfg's console scripts match it.
PLUGINS = {
    # main: each makes the container's interface
    "bridge": "plugins.bridge",
    "ptp": "plugins.ptp",
    "macvlan": "plugins.macvlan",
    "ipvlan": "plugins.ipvlan",
    "vlan": "plugins.vlan",
    "dummy": "plugins.dummy",
    "tap": "plugins.tap",
    "host-device": "plugins.host_device",
    "loopback": "plugins.loopback",
    "vxlan": "plugins.vxlan",
    # IPAM: addresses for a main plugin
    "host-local": "ipam.host_local",
    "static": "ipam.static",
    "dhcp": "ipam.dhcp",
    # meta: chained after a main plugin
    "portmap": "plugins.portmap",
    "tuning": "plugins.tuning",
    "firewall": "plugins.firewall",
    "bandwidth": "plugins.bandwidth",
    "sbr": "plugins.sbr",
    "vrf": "plugins.vrf",
}

#: Plugins whose ``main`` accepts ``environ``/``stdin``/``stdout``/``stderr``, so that a plugin of the same
#: build can run them in-process as its delegate (:mod:`cni_common.invoke`).
IN_PROCESS_DELEGATES = ("host-local", "static")

#: IPAM plugins among them whose module has ``held_addresses(args)``: the addresses it holds for an attachment,
#: asked by a DEL without prevResult (:func:`cni_common.invoke.held_addresses`).
HOLDS_ADDRESSES = ("host-local",)

#: Commands that are not CNI calls: the words after the program's name (``cni-suite <mode> ARGS``, or a
#: plugin's name followed by the rest: ``vxlan agent ARGS``) -> ``"module:function"``, called with the
#: remaining arguments and returning the exit code. A mode is looked up before the plugins, longest key first.
MODES = {
    ("vxlan", "agent"): "cni_common.overlay.agent:run_cli",
    ("install",): "plugins.install:main",
    ("inspect",): "cni_common.inspect:main",
    ("dhcp", "daemon"): "cni_common.dhcp.daemon:run_cli",
    ("warm-server",): "plugins.warm:main",
}


def main(argv: list[str] | None = None) -> int:
    """Run the plugin named by ``argv[0]`` (or by ``argv[1]`` when called as ``cni-suite <type>``), or a mode.

    Called as the program (``argv`` None), a CNI call ends in :func:`_exit_now`, without returning.
    """
    as_program = argv is None
    argv = sys.argv if argv is None else argv
    name = os.path.basename(argv[0])
    words = [name, *argv[1:]] if name in PLUGINS else argv[1:]
    # An installed plugin file runs the suite's own modes too (`/opt/cni/bin/bridge inspect`): the node may have
    # no file named cni-suite.
    mode = _find_mode(words) or (_find_mode(words[1:]) if name in PLUGINS else None)
    if mode is not None:
        target, rest = mode
        return _load(target)(rest)
    if name not in PLUGINS and words and words[0] in PLUGINS:
        name = words[0]
        sys.argv = argv = argv[1:]  # the plugin sees itself as argv[0], as when run under its own name
    if name not in PLUGINS:
        modes = ", ".join(" ".join(key) for key in MODES)
        sys.stderr.write(f"cni-suite: run me as one of {', '.join(sorted(PLUGINS))} "
                         f"(a link or copy under that name), as 'cni-suite <type>', or as 'cni-suite <mode> ...' "
                         f"({modes})\n")
        return 2
    is_plugin_call = len(argv) < 2  # a CNI call has no arguments
    if is_plugin_call and os.environ.get("CNI_COMMAND", "").strip() == "VERSION":
        from cni_common.version import version_info_json

        sys.stdout.write(version_info_json())
        return 0
    register_in_process_delegates()
    code = _load(PLUGINS[name] + ":main")()
    if as_program and is_plugin_call:
        _exit_now(code)
    return code


def _find_mode(words: list[str]) -> tuple[str, list[str]] | None:
    """The mode whose words start ``words`` (the longest key wins) and the arguments after them."""
    for key, target in sorted(MODES.items(), key=lambda item: -len(item[0])):
        if tuple(words[:len(key)]) == key:
            return target, words[len(key):]
    return None


def _load(target: str) -> Callable[..., int]:
    """The function ``"module:function"`` names, its module imported now (``__import__``: no importlib)."""
    module, _, function = target.partition(":")
    return getattr(__import__(module, fromlist=[function]), function)


def register_in_process_delegates() -> None:
    """Let a delegating plugin run the :data:`IN_PROCESS_DELEGATES` in its own process. Once per process: a warm
    process registers them before it forks, and its children find them (registering again made new loaders and
    rewrote tables shared with the warm process: ~35 page faults, ~0.1 ms, per call)."""
    from cni_common import inprocess

    if all(inprocess.loader_of(plugin_type) is not None for plugin_type in IN_PROCESS_DELEGATES):
        return
    for plugin_type in IN_PROCESS_DELEGATES:
        held = _loader(PLUGINS[plugin_type] + ":held_addresses") if plugin_type in HOLDS_ADDRESSES else None
        inprocess.register(plugin_type, _loader(PLUGINS[plugin_type] + ":main"), held)


def _loader(target: str) -> Callable[[], Callable[..., Any]]:
    """A function of a plugin (its ``main``, an IPAM's ``held_addresses``), imported only when asked for."""
    return lambda: _load(target)


def _exit_now(code: int) -> None:
    """End the process without the interpreter's finalization: tearing down every module and object costs
    ~20 ms per plugin process (measured), paid on every ADD and DEL, for nothing a CNI call needs.

    stdout (the CNI result) and stderr are flushed first; the log flushes every line itself, and nothing
    on a plugin call's path registers ``atexit`` handlers or leaves buffered files open.
    """
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        code = code or 1  # the runtime did not get our answer: do not claim success
    try:
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    os._exit(code)
