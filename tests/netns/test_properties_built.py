"""Property-based tests against the built files (dist/), in a throwaway "host" namespace with a real container
namespace: the same generated configs as tests/unit/test_properties.py, fewer of them (each is an exec), and
here the kernel is real, so the last invariant is checked for what it says: a refused call leaves the
namespace's links, addresses, routes, rules, iptables/nftables and forwarding sysctl exactly as they were.
An accepted call is undone with a DEL and the picture retaken.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import properties
from tests.helpers.kernel_state import snapshot
from tests.helpers.plugin import run_plugin
from tests.helpers.skip import require_dist

properties.register_profiles()


@pytest.mark.parametrize("plugin", ["bridge", "portmap", "host-local", "loopback", "ptp", "static"])
def test_generated_configs_against_the_built_files(plugin, host_ns, make_container_ns, tmp_path):
    dist = require_dist()
    ctr = make_container_ns()
    data_dir = str(tmp_path / "data")
    state = {"kernel": snapshot(host_ns)}

    def call(verb: str, conf: dict) -> object:
        return run_plugin(dist / plugin, verb, conf, netns=ctr, container_id="cnt-propb", in_netns=host_ns,
                          cni_path=dist)

    @settings(max_examples=properties.examples("built"))
    @given(case=properties.mutated_config(plugin, data_dir), verb=st.sampled_from(["ADD", "DEL", "CHECK"]))
    def run(case, verb):
        conf, changed = case
        before = properties.reservations(data_dir)
        result = call(verb, conf)
        err = properties.check_refusal(result.rc, result.out if isinstance(result.out, str) else _dump(result.out),
                                       result.stderr, changed)
        if err is not None:
            now = snapshot(host_ns)
            assert now == state["kernel"], (conf, err, _diff(state["kernel"], now))
            assert properties.reservations(data_dir) == before, (conf, err)
        elif verb == "ADD":
            assert call("DEL", conf).rc == 0
            state["kernel"] = snapshot(host_ns)  # a bridge, forwarding: what a first pod leaves by design

    run()


def _diff(before: dict, after: dict) -> list[str]:
    import difflib

    return [line for key in before if before[key] != after[key]
            for line in difflib.unified_diff(before[key].splitlines(), after[key].splitlines(), key, key, lineterm="")]


def _dump(out: object) -> str:
    import json

    return "" if out is None or out == "" else json.dumps(out)
