"""Property-based tests (hypothesis) of the bandwidth plugin, in-process: generated configs and stdin bytes in
every verb. The invariants are the suite's (tests/helpers/properties.py ``check_refusal``): success, or one JSON
error with a spec code (never 999), a config error naming a changed key, no traceback; and nothing reaches the
kernel unvalidated (the guard stops every call at :mod:`cni_common.shaping`)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import inprocess, properties

properties.register_profiles()

VERBS = ("ADD", "DEL", "CHECK", "GC", "STATUS")
DIRECTIONS = ("ingressRate", "ingressBurst", "egressRate", "egressBurst")
KEYS = [*DIRECTIONS, *(f"runtimeConfig.bandwidth.{k}" for k in DIRECTIONS), "runtimeConfig.bandwidth",
        "runtimeConfig", "prevResult", "prevResult.interfaces", "capabilities", "cniVersion", "name", "type",
        "cni.dev/valid-attachments"]
UINTS = st.one_of(st.integers(0, 2 ** 64 + 5), st.sampled_from([0, 1, 7, 8, 2 ** 32 - 1, 2 ** 35, 8 * 0xFFFFFFFF,
                                                                 2 ** 64 - 1]))


def base() -> dict[str, Any]:
    prev = {"cniVersion": "1.1.0", "interfaces": [{"name": "vethcnt0"},
                                                  {"name": "eth0", "sandbox": "/nonexistent/cnt-netns"}]}
    return {"cniVersion": "1.1.0", "name": "cntp", "type": "bandwidth", "capabilities": {"bandwidth": True},
            "runtimeConfig": {"bandwidth": {"ingressRate": 8000, "ingressBurst": 8000}}, "prevResult": prev}


@st.composite
def mutated(draw: st.DrawFn) -> tuple[dict[str, Any], list[str]]:
    conf = base()
    changed = []
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(KEYS))
        value = draw(st.one_of(properties.JSON_VALUES, UINTS, UINTS))
        node: Any = conf
        parts = [path] if path == "cni.dev/valid-attachments" else path.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        if draw(st.booleans()) and parts[-1] in node:
            del node[parts[-1]]
        else:
            node[parts[-1]] = value
        changed.append(path)
    return conf, changed


pytestmark = pytest.mark.usefixtures("no_kernel")


def test_generated_configs():
    @settings(max_examples=properties.examples("inprocess"))
    @given(case=mutated(), verb=st.sampled_from(VERBS))
    def run(case, verb):
        conf, changed = case
        result = inprocess.call("bandwidth", verb, conf, {"CNI_PATH": "/nonexistent-cnt-path"})
        if not result.reached_kernel:
            properties.check_refusal(result.rc, result.stdout, result.stderr, changed)

    run()


def test_generated_stdin_bytes():
    valid = json.dumps(base()).encode()

    @settings(max_examples=properties.examples("stdin"))
    @given(data=properties.hostile_stdin(valid), verb=st.sampled_from(VERBS))
    def run(data, verb):
        result = inprocess.call("bandwidth", verb, data)
        if not result.reached_kernel:
            properties.check_refusal(result.rc, result.stdout, result.stderr)

    run()
