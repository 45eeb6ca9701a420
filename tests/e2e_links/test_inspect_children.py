"""`cni-suite inspect` draws macvlan children (made by our plugin through libcni) joined to their master: in the
JSON (the container's interface names its master, the master lists its children), the text and the SVG."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.e2e_links import links
from tests.helpers.paths import REPO


def _inspect(node, tmp_path: Path, tool, *extra: str) -> str:
    argv = [sys.executable, "-m", "cni_common.inspect", "--netns", node.name, "--data-dir", str(tmp_path),
            "--cache-dir", str(tool.cache_dir), *extra]
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120, check=True).stdout


def test_macvlan_children_are_joined_to_their_master(cnitool, host_ns, make_container_ns, tmp_path: Path):
    links.make_master(host_ns)
    cnitool.write_conflist(links.conflist("cntmvi", {"type": "macvlan", "master": links.MASTER}, tmp_path))
    ctrs = [make_container_ns(), make_container_ns()]
    ips = []
    for ctr in ctrs:
        add = cnitool.add("cntmvi", ctr)
        assert add.rc == 0, add
        ips.append(add.out["ips"][0]["address"])
    node = json.loads(_inspect(host_ns, tmp_path, cnitool, "--format", "json"))
    master = next(ln for ln in node["links"] if ln["name"] == links.MASTER)
    assert master["children"] == [f"{ctr.name}:eth0" for ctr in sorted(ctrs, key=lambda c: c.name)]
    interfaces = {c["netns"]: c["interfaces"] for c in node["containers"]}
    for ctr, ip in zip(ctrs, ips, strict=True):
        [iface] = interfaces[ctr.name]
        assert (iface["kind"], iface["master"], iface["addresses"], iface["network"]) == \
            ("macvlan", links.MASTER, [ip], "cntmvi")
    assert node["orphans"]["reservations"] == []  # their addresses are live
    text = _inspect(host_ns, tmp_path, cnitool)
    assert f"  master {links.MASTER}\n    macvlan child eth0 in {ctrs[0].name}" in text
    svg = _inspect(host_ns, tmp_path, cnitool, "--format", "svg")
    assert "macvlan eth0" in svg and all(ctr.name in svg for ctr in ctrs)
    for ctr in ctrs:
        assert cnitool.delete("cntmvi", ctr).rc == 0
