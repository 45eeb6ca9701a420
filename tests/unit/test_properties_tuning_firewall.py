"""Property-based tests (hypothesis) of tuning and firewall, in-process, with the invariants of
tests/helpers/properties.py: exit 0, or exit 1 with one JSON error, a spec code (never 999 for input), a
config error naming a changed key, no traceback. Nothing reaches the kernel: the netns handle and every
netfilter and firewalld entry point are stopped (a call that gets there was accepted by validation), and
tuning's saved files stay in the test's temp dir.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import inprocess, properties
from tests.helpers.inprocess import ReachedKernel

properties.register_profiles()

VERBS = ("ADD", "DEL", "CHECK", "GC", "STATUS")
KEYS = {
    "tuning": ["sysctl", "sysctl.net.ipv4.ip_forward", "mac", "mtu", "promisc", "allmulti", "txQLen", "dataDir",
               "args", "args.cni", "args.cni.sysctl", "args.cni.mac", "args.cni.mtu", "args.cni.txQLen",
               "runtimeConfig", "runtimeConfig.mac", "prevResult", "cniVersion", "name", "type"],
    "firewall": ["backend", "iptablesAdminChainName", "firewalldZone", "ingressPolicy", "prevResult",
                 "prevResult.ips", "prevResult.interfaces", "cniVersion", "name", "type"],
}
SYSCTL_KEYS = st.sampled_from(["net.ipv4.conf.IFNAME.arp_filter", "kernel.hostname", "net/../kernel/x", "..",
                               "/proc/sys/net/x", "net", "net.ipv4.ip_forward", "IFNAME", ""])


@pytest.fixture(autouse=True)
def guard(monkeypatch, data_dir):
    from cni_common import link_tuning, netns
    from cni_common.netfilter import firewall as rules
    from plugins import firewall

    def refuse(*_a: Any, **_k: Any) -> None:
        raise ReachedKernel("validation passed: the call reached the kernel")

    monkeypatch.setattr(netns.NetNS, "__init__", refuse)
    for name in ("ipt_allow", "ipt_revoke", "ipt_isolate", "ipt_check", "nft_allow", "nft_revoke", "nft_isolate",
                 "nft_gc", "nft_check"):
        monkeypatch.setattr(rules, name, refuse)
    monkeypatch.setattr(firewall, "_firewalld", refuse)
    monkeypatch.setattr(firewall, "firewalld_running", lambda: False)
    real_path = link_tuning.backup_path

    def inside(directory: str, cid: str, ifname: str) -> str:
        path = real_path(directory, cid, ifname)
        if not os.path.realpath(path).startswith(os.path.realpath(data_dir) + os.sep):
            refuse()
        return path

    monkeypatch.setattr(link_tuning, "backup_path", inside)
    monkeypatch.chdir(data_dir)


def base(plugin: str, data_dir: str) -> dict[str, Any]:
    prev = {"cniVersion": "1.1.0", "interfaces": [{"name": "br0"}, {"name": "eth0", "sandbox": "/nonexistent"}],
            "ips": [{"address": "10.99.0.5/24", "interface": 1}]}
    conf = {"cniVersion": "1.1.0", "name": "cntp", "type": plugin, "prevResult": prev}
    if plugin == "tuning":
        return dict(conf, dataDir=data_dir, sysctl={"net.ipv4.conf.IFNAME.arp_filter": "1"}, mtu=1400)
    return dict(conf, ingressPolicy="same-bridge")


@st.composite
def mutated(draw: st.DrawFn, plugin: str, data_dir: str) -> tuple[dict[str, Any], list[str]]:
    conf = base(plugin, data_dir)
    changed = []
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(KEYS[plugin]))
        value = draw(st.one_of(properties.JSON_VALUES, properties.ODD_STRINGS, properties.NUMBERS,
                               st.dictionaries(SYSCTL_KEYS, st.one_of(properties.ODD_STRINGS, properties.NUMBERS),
                                               max_size=3)))
        if path.endswith("dataDir") and isinstance(value, str):
            value = os.path.join(data_dir, "p" + value.encode().hex()[:40])
        node = conf
        parts = ["sysctl", path.split(".", 1)[1]] if path.startswith("sysctl.") else path.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[parts[-1]] = value
        changed.append(path)
    return conf, changed


def call(plugin: str, verb: str, stdin: bytes) -> tuple[int, str, str]:
    outcome = inprocess.call(plugin, verb, stdin)
    return outcome.rc, outcome.stdout, outcome.stderr


@pytest.mark.parametrize("plugin", ["tuning", "firewall"])
def test_generated_configs(plugin, data_dir):
    @settings(max_examples=properties.examples("inprocess"))
    @given(case=mutated(plugin, data_dir), verb=st.sampled_from(VERBS))
    def run(case, verb):
        conf, changed = case
        rc, out, err = call(plugin, verb, json.dumps(conf).encode())
        if "ReachedKernel" in out:
            return
        properties.check_refusal(rc, out, err, changed)

    run()


@pytest.mark.parametrize("plugin", ["tuning", "firewall"])
def test_generated_stdin_bytes(plugin, data_dir):
    valid = json.dumps(base(plugin, data_dir)).encode()

    @settings(max_examples=properties.examples("stdin"))
    @given(data=properties.hostile_stdin(valid), verb=st.sampled_from(VERBS))
    def run(data, verb):
        rc, out, err = call(plugin, verb, data)
        if "ReachedKernel" not in out:
            properties.check_refusal(rc, out, err)

    run()
