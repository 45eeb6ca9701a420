"""Property-based tests (hypothesis) of every plugin and verb, in-process: generated configs, stdin bytes and
environments. Invariants (tests/helpers/properties.py ``check_refusal``): exit 0, or exit 1 with exactly one
JSON error object on stdout; a spec code, never 999 for input; a config error names a changed key; no
traceback on stderr; a refused call leaves the data dir's reservations unchanged; nothing reaches the kernel
unvalidated (the in-process runs stop at the kernel: tests/helpers/inprocess.py; tests/netns/
test_properties_built.py runs the built files in a namespace and compares the kernel).

The CI profile has a fixed seed and bounded example counts; ``CNI_SUITE_PROPERTIES=long`` searches longer.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from tests.helpers import inprocess, properties

properties.register_profiles()

PLUGINS = ("bridge", "host-local", "portmap", "vxlan", "loopback", "ptp", "static", "macvlan", "ipvlan", "vlan",
           "dummy", "tap", "host-device", "sbr", "vrf")
VERBS = ("ADD", "DEL", "CHECK", "GC", "STATUS")


@pytest.fixture(autouse=True)
def guard(monkeypatch, data_dir):
    inprocess.install_guard(monkeypatch, data_root=data_dir)
    monkeypatch.chdir(data_dir)  # a relative path in a generated config lands here


def _call(plugin, verb, stdin, env=None):
    """One call; its outcome class is recorded for ``--hypothesis-show-statistics``."""
    result = inprocess.call(plugin, verb, stdin, env)
    if result.reached_kernel:
        event("accepted (reached the kernel)")
    elif result.rc == 0:
        event("succeeded")
    elif isinstance(result.out, dict):
        event(f"refused: code {result.out.get('code')}")
    return result


@pytest.mark.parametrize("plugin", PLUGINS)
def test_generated_configs(plugin, data_dir):
    @settings(max_examples=properties.examples("inprocess"))
    @given(case=properties.mutated_config(plugin, data_dir), verb=st.sampled_from(VERBS))
    def run(case, verb):
        conf, changed = case
        before = properties.reservations(data_dir)
        result = _call(plugin, verb, conf)
        if result.reached_kernel:
            return  # accepted: validation let it through to the kernel, which in-process runs never touch
        err = properties.check_refusal(result.rc, result.stdout, result.stderr, changed)
        if err is not None:
            assert properties.reservations(data_dir) == before, (conf, err)

    run()


@pytest.mark.parametrize("plugin", PLUGINS)
def test_generated_stdin_bytes(plugin, data_dir):
    valid = json.dumps(properties.base(plugin, data_dir)).encode()

    @settings(max_examples=properties.examples("stdin"))
    @given(data=properties.hostile_stdin(valid), verb=st.sampled_from(VERBS))
    def run(data, verb):
        before = properties.reservations(data_dir)
        result = _call(plugin, verb, data)
        if not result.reached_kernel:
            if properties.check_refusal(result.rc, result.stdout, result.stderr) is not None:
                assert properties.reservations(data_dir) == before

    run()


ENV_VALUES = st.one_of(st.none(), properties.ODD_STRINGS, st.text(max_size=30))


@pytest.mark.parametrize("plugin", PLUGINS)
def test_generated_environments(plugin, data_dir):
    conf = properties.base(plugin, data_dir)

    @settings(max_examples=properties.examples("env"))
    @given(verb=st.one_of(st.sampled_from(VERBS + ("VERSION",)), properties.ODD_STRINGS),
           cid=ENV_VALUES, ifname=ENV_VALUES, netns=ENV_VALUES, args=ENV_VALUES,
           path=st.sampled_from([None, "", "/nonexistent-cnt-path", "/nonexistent-cnt:/also-not"]))
    def run(verb, cid, ifname, netns, args, path):
        if netns is not None and netns.strip() and not netns.startswith("/nonexistent"):
            netns = "/nonexistent/" + netns.encode().hex()[:30]  # never a real namespace path (ours included)
        env = {"CNI_CONTAINERID": cid, "CNI_IFNAME": ifname, "CNI_NETNS": netns, "CNI_ARGS": args,
               "CNI_PATH": path}
        if any(isinstance(v, str) and "\x00" in v for v in env.values()) or "\x00" in verb:
            return  # the kernel cannot pass a NUL inside an environment variable
        before = properties.reservations(data_dir)
        result = _call(plugin, verb, conf, env)
        if not result.reached_kernel:
            if properties.check_refusal(result.rc, result.stdout, result.stderr) is not None:
                assert properties.reservations(data_dir) == before

    run()
