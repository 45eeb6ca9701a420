"""The newcomer demo (`python -m tests.demo`) runs end to end and leaves nothing behind."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.helpers.netns import list_netns
from tests.helpers.paths import REPO

DEMO_PREFIX = "cnt-bdemo"


def _demo_namespaces() -> set[str]:
    return {ns.name for ns in list_netns() if ns.name.startswith(DEMO_PREFIX)}


def _demo_tmpdirs() -> set[Path]:
    return set(Path("/tmp").glob(f"{DEMO_PREFIX}-*"))


@pytest.mark.parametrize("flavour", ["ours", "go"])
def test_demo_runs_and_cleans_up(flavour: str, netns_pool, cnitool_bin, plugin_dir, go_plugin_dir,
                                 tmp_path: Path) -> None:
    ns_before, tmp_before = _demo_namespaces(), _demo_tmpdirs()
    picture = tmp_path / "node.svg"
    argv = [sys.executable, "-m", "tests.demo", "--picture", str(picture)] + (["--go"] if flavour == "go" else [])
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    for expected in ("=== Step 1:", "cnitool add demo-net", '"ips"', "2 packets received", "MASQUERADE",
                     "cnitool del demo-net", "demo finished", "-ctr1 ", "<-> eth0 in cnt-bdemo",
                     f"The picture of the node (open it in a browser): {picture}"):
        assert expected in out
    assert "the our ones" not in out
    texts = " ".join(t.text or "" for t in ET.parse(picture).getroot().iter("{http://www.w3.org/2000/svg}text"))
    assert "10.77.0.2/24" in texts and "10.77.0.3/24" in texts
    assert _demo_namespaces() == ns_before
    assert _demo_tmpdirs() == tmp_before
