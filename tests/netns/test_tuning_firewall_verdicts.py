"""Bad configs of tuning and firewall, against the Go plugins v1.1.1 (/usr/lib/cni) and our built files.

Each case is refused by both in the verbs listed (ours with code 6 or 7 naming the key, or the spec's code
where the case says so), and our refusal changes nothing in the host namespace. Go runs after ours, in the
same throwaway host: its firewall writes rules before it fails on some of these (the digest's "unknown ingress
policy ... rules left"), which is exactly what ours must not do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import pytest

from tests.helpers import paths
from tests.helpers.kernel_state import snapshot
from tests.helpers.plugin import run_plugin
from tests.helpers.skip import require_dist
from tests.helpers.verdicts import apply


class Case(NamedTuple):
    plugin: str
    label: str
    patch: dict[str, Any]
    key: str                       # what our message must name
    verbs: tuple[str, ...] = ("ADD", "DEL")
    code: int = 0                  # 0: 6 or 7
    go_knows: bool = True          # False: a key newer than v1.1.1 (which ignores it)


PREV = {"cniVersion": "1.0.0", "interfaces": [{"name": "cntvbr0"}, {"name": "eth0", "sandbox": "/x"}],
        "ips": [{"address": "10.99.6.2/24", "interface": 1}]}


def base(plugin: str, data_dir: str) -> dict[str, Any]:
    conf = {"cniVersion": "1.0.0", "name": "cntv", "type": plugin, "prevResult": PREV}
    return dict(conf, dataDir=data_dir) if plugin == "tuning" else conf


CASES = [
    Case("tuning", "sysctl-list", {"sysctl": ["net.ipv4.ip_forward"]}, "sysctl"),
    Case("tuning", "sysctl-value-number", {"sysctl": {"net.ipv4.ip_forward": 1}}, "sysctl"),
    Case("tuning", "sysctl-kernel", {"sysctl": {"kernel.hostname": "x"}}, "sysctl", ("ADD",)),
    Case("tuning", "sysctl-escape", {"sysctl": {"net/../kernel/hostname": "x"}}, "sysctl", ("ADD",)),
    Case("tuning", "args-cni-sysctl-list", {"args": {"cni": {"sysctl": ["x"]}}}, "sysctl"),
    Case("tuning", "mac-number", {"mac": 5}, "mac"),
    Case("tuning", "mac-invalid", {"mac": "zz:zz"}, "mac", ("ADD",)),
    Case("tuning", "mtu-string", {"mtu": "1400"}, "mtu"),
    Case("tuning", "mtu-float", {"mtu": 1400.5}, "mtu"),
    Case("tuning", "promisc-string", {"promisc": "yes"}, "promisc"),
    Case("tuning", "allmulti-string", {"allmulti": "yes"}, "allmulti"),
    Case("tuning", "dataDir-number", {"dataDir": 5}, "dataDir"),
    Case("tuning", "txQLen-string", {"txQLen": "5"}, "txQLen", go_knows=False),
    Case("tuning", "txQLen-negative", {"txQLen": -1}, "txQLen", ("ADD",), go_knows=False),
    Case("tuning", "no-prevResult", {"prevResult": None}, "prevResult", ("ADD",)),
    Case("firewall", "version-0.3.1", {"cniVersion": "0.3.1"}, "incompatible", code=1),
    Case("firewall", "ingressPolicy-bogus", {"ingressPolicy": "bogus"}, "ingressPolicy", ("ADD",)),
    Case("firewall", "ingressPolicy-number", {"ingressPolicy": 5}, "ingressPolicy"),
    Case("firewall", "backend-number", {"backend": 5}, "backend"),
    Case("firewall", "firewalldZone-number", {"firewalldZone": 5}, "firewalldZone"),
    Case("firewall", "adminChain-number", {"iptablesAdminChainName": 5}, "iptablesAdminChainName"),
    Case("firewall", "adminChain-too-long", {"iptablesAdminChainName": "CNI-" + "A" * 40},
         "iptablesAdminChainName", ("ADD",)),
    Case("firewall", "prevResult-number", {"prevResult": 5}, "prevResult"),
    Case("firewall", "no-prevResult", {"prevResult": None}, "prevResult", ("ADD",)),
]


def _run(binary: Path, verb: str, conf: dict[str, Any], host_ns):
    return run_plugin(binary, verb, conf, netns="/nonexistent/cnt-netns", container_id="cnt-verdict",
                      in_netns=host_ns)


@pytest.mark.parametrize("case", CASES, ids=[f"{c.plugin}-{c.label}" for c in CASES])
def test_both_suites_refuse(case, host_ns, tmp_path):
    dist = require_dist()
    conf = apply(base(case.plugin, str(tmp_path / "data")), case.patch)
    conf = {k: v for k, v in conf.items() if v is not None}
    for verb in case.verbs:
        before = snapshot(host_ns)
        ours = _run(dist / case.plugin, verb, conf, host_ns)
        assert ours.rc == 1 and "Traceback" not in ours.stderr, (verb, ours)
        assert ours.out["code"] == case.code if case.code else ours.out["code"] in (6, 7), (verb, ours.out)
        assert case.key in ours.out["msg"], (verb, ours.out)
        assert snapshot(host_ns) == before and not (tmp_path / "data").exists(), verb
        if case.go_knows:
            go = _run(paths.GO_PLUGIN_DIR / case.plugin, verb, conf, host_ns)
            assert go.rc != 0, (verb, go)
