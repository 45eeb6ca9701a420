"""One executable for the whole suite, dispatching on the name it was run as.

The runtime execs ``/opt/cni/bin/<type>``; every type is the same program under another name (a link or a
copy), so ``sys.argv[0]``'s base name picks the plugin. Each plugin module is imported only when chosen, and
VERSION is answered before anything else is imported: the runtime may call it often and Go answers in 2 ms.
No ``typing`` import here for the same reason (it costs more than the whole VERSION answer).
"""

from __future__ import annotations

import os
import sys


def _bridge():
    from plugins.bridge import main

    return main


def _host_local():
    from ipam.host_local import main

    return main


def _portmap():
    from plugins.portmap import main

    return main


def _vxlan():
    from plugins.vxlan import main

    return main


# Plugins whose ``main`` accepts ``environ``/``stdin``/``stdout``/``stderr``, so that a plugin of the same
# build can run them in-process as its delegate (cni_common.invoke).
IN_PROCESS_DELEGATES = {"host-local": _host_local}


def _inspect():
    from cni_common.inspect import main

    return main


# Modes that are not CNI calls: ``cni-suite <mode> ARGS...`` (under any of the program's names), given
# ``ARGS`` only. A CNI call has no arguments, so no plugin call can be taken for one.
MODES = {"inspect": _inspect}

PLUGINS = {
    "bridge": _bridge,
    "host-local": _host_local,
    "portmap": _portmap,
    "vxlan": _vxlan,
}


def main(argv: list[str] | None = None) -> int:
    """Run the plugin named by ``argv[0]`` (or by ``argv[1]`` when called as ``cni-suite <type>``).

    Called as the program (``argv`` None), a CNI call ends in :func:`_exit_now`, without returning.
    """
    as_program = argv is None
    argv = sys.argv if argv is None else argv
    if len(argv) > 1 and argv[1] in MODES:
        return MODES[argv[1]]()(argv[2:])
    name = os.path.basename(argv[0])
    if name not in PLUGINS and len(argv) > 1 and argv[1] in PLUGINS:
        name = argv[1]
        sys.argv = argv = argv[1:]  # a plugin with modes of its own (``vxlan agent``) reads sys.argv
    loader = PLUGINS.get(name)
    if loader is None:
        sys.stderr.write(f"cni-suite: run me as one of {', '.join(sorted(PLUGINS))} "
                         f"(a link or copy under that name), or as 'cni-suite <type>' or 'cni-suite inspect'\n")
        return 2
    is_plugin_call = len(argv) < 2  # a CNI call has no arguments; ``vxlan agent ...`` is a mode of its own
    if is_plugin_call and os.environ.get("CNI_COMMAND", "").strip() == "VERSION":
        from cni_common.version import version_info_json

        sys.stdout.write(version_info_json())
        return 0
    code = loader()()
    if as_program and is_plugin_call:
        _exit_now(code)
    return code


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
