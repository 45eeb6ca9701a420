"""The bad bandwidth configs of tests/helpers/bandwidth_verdicts.py against the Go bandwidth v1.1.1 and our built
file, side by side: both refuse each one in ADD, DEL and CHECK (Go with its code 999, ours with 7 naming the key),
and neither changes the node. The few configs only ours refuses are listed in docs/bandwidth.md."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import paths
from tests.helpers.bandwidth_verdicts import CASES, VERBS, base
from tests.helpers.kernel_state import snapshot
from tests.helpers.plugin import run_plugin
from tests.helpers.skip import require_dist

PREV = {"cniVersion": "1.0.0", "interfaces": [{"name": "vethcnt0"}, {"name": "eth0", "sandbox": "/nonexistent/x"}]}


def test_both_refuse_the_same_bad_configs(host_ns, tmp_path: Path) -> None:
    dist = require_dist()
    go = paths.GO_PLUGIN_DIR / "bandwidth"
    if not go.exists():
        pytest.skip("Go bandwidth not installed")
    before = snapshot(host_ns)
    for case in CASES:
        conf = dict(base(), **case.patch, prevResult=PREV)
        for verb in VERBS:
            theirs = run_plugin(go, verb, conf, netns="/nonexistent/cnt-netns", in_netns=host_ns,
                                cni_path=paths.GO_PLUGIN_DIR)
            if case.go_refuses:
                assert theirs.rc == 1 and case.go_msg in theirs.out["msg"], (case.label, verb, theirs)
            ours = run_plugin(dist / "bandwidth", verb, conf, netns="/nonexistent/cnt-netns", in_netns=host_ns)
            assert ours.rc == 1 and ours.out["code"] == 7, (case.label, verb, ours)
            assert case.key in ours.out["msg"] + ours.out.get("details", ""), (case.label, verb, ours)
            assert "Traceback" not in ours.stderr
    assert snapshot(host_ns) == before


def test_go_panics_where_ours_answers(host_ns) -> None:
    """Neither a prevResult nor a limit: Go's ADD dies with a nil-pointer panic (exit 2, no JSON)."""
    dist = require_dist()
    go = paths.GO_PLUGIN_DIR / "bandwidth"
    if not go.exists():
        pytest.skip("Go bandwidth not installed")
    theirs = run_plugin(go, "ADD", base(), netns="/nonexistent/cnt-netns", in_netns=host_ns,
                        cni_path=paths.GO_PLUGIN_DIR)
    assert theirs.rc == 2 and "panic" in theirs.stderr
    ours = run_plugin(dist / "bandwidth", "ADD", base(), netns="/nonexistent/cnt-netns", in_netns=host_ns)
    assert ours.rc == 1 and ours.out["code"] == 7 and "prevResult" in ours.out["msg"], ours


def test_del_without_a_netns_succeeds_on_both(host_ns) -> None:
    """The runtime's second DEL (RemovePodSandbox after StopPodSandbox) comes with no netns and no veth."""
    dist = require_dist()
    conf = dict(base(), ingressRate=8000, ingressBurst=8000)
    for binary in (dist / "bandwidth", paths.GO_PLUGIN_DIR / "bandwidth"):
        for netns in ("", "/nonexistent/cnt-netns"):
            res = run_plugin(binary, "DEL", conf, netns=netns, in_netns=host_ns, cni_path=paths.GO_PLUGIN_DIR)
            assert res.rc == 0, (binary, netns, res)
