"""Delegation to another plugin (IPAM), exactly as the spec and libcni's invoke package do it.

The delegate is found by scanning ``CNI_PATH`` in order, and runs with the caller's environment (only
``CNI_COMMAND`` changed) and the caller's stdin bytes unchanged: the whole request, not just the ``ipam``
section. Its stderr flows to ours; its stdout is the result or the error JSON, which becomes our error.

When the file found is this very build of the suite (same bundle hash: see :mod:`cni_common.bundle.trailer`)
and the program registered that type as able to (:mod:`cni_common.inprocess`), the delegate runs in this
process instead, through the same :func:`cni_common.skel.plugin_main` with the same environment and stdin bytes,
and its output is parsed exactly as a child's would be. That saves a process start per ADD and DEL; any other
binary (the Go host-local, another version of ours) is executed as the spec says.
``CNI_SUITE_EXEC_DELEGATES=1`` turns the shortcut off. (:mod:`cni_common.bundle.trailer` is imported with this
module: a warm process preloads this module but not the packaging package, and an import inside every delegating
call cost a warm child a dozen file system calls and the module's execution.)
"""

from __future__ import annotations

import errno
import io
import json
import os
import sys
import time

from . import spawn
from .bundle.trailer import build_hash
from .errors import CNIError, ErrorCode, PluginCode
from .log import get_logger
from .record import record
from .skel import CmdArgs
from .types import Result

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~4 ms per plugin process)
if TYPE_CHECKING:
    from typing import Callable, Optional

    from .types import IPAddress

log = get_logger(__name__)

_TEXT_BUSY_RETRIES = 5


def find_in_path(plugin_type: str, path: list[str]) -> str:
    """The first regular, executable file named ``plugin_type`` in the ``CNI_PATH`` directories (every
    delegation of this suite is to an IPAM plugin: the messages name ``ipam.type``)."""
    if not plugin_type or "/" in plugin_type or "\\" in plugin_type or plugin_type in (".", ".."):
        raise CNIError(ErrorCode.INVALID_CONFIG, f"invalid plugin type {plugin_type!r} (ipam.type)",
                       "a type is a file name, without any path separator")
    if not path:
        raise CNIError(ErrorCode.INVALID_ENV, "required env variables [CNI_PATH] missing",
                       f"needed to find plugin {plugin_type!r}")
    found = spawn.find_executable(plugin_type, path)
    if found is None:
        raise CNIError(PluginCode.DELEGATE_NOT_FOUND, f"failed to find plugin {plugin_type!r} in path {path}")
    return found


@record(frozen=True)
class Outcome:
    """What a delegate run produced: its exit code and its stdout."""

    returncode: int
    stdout: bytes


def _in_process_main(plugin_type: str, binary: str) -> Optional[Callable[..., int]]:
    """The delegate's ``main`` when ``binary`` is this same build and that plugin can run in-process."""
    if not getattr(sys, "frozen", False) or os.environ.get("CNI_SUITE_EXEC_DELEGATES", "") == "1":
        return None
    from . import inprocess

    load_main = inprocess.loader_of(plugin_type)
    if load_main is None:
        return None
    own_build = os.path.basename(os.path.dirname(sys.executable))
    if build_hash(binary) != own_build:
        return None
    return load_main()


def _run_in_process(main: Callable[..., int], env: dict[str, str], stdin_data: bytes) -> Outcome:
    out = io.StringIO()
    code = main(environ=env, stdin=io.BytesIO(stdin_data), stdout=out, stderr=sys.stderr)
    return Outcome(code, out.getvalue().encode())


def _run(binary: str, env: dict[str, str], stdin_data: bytes) -> Outcome:
    """Exec the delegate, retrying "text file busy" like libcni (a runtime may be replacing the binary)."""
    for attempt in range(_TEXT_BUSY_RETRIES):
        try:
            proc = spawn.run([binary], stdin_data, env, capture_stderr=False)
            return Outcome(proc.returncode, proc.stdout)
        except OSError as exc:
            if exc.errno != errno.ETXTBSY or attempt == _TEXT_BUSY_RETRIES - 1:
                raise CNIError(ErrorCode.INTERNAL, f"failed to execute plugin {binary!r}", str(exc)) from exc
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


def _delegate_error(plugin_type: str, verb: str, proc: Outcome) -> CNIError:
    """The delegate's error JSON as our error, keeping its code so the runtime sees the real cause."""
    try:
        payload = json.loads(proc.stdout)
        code = int(payload["code"])
        msg = str(payload.get("msg", ""))
        details = str(payload.get("details", "") or "")
    except (ValueError, KeyError, TypeError):
        return CNIError(ErrorCode.INTERNAL, f"delegate {plugin_type!r} failed ({verb}) with exit status "
                        f"{proc.returncode}", proc.stdout.decode(errors="replace")[:500])
    return CNIError(code, msg, details)


def delegate(verb: str, plugin_type: str, args: CmdArgs) -> Optional[Result]:
    """Run ``plugin_type`` for ``verb`` with the caller's request; returns the Result for ADD, else None."""
    binary = find_in_path(plugin_type, args.path)
    env = dict(args.env)
    env["CNI_COMMAND"] = verb
    in_process = _in_process_main(plugin_type, binary)
    if in_process is not None:
        log.debug("%s %s: in-process (%s is this build)", plugin_type, verb, binary)
        proc = _run_in_process(in_process, env, args.stdin_data)
    else:
        log.debug("%s %s: exec %s", plugin_type, verb, binary)
        proc = _run(binary, env, args.stdin_data)
    if proc.returncode != 0:
        raise _delegate_error(plugin_type, verb, proc)
    if verb != "ADD":
        return None
    try:
        payload = json.loads(proc.stdout)
    except ValueError as exc:
        raise CNIError(ErrorCode.DECODING_FAILURE, f"delegate {plugin_type!r} printed a result that is not JSON",
                       str(exc)) from exc
    return Result.from_dict(payload, args.cni_version)


def held_addresses(plugin_type: str, args: CmdArgs) -> list[IPAddress]:
    """The addresses IPAM ``plugin_type`` holds for the attachment of ``args`` (container ID and ifname): what a
    DEL without ``prevResult`` needs to find the rules made for them.

    The CNI protocol has no verb for this question. An IPAM type of this build answers it in this process, from
    its own records, through what the program registered (:mod:`cni_common.inprocess`); its records' format is
    the type's (host-local's files are the same for ours and Go's), so the answer holds whichever program of
    that type ``CNI_PATH`` has. Any other IPAM is not asked: the plain answer is none, and the caller keeps to
    its other sources (the interface, ``prevResult``). Never raises: a DEL must not fail on it.
    """
    from . import inprocess

    load = inprocess.held_loader_of(plugin_type)
    if load is None:
        return []
    try:
        return load()(args)
    except CNIError as exc:
        log.debug("IPAM %r: the addresses held are unknown: %s", plugin_type, exc)
        return []


def delegate_del_quietly(plugin_type: str, args: CmdArgs) -> None:
    """IPAM DEL during the rollback of a failed ADD: a failure here is logged, the original error wins."""
    try:
        delegate("DEL", plugin_type, args)
    except CNIError as exc:
        log.warning("rollback: IPAM %r DEL failed: %s", plugin_type, exc)
