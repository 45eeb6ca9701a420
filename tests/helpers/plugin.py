"""Exec one plugin binary directly, bypassing libcni, for bad-input tests.

libcni refuses or rewrites malformed requests before a plugin sees them, so
tests of a plugin's own validation (missing env vars, broken JSON, wrong
cniVersion) need to drive the binary by hand, like skel's tests do.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any, Mapping, NamedTuple

from tests.helpers import warm
from tests.helpers.cnitool import parse_json_or_text
from tests.helpers.netns import Netns


class PluginResult(NamedTuple):
    """rc, stdout (parsed JSON when it parses, else text) and stderr of one exec."""

    rc: int
    out: Any
    stderr: str


def run_plugin(binary: str | os.PathLike[str], command: str, conf: Mapping[str, Any] | bytes | str, *,
               netns: Netns | str = "", ifname: str = "eth0", container_id: str = "cnt-test-id",
               cni_args: str = "", cni_path: str | os.PathLike[str] = "", in_netns: Netns | None = None,
               env: Mapping[str, str | None] | None = None, timeout: float = 60) -> PluginResult:
    """Exec `binary` with CNI_COMMAND=`command` and `conf` on stdin.

    `conf` is a dict (JSON-encoded), or bytes/str sent verbatim (for broken
    input). The env is minimal (PATH + the CNI_* vars) so nothing leaks in from
    the test process; `env` overrides entries, and a value of None removes one
    (to test a missing CNI_NETNS, say). `in_netns` runs the plugin inside that
    namespace (pass the host netns for anything that changes the kernel);
    `cni_path` defaults to the binary's own folder so delegation finds IPAM.
    """
    full_env: dict[str, str | None] = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": container_id,
        "CNI_NETNS": netns.path if isinstance(netns, Netns) else netns,
        "CNI_IFNAME": ifname,
        "CNI_ARGS": cni_args,
        "CNI_PATH": str(cni_path or Path(binary).parent),
        **warm.passthrough(),
    }
    full_env.update(env or {})
    clean_env = {k: v for k, v in full_env.items() if v is not None}
    if isinstance(conf, (bytes, str)):
        stdin = conf.encode() if isinstance(conf, str) else conf  # bytes go verbatim (UTF-16, broken UTF-8...)
    else:
        stdin = json.dumps(conf).encode()
    argv = [str(binary)]
    if in_netns is not None:
        argv = in_netns.cmd(argv)
    proc = subprocess.run(argv, input=stdin, env=clean_env, capture_output=True, timeout=timeout)
    return PluginResult(proc.returncode, parse_json_or_text(proc.stdout.decode(errors="replace")),
                        proc.stderr.decode(errors="replace"))
