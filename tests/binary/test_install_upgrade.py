"""Upgrade under load: 200 ADD/DEL calls through libcni while 20 installs alternate between two builds.

The bin and config directories are the test's own; the plugins run in a test "host" namespace and use a
launcher cache of the test's own (CNI_SUITE_CACHE_DIR), so the shared /var/cache/cni-suite is not involved.
Figures of the same scenario: bench/bench_install_upgrade.py and docs/kubernetes.md.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.helpers.builds import build_hash
from tests.helpers.cnitool import Cnitool
from tests.helpers.upgrade_load import BUILD_DIR, upgrade_under_load


def template(data_dir: Path) -> dict:
    return {
        "cniVersion": "1.0.0", "name": "cnt-upgrade",
        "plugins": [
            {"type": "bridge", "bridge": "cntup0", "isGateway": True,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.97.0.0/24"}]], "dataDir": str(data_dir)}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def test_upgrade_under_load(suite_builds, cnitool_bin, host_ns, make_container_ns, tmp_path: Path):
    first, second = suite_builds
    bin_dir, conf_dir, cache = tmp_path / "bin", tmp_path / "net.d", tmp_path / "cache"
    cache.mkdir(mode=0o700)
    tpl = tmp_path / "template.json"
    tpl.write_text(json.dumps(template(tmp_path / "ipam")))

    def install(build: Path) -> None:
        # Each build's installer has a cache of its own, as each DaemonSet pod has (its container's file system).
        env = {"PATH": os.defpath, "CNI_SUITE_CACHE_DIR": str(build.parent / "installer-cache")}
        res = subprocess.run([str(build), "install", "--bin-dir", str(bin_dir), "--conf-dir", str(conf_dir),
                              "--conflist", str(tpl), "--conflist-name", "cnt-upgrade.conflist"],
                             env=env, capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr

    install(first)
    tool = Cnitool(cnitool_bin, host_ns, tmp_path / "cnitool", bin_dir, extra_env={"CNI_SUITE_CACHE_DIR": str(cache)})
    tool.conf_dir = conf_dir  # libcni reads the config the installer wrote
    containers = [make_container_ns() for _ in range(4)]

    figures = upgrade_under_load(tool, "cnt-upgrade", containers, install, (first, second), bin_dir, cache)
    print("\nupgrade under load:", figures.summary())

    assert figures.calls == 200 and len(figures.install_seconds) == 20
    assert figures.failed == []
    assert figures.text_file_busy == 0
    assert figures.partial_files == [] and figures.file_samples > 0
    # The launcher cache holds one folder per build in use, never a pile of old ones.
    assert figures.builds_seen_running == {build_hash(first), build_hash(second)}
    assert figures.max_builds_in_cache <= 2
    left = [e for e in os.listdir(cache) if BUILD_DIR.match(e) or e.startswith(".tmp-")]
    assert set(left) <= {build_hash(first), build_hash(second)}
    # Every DEL ran: no address, link or cache entry is left.
    assert [p.name for p in (tmp_path / "ipam" / "cnt-upgrade").iterdir() if p.name[0].isdigit()] == []
    assert tool.cache_files() == []
