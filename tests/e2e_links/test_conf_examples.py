"""The link plugins' configs in conf-examples/ (80-84): each parses and reaches the kernel for every verb; the
macvlan and tap ones run for real through libcni (ipvlan, vlan and dummy need the kernel lane's kernel: their
plugins are tested there, tests/kernel_lane/test_links.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e_links import links
from tests.helpers import inprocess, net
from tests.helpers.paths import REPO

EXAMPLES = sorted(p for p in (REPO / "conf-examples").glob("8*.conflist"))


def _load(path: Path, data_dir: Path) -> dict:
    conf = json.loads(path.read_text())
    conf["plugins"][0]["ipam"]["dataDir"] = str(data_dir)
    return conf


def test_every_link_plugin_has_an_example():
    assert sorted(json.loads(p.read_text())["plugins"][0]["type"] for p in EXAMPLES) == \
        ["dummy", "ipvlan", "macvlan", "tap", "vlan"]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_is_valid(path: Path, monkeypatch, tmp_path: Path):
    inprocess.install_guard(monkeypatch)
    conf = _load(path, tmp_path)
    plugin = {"cniVersion": conf["cniVersion"], "name": conf["name"], **conf["plugins"][0]}
    for verb in ("ADD", "DEL"):
        result = inprocess.call(plugin["type"], verb, plugin, {"CNI_PATH": "/usr/lib/cni"})
        assert result.reached_kernel, (verb, result.out)


@pytest.mark.parametrize("name", ["80-macvlan.conflist", "84-tap.conflist"])
def test_example_two_containers(name: str, cnitool, host_ns, make_container_ns, tmp_path: Path):
    links.make_master(host_ns)  # the default route's link: the macvlan example's master
    conf = _load(REPO / "conf-examples" / name, tmp_path)
    cnitool.write_conflist(conf)
    ctrs = [make_container_ns(lo_up=True) for _ in range(2)]
    results = [cnitool.add(conf["name"], ctr) for ctr in ctrs]
    assert all(r.rc == 0 for r in results), results
    if name.startswith("50-"):
        assert net.ping(ctrs[0], results[1].out["ips"][0]["address"].split("/")[0])
    for ctr in ctrs:
        assert cnitool.check(conf["name"], ctr).rc == 0
        assert cnitool.delete(conf["name"], ctr).rc == 0 and links.only_lo(ctr)
    assert links.leases(tmp_path, conf["name"]) == []
