"""A delegate gets the runtime's environment, not the frozen program's additions to it.

A frozen program's start-up may add variables of its own (PyInstaller's bootloader added ``_PYI_*`` and its own
``LD_LIBRARY_PATH``; our launcher starts the runner through the bundle's own loader with command-line options,
and the runner finds the bundle's libraries through its RPATH); passed on, they would make system tools load the
bundle's C library. The spec's rule is "the same environment": the one the runtime gave us. A child is a
program of the node: it runs with the node's loader and C library, none of the bundle's.
"""

from __future__ import annotations

import json
import os

import pytest

RECORDING_IPAM = """#!/bin/sh
env > "$0.env"
cat /proc/$$/maps > "$0.maps"
echo '{"cniVersion": "1.0.0", "code": 100, "msg": "recorded, stopping here"}'
exit 1
"""


@pytest.mark.parametrize("ld_library_path", [None, "/opt/vendor/lib"])
def test_delegate_sees_the_runtime_environment(ld_library_path, host_ns, make_container_ns, plugin_dir, tmp_path):
    ipam = tmp_path / "host-local"
    ipam.write_text(RECORDING_IPAM)
    ipam.chmod(0o755)
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "CNI_COMMAND": "ADD",
           "CNI_CONTAINERID": "env1", "CNI_NETNS": make_container_ns().path, "CNI_IFNAME": "eth0",
           "CNI_PATH": str(tmp_path), "MY_RUNTIME_VAR": "kept"}
    if ld_library_path:
        env["LD_LIBRARY_PATH"] = ld_library_path
    conf = {"cniVersion": "1.0.0", "name": "cnt-env", "type": "bridge", "bridge": "cntenv0",
            "ipam": {"type": "host-local"}}
    proc = host_ns.run([str(plugin_dir / "bridge")], check=False, env=env, input=json.dumps(conf))
    assert proc.returncode == 1 and json.loads(proc.stdout)["msg"] == "recorded, stopping here"

    seen = dict(line.split("=", 1) for line in (tmp_path / "host-local.env").read_text().splitlines() if "=" in line)
    added = set(seen) - set(env) - {"PWD", "OLDPWD", "SHLVL", "_"}  # the shell's own
    assert not added, f"the delegate saw variables the runtime did not set: {sorted(added)}"
    assert {name: seen[name] for name in env} == env
    assert seen.get("LD_LIBRARY_PATH") == ld_library_path
    assert "LD_LIBRARY_PATH_ORIG" not in seen
    assert seen["MY_RUNTIME_VAR"] == "kept" and seen["CNI_COMMAND"] == "ADD"
    maps = (tmp_path / "host-local.maps").read_text()
    assert "/cni-suite" not in maps, "the delegate loaded a library of the bundle"
