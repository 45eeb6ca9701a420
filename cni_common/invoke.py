"""Delegation to another plugin (IPAM), exactly as the spec and libcni's invoke package do it.

The delegate is found by scanning ``CNI_PATH`` in order, and runs with the caller's environment (only
``CNI_COMMAND`` changed) and the caller's stdin bytes unchanged: the whole request, not just the ``ipam``
section. Its stderr flows to ours; its stdout is the result or the error JSON, which becomes our error.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import subprocess
import time
from typing import Optional

from .errors import CNIError, ErrorCode, PluginCode
from .skel import CmdArgs
from .types import Result

log = logging.getLogger(__name__)

_TEXT_BUSY_RETRIES = 5


def find_in_path(plugin_type: str, path: list[str]) -> str:
    """The first regular, executable file named ``plugin_type`` in the ``CNI_PATH`` directories."""
    if not plugin_type or "/" in plugin_type or "\\" in plugin_type or plugin_type in (".", ".."):
        raise CNIError(ErrorCode.INVALID_CONFIG, f"invalid plugin type {plugin_type!r}",
                       "a type is a file name, without any path separator")
    if not path:
        raise CNIError(ErrorCode.INVALID_ENV, "required env variables [CNI_PATH] missing",
                       f"needed to find plugin {plugin_type!r}")
    for directory in path:
        candidate = os.path.join(directory, plugin_type)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise CNIError(PluginCode.DELEGATE_NOT_FOUND, f"failed to find plugin {plugin_type!r} in path {path}")


def _run(binary: str, env: dict[str, str], stdin_data: bytes) -> subprocess.CompletedProcess[bytes]:
    """Exec the delegate, retrying "text file busy" like libcni (a runtime may be replacing the binary)."""
    for attempt in range(_TEXT_BUSY_RETRIES):
        try:
            return subprocess.run([binary], input=stdin_data, stdout=subprocess.PIPE, env=env, check=False)
        except OSError as exc:
            if exc.errno != errno.ETXTBSY or attempt == _TEXT_BUSY_RETRIES - 1:
                raise CNIError(ErrorCode.INTERNAL, f"failed to execute plugin {binary!r}", str(exc)) from exc
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


def _delegate_error(plugin_type: str, verb: str, proc: subprocess.CompletedProcess[bytes]) -> CNIError:
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


def delegate_del_quietly(plugin_type: str, args: CmdArgs) -> None:
    """IPAM DEL during the rollback of a failed ADD: a failure here is logged, the original error wins."""
    try:
        delegate("DEL", plugin_type, args)
    except CNIError as exc:
        log.warning("rollback: IPAM %r DEL failed: %s", plugin_type, exc)
