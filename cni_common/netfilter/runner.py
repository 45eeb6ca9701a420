"""The only code in the suite that executes iptables, ip6tables and nft.

Everything acts on the network namespace of the calling process. Changes go through one
``ip(6)tables-restore --noflush -w`` or one ``nft -f -`` per call, so each change is a single kernel
transaction and the xtables lock is taken once (and waited for, never failed on).

Read-modify-write races with other writers (another plugin, kube-proxy) are handled by :func:`transact`:
the batch is computed from a fresh read and retried when the kernel rejects it because the state moved.
Our own concurrent invocations are serialised by a file lock, because a restore that declares a shared
chain which a parallel invocation has just created would flush it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import subprocess
from typing import Any, Callable, Iterator, Optional

from ..errors import CNIError, PluginCode

log = logging.getLogger(__name__)

LOCK_PATH = "/run/lock/cni-netfilter.lock"
XTABLES_WAIT_SECONDS = "30"
ATTEMPTS = 3


class NetfilterError(CNIError):
    """A netfilter command failed; ``details`` carries its stderr."""

    def __init__(self, msg: str, details: str = "") -> None:
        super().__init__(PluginCode.NETFILTER_FAILURE, msg, details)


def run(argv: list[str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    """Run one netfilter command, capturing output; a missing binary is a :class:`NetfilterError`."""
    try:
        return subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise NetfilterError(f"failed to run {argv[0]}", str(exc)) from exc


def iptables_cmd(family: int, tool: str = "") -> str:
    """``iptables``/``ip6tables`` (+ ``-save``/``-restore``) for an address family (4 or 6)."""
    return ("iptables" if family == 4 else "ip6tables") + tool


def iptables_save(family: int, table: str = "nat") -> str:
    """The current rules of one table, in iptables-save syntax."""
    proc = run([iptables_cmd(family, "-save"), "-t", table])
    if proc.returncode != 0:
        raise NetfilterError(f"{iptables_cmd(family, '-save')} -t {table} failed", proc.stderr.strip())
    return proc.stdout


def iptables_restore(family: int, text: str) -> subprocess.CompletedProcess[str]:
    """Apply a restore batch without flushing anything else, waiting for the xtables lock."""
    return run([iptables_cmd(family, "-restore"), "--noflush", "-w", XTABLES_WAIT_SECONDS], text)


def nft_list(*objects: str) -> Optional[list[dict[str, Any]]]:
    """``nft -j list <objects>`` as the list of JSON objects, or None when the table or chain does not exist."""
    proc = run(["nft", "-j", "list", *objects])
    if proc.returncode != 0:
        if "No such file or directory" in proc.stderr:
            return None
        raise NetfilterError(f"nft list {' '.join(objects)} failed", proc.stderr.strip())
    return list(json.loads(proc.stdout).get("nftables", []))


def nft_apply(script: str) -> subprocess.CompletedProcess[str]:
    """Apply an nft script as one transaction."""
    return run(["nft", "-f", "-"], script)


@contextlib.contextmanager
def suite_lock() -> Iterator[None]:
    """Serialise read-modify-write cycles between our own plugin processes."""
    os.makedirs(os.path.dirname(LOCK_PATH), exist_ok=True)
    fd = os.open(LOCK_PATH, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def transact(what: str, build: Callable[[], Optional[str]],
             apply: Callable[[str], subprocess.CompletedProcess[str]]) -> None:
    """Compute a batch from fresh state and apply it; retry when a concurrent writer invalidated it.

    ``build`` returns None when nothing needs to change (then nothing is executed).
    """
    last = ""
    for attempt in range(ATTEMPTS):
        with suite_lock():
            batch = build()
            if batch is None:
                return
            proc = apply(batch)
        if proc.returncode == 0:
            return
        last = proc.stderr.strip()
        log.warning("%s: attempt %d failed: %s", what, attempt + 1, last)
    raise NetfilterError(f"failed to {what}", last)


_support_cache: dict[str, bool] = {}


def supports_iptables() -> bool:
    """True when the iptables API is usable here (legacy or iptables-nft), as upstream's SupportsIPTables."""
    if "iptables" not in _support_cache:
        ok = shutil.which("iptables") is not None and run(
            ["iptables", "-w", XTABLES_WAIT_SECONDS, "-t", "filter", "-S", "INPUT", "1"]).returncode == 0
        _support_cache["iptables"] = ok
    return _support_cache["iptables"]


def supports_nftables() -> bool:
    """True when nft can make changes here (checked without changing anything)."""
    if "nftables" not in _support_cache:
        ok = shutil.which("nft") is not None and run(
            ["nft", "--check", "-f", "-"], "add table ip cni_supports_nftables_test\n").returncode == 0
        _support_cache["nftables"] = ok
    return _support_cache["nftables"]
