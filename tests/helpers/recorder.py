"""Record what a runtime really sends to plugins (CNI_* env and the stdin config).

`recording_bin_dir()` fills a bin dir with tiny shell wrappers, one per
plugin, that save the call and then exec the real binary with the same stdin,
so containerd/libcni behave exactly as without them. Tests then assert on the
requests (e.g. that CRI sends `runtimeConfig.portMappings` with `HostPort`).
The wrappers are real files, so they also work where the bin dir is bind-mounted
(ctr_run.py).
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any, NamedTuple

_WRAPPER = """#!/bin/sh
# Test recorder: save the CNI call, then run the real plugin on the same stdin.
n=$(date +%s%N)-$$
env | grep '^CNI_' > {log}/$n.env
tee {log}/$n.stdin | exec {real} "$@"
"""


class RecordedCall(NamedTuple):
    """One plugin invocation as the runtime made it."""

    command: str  # CNI_COMMAND
    env: dict[str, str]  # the CNI_* variables
    conf: Any  # parsed stdin JSON (raw text if not JSON)


def recording_bin_dir(dest: Path, binaries: dict[str, Path], log_dir: Path) -> Path:
    """Write a recording wrapper `dest/<name>` for each `name -> real binary`; calls go to `log_dir`."""
    dest.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    for name, real in binaries.items():
        wrapper = dest / name
        wrapper.unlink(missing_ok=True)  # never write through an existing (hard) link
        wrapper.write_text(_WRAPPER.format(log=shlex.quote(str(log_dir)), real=shlex.quote(str(real))))
        wrapper.chmod(0o755)
    return dest


def recorded_calls(log_dir: Path) -> list[RecordedCall]:
    """All recorded calls, oldest first."""
    calls = []
    for env_file in sorted(log_dir.glob("*.env"), key=lambda p: [int(x) for x in p.stem.split("-")]):
        env = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)
        text = env_file.with_suffix(".stdin").read_text() if env_file.with_suffix(".stdin").exists() else ""
        try:
            conf: Any = json.loads(text)
        except ValueError:
            conf = text
        calls.append(RecordedCall(env.get("CNI_COMMAND", ""), env, conf))
    return calls
