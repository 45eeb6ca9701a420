"""The same bad configs against the Go plugins v1.1.1 (/usr/lib/cni) and our built files, side by side.

Both must refuse each config of tests/helpers/verdicts.py (the Go plugins with their code 999 or 6, ours with 6
or 7 naming the key), and neither may change the node. Run in a throwaway "host" namespace: a config Go
accepted would make its bridge ADD create a bridge before it opens the (missing) container netns.
Also the issue's other regressions: stdin that is not UTF-8, deep nesting, a name with a newline, a missing
CNI_PATH (code 4 on both sides).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import paths
from tests.helpers.kernel_state import snapshot
from tests.helpers.plugin import run_plugin
from tests.helpers.skip import require_dist
from tests.helpers.verdicts import CASES, apply, base

GO = paths.GO_PLUGIN_DIR


@pytest.fixture(scope="module")
def dist() -> Path:
    return require_dist()


def _run(binary: Path, verb: str, conf, host_ns, env=None):
    return run_plugin(binary, verb, conf, netns="/nonexistent/cnt-netns", container_id="cnt-verdict",
                      in_netns=host_ns, env=env)


@pytest.mark.parametrize("plugin", ["bridge", "host-local", "portmap", "loopback", "ptp", "static", "macvlan",
                                    "ipvlan", "vlan", "host-device", "sbr", "vrf", "dhcp"])
def test_both_suites_refuse_the_same_wrong_types(plugin, dist, host_ns, tmp_path):
    before = snapshot(host_ns)
    for case in (c for c in CASES if c.plugin == plugin):
        conf = apply(base(plugin, str(tmp_path / "data")), case.patch)
        for verb in ("ADD", "DEL"):
            if case.go_knows and verb in case.go_verbs:
                go = _run(GO / plugin, verb, conf, host_ns)
                assert go.rc == 1, f"Go accepted {case.label} ({verb}): {go.out}"
            if verb not in case.verbs:
                continue  # a documented difference: our DEL reads only the keys it uses
            ours = _run(dist / plugin, verb, conf, host_ns)
            assert ours.rc == 1 and ours.out["code"] in (6, 7), (case.label, verb, ours.out)
            assert case.key in ours.out["msg"] and "Traceback" not in ours.stderr, (case.label, verb, ours.out)
    assert snapshot(host_ns) == before
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").rglob("10.*"))


HOSTILE_STDIN = {
    "utf16": json.dumps(base("bridge")).encode("utf-16"),
    "deep": b'{"cniVersion":"1.0.0","name":"n","type":"bridge","a":' + b"[" * 20000 + b"]" * 20000 + b"}",
    "name-newline": json.dumps(dict(base("bridge"), name="cntv\n")).encode(),
}


@pytest.mark.parametrize("label", sorted(HOSTILE_STDIN))
def test_hostile_stdin_gets_the_same_code_from_both(label, dist, host_ns):
    for verb in ("ADD", "DEL"):
        go = _run(GO / "bridge", verb, HOSTILE_STDIN[label], host_ns)
        ours = _run(dist / "bridge", verb, HOSTILE_STDIN[label], host_ns)
        assert go.rc == ours.rc == 1 and go.out["code"] == ours.out["code"], (verb, go.out, ours.out)


def test_missing_cni_path_is_code_4_in_every_verb(dist, host_ns, tmp_path):
    conf = base("bridge", str(tmp_path / "data"))
    before = snapshot(host_ns)
    for verb in ("ADD", "DEL"):
        for binary in (GO / "bridge", dist / "bridge"):
            got = _run(binary, verb, conf, host_ns, env={"CNI_PATH": None})
            assert got.rc == 1 and got.out["code"] == 4 and "CNI_PATH" in got.out["msg"], (binary, verb, got.out)
    assert snapshot(host_ns) == before
