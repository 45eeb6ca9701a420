"""Drive plugins through libcni 1.1.2 (tests/cnitool), the way a runtime does.

The driver runs *inside the test host namespace*, so the plugins it execs make
their bridges and iptables rules there and never in the machine's namespace.
Each `Cnitool` owns a NETCONFPATH and a libcni cache dir, so tests never read
or write /etc/cni/net.d or /var/lib/cni.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, NamedTuple

from tests.helpers import warm
from tests.helpers.netns import Netns


class ToolResult(NamedTuple):
    """What one driver call produced.

    `out` is the parsed stdout JSON when it parses (the ADD result, the
    `version` info, or the error object `{"code","msg","details","error"}`),
    otherwise the raw text ("" for a successful CHECK/DEL).
    """

    rc: int
    out: Any
    stderr: str


class Cnitool:
    """One network's worth of libcni: config dir + cache dir + CNI_PATH + host netns."""

    def __init__(self, binary: Path, host: Netns, workdir: Path, cni_path: str | os.PathLike[str],
                 extra_env: dict[str, str] | None = None) -> None:
        self.binary = Path(binary)
        self.extra_env = dict(extra_env or {})  # e.g. CNI_SUITE_CACHE_DIR: libcni passes it on to the plugins
        self.host = host
        self.conf_dir = workdir / "net.d"
        self.cache_dir = workdir / "cni-cache"
        self.cni_path = str(cni_path)
        self.conf_dir.mkdir(parents=True, exist_ok=True)

    def write_conflist(self, conflist: dict[str, Any], filename: str | None = None) -> Path:
        """Write `conflist` as `<name>.conflist` (or `filename`) into NETCONFPATH."""
        path = self.conf_dir / (filename or f"{conflist['name']}.conflist")
        path.write_text(json.dumps(conflist, indent=2))
        return path

    def cache_files(self) -> list[Path]:
        """libcni result-cache files currently present (`<net>-<id>-<ifname>`)."""
        results = self.cache_dir / "results"
        return sorted(results.iterdir()) if results.is_dir() else []

    def add(self, net: str, container: Netns | str, **kw: Any) -> ToolResult:
        """ADD the conflist `net` to `container` (a Netns or a netns path)."""
        return self.run("add", net, container, **kw)

    def check(self, net: str, container: Netns | str, **kw: Any) -> ToolResult:
        """CHECK, with the cached ADD result as prevResult (as libcni does)."""
        return self.run("check", net, container, **kw)

    def delete(self, net: str, container: Netns | str, **kw: Any) -> ToolResult:
        """DEL (plugins in reverse order; removes the cache entry on success).

        Pass the same `cap_args` as on ADD, as runtimes do: libcni 1.1.2 does
        not restore them from its cache, and Go portmap deletes nothing when
        runtimeConfig.portMappings is absent.
        """
        return self.run("del", net, container, **kw)

    def version(self, net: str) -> ToolResult:
        """VERSION of the first plugin of `net`: `{"type", "supportedVersions"}`."""
        return self.run("version", net, None)

    def run(self, command: str, net: str, container: Netns | str | None, *, ifname: str = "eth0",
            cni_args: dict[str, str] | str | None = None, cap_args: dict[str, Any] | None = None,
            container_id: str | None = None, timeout: float = 60) -> ToolResult:
        """Run `cnitool command net [netns]` in the host namespace.

        `cni_args` may be a dict (joined `K=V;...`) or a raw string (to test
        malformed values). `container_id` defaults to the driver's own
        derivation from the netns path (stable per container netns).
        """
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "NETCONFPATH": str(self.conf_dir),
            "CNI_PATH": self.cni_path,
            "CNI_CACHE_DIR": str(self.cache_dir),
            "CNI_IFNAME": ifname,
            **warm.passthrough(),
            **self.extra_env,
        }
        if cni_args:
            env["CNI_ARGS"] = cni_args if isinstance(cni_args, str) else ";".join(
                f"{k}={v}" for k, v in cni_args.items())
        if cap_args is not None:
            env["CAP_ARGS"] = json.dumps(cap_args)
        if container_id:
            env["CNI_CONTAINERID"] = container_id
        argv = [str(self.binary), command, net]
        if container is not None:
            argv.append(container.path if isinstance(container, Netns) else str(container))
        proc = self.host.run(argv, check=False, env=env, timeout=timeout)
        return ToolResult(proc.returncode, parse_json_or_text(proc.stdout), proc.stderr)


def parse_json_or_text(text: str) -> Any:
    """JSON value of `text` if it is JSON, else the stripped text."""
    try:
        return json.loads(text)
    except ValueError:
        return text.strip()
